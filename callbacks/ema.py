"""Lightning's EMAWeightAveraging with a batched update and the usual EMA warm-up.

EMAWeightAveraging gives torch's AveragedModel a per-tensor `avg_fn`, i.e. a Python loop over every
tensor after every optimizer step (measured: ~23 ms per step on the small preset, 10% of an epoch).
Here one `_foreach_lerp_` per device and dtype does the same update, θ_ema ← d·θ_ema + (1 − d)·θ.

Warm-up: AveragedModel starts the average from the weights after the first step, so with a fixed
d = 0.99 the weights of step 1 still count 0.99^(n−1) after n steps (67% after 40): a short run (an
LR sweep of a few epochs) would validate mostly its first step. With `warmup` the decay is
d_n = min(decay, (1 + n) / (10 + n)) for the n-th update, the schedule of TensorFlow's
ExponentialMovingAverage(num_updates=...), so the average follows training early and settles at
`decay` after ~(10·decay − 1)/(1 − decay) updates (890 for 0.99). torch's `get_ema_multi_avg_fn`
has no warm-up, hence this small function. Update schedule, validation swap and checkpoint format
(EMA in `state_dict`, raw in `current_model_state`) are Lightning's, unchanged.

`update_every_n_steps=n` (Lightning's option) updates after every n-th optimizer step with the decay
d**n (warm-up counted in steps), so the average spans the same number of steps: when the weights move
only at the update steps the two are equal (tests/test_callbacks.py), and otherwise the average lags by
at most n - 1 steps. The default n = 4 cuts the update's cost (a pass over every weight) four times
(bench/callback_overhead.py; the validation curves at n = 1, 4, 8: bench/ema_every_n.py).

The update itself: torch's AveragedModel.update_parameters walks both module trees and detaches every
tensor at each update, which took as long as the lerp (measured in a `small` fit: 21.7 ms per update, of
which 10.9 ms in the lerp). The pairs of tensors are the same objects for the whole fit, so they are
listed once (per device and dtype, as AveragedModel groups them) and each update is the lerp alone
(8.6 ms); the first update (a copy) and an average kept on another device go through AveragedModel.

Validation swap: Lightning exchanges the two models' values by copying every tensor three times (clone,
copy, copy) at the start and again at the end of each validation. Where the two tensors of a pair share
device, dtype and shape (always, unless `device` keeps the average elsewhere), exchanging what each
`.data` points at gives the same values with no copy; the Parameter objects, which the optimizer's state
is keyed by, stay where they are.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.callbacks.weight_averaging import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn
from typing_extensions import override


@runtime_checkable
class AveragedWeights(Protocol):
    """A callback that keeps averaged weights (EMA) and shares them with other callbacks."""

    def averaged_state_dict(self) -> dict[str, torch.Tensor] | None: ...


def warmup_decay(decay: float, num_averaged: int) -> float:
    return min(decay, (1.0 + num_averaged) / (10.0 + num_averaged))


def warmup_ema_multi_avg_fn(decay: float, every_n_steps: int = 1) -> Callable:
    @torch.no_grad()
    def ema_update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        step_decay = warmup_decay(decay, int(num_averaged) * every_n_steps)
        floating = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        if floating:  # one update stands for `every_n_steps` steps: decay ** n
            torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], 1.0 - step_decay ** every_n_steps)
        for a, c in zip(averaged, current, strict=True):  # integer buffers (a transformer's position ids)
            if not a.is_floating_point():
                a.copy_(c)

    return ema_update


class BatchedEMAWeightAveraging(EMAWeightAveraging):
    """Lightning's EMAWeightAveraging with one batched update per step and an optional warm-up.

    Args:
        decay: the EMA decay d in (0, 1) once warmed up.
        warmup: use d_n = min(decay, (1 + n) / (10 + n)) for the n-th step.
        update_every_n_steps: update every n optimizer steps with decay d**n (the same average, n times cheaper).
        **kwargs: passed to EMAWeightAveraging (device, use_buffers, update_every_n_steps, ...).
    """
    def __init__(
        self,
        decay: float = 0.999,
        warmup: bool = True,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
        **kwargs: Any,
    ):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        if update_every_n_steps < 1:
            raise ValueError(f"update_every_n_steps must be >= 1, got {update_every_n_steps}")
        n = update_every_n_steps  # an update every n steps applies n steps' decay at once
        multi_avg_fn = warmup_ema_multi_avg_fn(decay, n) if warmup else get_ema_multi_avg_fn(decay ** n)
        # EMAWeightAveraging.__init__ always adds a per-tensor `avg_fn`, and torch's AveragedModel refuses
        # both functions at once: initialise the base WeightAveraging with ours and keep EMAWeightAveraging's
        # update schedule (its should_update reads the three attributes below).
        WeightAveraging.__init__(self, device=device, use_buffers=use_buffers, multi_avg_fn=multi_avg_fn, **kwargs)
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch
        self._groups: tuple[int, int, list[tuple[list[torch.Tensor], list[torch.Tensor]]]] | None = None

    def _tensor_groups(self, pl_module) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None:
        """(averaged, current) tensor lists per device and dtype, listed once per fit; None where a pair is
        on different devices (AveragedModel then moves each tensor)."""
        model = self._average_model
        key = (id(model), id(pl_module))
        if self._groups is None or self._groups[:2] != key:
            def tensors(module):
                return (list(itertools.chain(module.parameters(), module.buffers())) if model.use_buffers
                        else list(module.parameters()))
            pairs = list(zip(tensors(model.module), tensors(pl_module), strict=True))
            groups: dict[tuple, tuple[list, list]] | None = {}
            for a, c in pairs:
                if a.device != c.device:
                    groups = None
                    break
                averaged, current = groups.setdefault((a.device, a.dtype), ([], []))
                averaged.append(a)
                current.append(c)
            self._groups = (*key, None if groups is None else list(groups.values()))
        return self._groups[2]

    @torch.no_grad()
    def _update(self, pl_module) -> None:
        """One EMA update: the lerp over the listed tensors (see the module docstring)."""
        model = self._average_model
        groups = self._tensor_groups(pl_module) if model.multi_avg_fn is not None else None
        if groups is None or int(model.n_averaged) == 0:
            model.update_parameters(pl_module)  # the first update copies; other devices are moved per tensor
            return
        for averaged, current in groups:
            model.multi_avg_fn(averaged, current, model.n_averaged.to(averaged[0].device))
        model.n_averaged += 1

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """Lightning's update schedule (step_idx counted from 0) with the update above."""
        step_idx = trainer.global_step - 1
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=step_idx):
            assert self._average_model is not None
            self._update(pl_module)
            self._latest_update_step = trainer.global_step

    def averaged_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The averaged LightningModule's state dict (its own tensors), None before the first update."""
        return None if self._average_model is None else self._average_model.module.state_dict()

    @override
    def _swap_models(self, pl_module) -> None:
        """Exchange the current and averaged tensors by reference (Lightning copies them; see the module
        docstring); Lightning's copy where a pair differs in device, dtype or shape."""
        assert self._average_model is not None
        average = self._average_model.module
        pairs = list(zip(itertools.chain(average.parameters(), average.buffers()),
                         itertools.chain(pl_module.parameters(), pl_module.buffers()), strict=True))
        if not all(a.device == c.device and a.dtype == c.dtype and a.shape == c.shape for a, c in pairs):
            super()._swap_models(pl_module)
            return
        for a, c in pairs:
            a.data, c.data = c.data, a.data
