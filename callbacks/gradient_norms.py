"""Per-group gradient norms before clipping, logged every step and summarised per interval.

Lightning calls `on_before_optimizer_step` after the backward pass (and after AMP unscaling) and
before gradient clipping, so these are the raw norms. ModularCheckpoint reads `take_interval()` for
the mean and max since its last checkpoint. EpochHistory and the LightningModule's gradient clipping
read `last_total`, the norm over all groups, instead of each making another pass over every gradient.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from typing_extensions import override

from callbacks.module_groups import ModuleGroups, target_module
from callbacks.step_logging import log_step_values


class GradientNormMonitor(L.Callback):
    """Per-group gradient norms before clipping: logged every N steps, summed over an interval.

    Args:
        groups: module groups, group -> parameter-name prefixes (conf/module_groups).
        log_every_n_steps: log the norms every N optimizer steps (the interval statistics cover every step).
    """
    def __init__(self, groups: Mapping[str, Sequence[str]], log_every_n_steps: int = 1):
        if log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps must be >= 1, got {log_every_n_steps}")
        self.module_groups = ModuleGroups(groups)
        self.log_every_n_steps = log_every_n_steps
        self._params: dict[str, list[torch.Tensor]] = {}
        self.last_total: tuple[int, float] | None = None  # (global step, norm over every group), for EpochHistory
        self._reset_interval()

    def _reset_interval(self) -> None:
        self.interval: dict[str, dict[str, float]] = {}

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        groups = self.module_groups.partition(target_module(pl_module).named_parameters())
        self._params = {g: list(members.values()) for g, members in groups.items()}
        # the total over the groups is the whole module's gradient norm only when they hold all its parameters
        self.covers_module = ({id(p) for ps in self._params.values() for p in ps}
                              == {id(p) for p in pl_module.parameters()})

    @torch.no_grad()
    def group_norms(self) -> dict[str, float]:
        """L2 norm of each group's gradients (0 where no parameter has a gradient)."""
        norms = []
        for params in self._params.values():
            grads = [p.grad for p in params if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())
                         if grads else torch.zeros((), device=params[0].device))
        return dict(zip(self._params, torch.stack(norms).tolist(), strict=True))  # one device sync

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        norms = self.group_norms()
        self.last_total = (trainer.global_step, math.sqrt(sum(v * v for v in norms.values())))
        for group, value in norms.items():
            stats = self.interval.setdefault(group, {"sum": 0.0, "max": 0.0, "steps": 0})
            stats["sum"] += value
            stats["max"] = max(stats["max"], value)
            stats["steps"] += 1
        if trainer.global_step % self.log_every_n_steps == 0:
            log_step_values(trainer, {f"grad_norm/{g}": v for g, v in norms.items()})

    def take_interval(self) -> dict[str, dict[str, float | int]]:
        """{group: {mean, max, steps}} since the previous call, then start a new interval."""
        out = {g: {"mean": s["sum"] / s["steps"], "max": s["max"], "steps": s["steps"]}
               for g, s in self.interval.items() if s["steps"]}
        self._reset_interval()
        return out

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"interval": {g: dict(s) for g, s in self.interval.items()}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.interval = {g: dict(s) for g, s in state_dict.get("interval", {}).items()}


def step_total_norm(pl_module: L.LightningModule) -> float | None:
    """The gradient norm over every parameter at this optimizer step, if GradientNormMonitor computed it
    (it runs in `on_before_optimizer_step`, before Lightning clips); None otherwise."""
    trainer = pl_module._trainer
    for callback in trainer.callbacks if trainer is not None else ():
        if isinstance(callback, GradientNormMonitor) and getattr(callback, "covers_module", False):
            total = callback.last_total
            return total[1] if total is not None and total[0] == trainer.global_step else None
    return None
