"""ParameterUpdateMonitor: is every module still learning?

Every `every_n_steps` optimizer steps, per module: the relative change of its parameters since the
previous check (sampled, see param_sampling.py: no copy of the weights), logged as
`param_update/<module>`; a rank-zero warning, once per module and window, names the modules whose
parameters did not change or whose gradients were None or zero at the window's last step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from callbacks.module_groups import target_module
from callbacks.param_sampling import ParameterSampler
from callbacks.step_logging import log_step_values


class ParameterUpdateMonitor(L.Callback):
    """Every N steps, the relative change of each module's sampled weights; warns about frozen modules.

    Args:
        every_n_steps: length of a window, in optimizer steps.
        modules: module names to watch (None: the net's fixed module tree, else its children).
        sample_per_tensor: weights sampled per tensor (no full copy of the model is kept).
    """
    def __init__(self, every_n_steps: int = 100, modules: Sequence[str] | None = None, sample_per_tensor: int = 4096):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if sample_per_tensor < 1:
            raise ValueError(f"sample_per_tensor must be >= 1, got {sample_per_tensor}")
        self.every_n_steps = every_n_steps
        self.modules = list(modules) if modules else None
        self.sample_per_tensor = sample_per_tensor
        self.last_ratios: dict[str, float] = {}
        self.warnings: list[str] = []  # every warning issued, for tests and the run log
        self._members: dict[str, list[str]] = {}
        self._sampler: ParameterSampler | None = None
        self._snapshot: dict | None = None
        self._no_grad: set[str] = set()
        self._window_start_step = 0

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = target_module(pl_module)  # after the model reached its device
        if self.modules is None:  # default: the model's fixed module tree when it has one
            from redheart.model.net import MODULE_TREE

            self.modules = [m for m in MODULE_TREE if _has_submodule(net, m)] or [n for n, _ in net.named_children()]
        params = dict(net.named_parameters())
        self._members = {m: [n for n in params if n == m or n.startswith(m + ".")] for m in self.modules}
        missing = [m for m, names in self._members.items() if not names]
        if missing:
            raise ValueError(f"ParameterUpdateMonitor: modules {missing} have no parameters in {type(net).__name__}")
        self._sampler = ParameterSampler(params, self.sample_per_tensor)

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot = self._sampler.snapshot()
        self._window_start_step = trainer.global_step

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if (trainer.global_step + 1) % self.every_n_steps:
            return  # only the step that closes a window checks gradients
        self._no_grad = modules_without_gradient(dict(target_module(pl_module).named_parameters()), self._members)

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self._window_start_step or step % self.every_n_steps or self._snapshot is None:
            return
        new = self._sampler.snapshot()
        frozen = []
        for module, names in self._members.items():
            ratio, changed = ParameterSampler.relative_change(self._snapshot, new, names)
            self.last_ratios[module] = ratio
            if not changed:
                frozen.append(module)
        log_step_values(trainer, {f"param_update/{m}": r for m, r in self.last_ratios.items()})
        window = f"steps {self._window_start_step}-{step}"
        if frozen:
            self._warn(f"parameters did not change in {window}: {', '.join(frozen)}")
        if self._no_grad:
            self._warn(f"gradients None or zero at step {step} ({window}): {', '.join(sorted(self._no_grad))}")
        self._snapshot, self._window_start_step, self._no_grad = new, step, set()

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        rank_zero_warn(f"ParameterUpdateMonitor: {message}")

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_ratios": dict(self.last_ratios)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_ratios = dict(state_dict.get("last_ratios", {}))  # the window restarts at the resumed step


def modules_without_gradient(params: dict[str, torch.Tensor], members: dict[str, list[str]]) -> set[str]:
    """Modules none of whose parameters has a non-zero gradient (None counts as zero)."""
    silent = set()
    for module, names in members.items():
        grads = [params[n].grad for n in names if params[n].grad is not None]
        if not grads or float(torch.stack(torch._foreach_norm(grads)).sum()) == 0.0:
            silent.add(module)
    return silent


def _has_submodule(net: torch.nn.Module, name: str) -> bool:
    try:
        net.get_submodule(name)
        return True
    except AttributeError:
        return False
