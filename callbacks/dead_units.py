"""Dead-unit fraction per module group over each validation pass.

Definition: a unit is one feature (last dimension) of the input of a ReLU/GELU-family activation
module; it is dead when its pre-activation is never positive for any validation example and
position, i.e. the activation never passes a positive signal (GELU(x) ≤ 0 exactly when x ≤ 0).
A group's fraction is dead units / all units of its activation modules. Forward hooks live only
during validation, so training steps pay nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import lightning as L
import torch
from torch import nn
from typing_extensions import override

from callbacks.module_groups import ModuleGroups, target_module

ACTIVATIONS = (nn.ReLU, nn.GELU, nn.SiLU, nn.ReLU6, nn.Mish, nn.ELU, nn.CELU, nn.SELU)
HF_ACTIVATIONS = ("GELUActivation", "NewGELUActivation", "FastGELUActivation", "QuickGELUActivation",
                  "GELUTanh", "ClippedGELUActivation", "SiLUActivation", "ReLUSquaredActivation")


def activation_types() -> tuple[type, ...]:
    """torch's activations, plus Hugging Face's own when transformers is loaded (a fine-tuned encoder).

    Without them the `encoder` group would have no hooked unit and a NaN dead-unit fraction. transformers
    is not imported here: a run without a Hugging Face model never pays for it.
    """
    hf = sys.modules.get("transformers.activations")
    return ACTIVATIONS + tuple(getattr(hf, n) for n in HF_ACTIVATIONS if hf is not None and hasattr(hf, n))


class DeadUnitMonitor(L.Callback):
    """Fraction of never-active activation units per module group over each validation pass (`last`).

    Args:
        groups: module groups, group -> parameter-name prefixes (conf/module_groups).
    """
    def __init__(self, groups: Mapping[str, Sequence[str]]):
        self.module_groups = ModuleGroups(groups)
        self.last: dict[str, float] = {}  # the latest validation pass: group → fraction
        self._alive: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def record(module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach()
            positive = (x > 0).reshape(-1, x.shape[-1]).any(dim=0)
            self._alive[name] = self._alive[name] | positive if name in self._alive else positive
        return record

    @override
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._alive = {}
        kinds = activation_types()
        for name, module in target_module(pl_module).named_modules():
            if isinstance(module, kinds) and self.module_groups.group_of(name) is not None:
                self._handles.append(module.register_forward_pre_hook(self._hook(name)))

    @override
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        dead: dict[str, list[int]] = {}
        for name, alive in self._alive.items():
            counts = dead.setdefault(self.module_groups.group_of(name), [0, 0])
            counts[0] += int((~alive).sum())
            counts[1] += alive.numel()
        self.last = {g: d / total for g, (d, total) in dead.items() if total}
        if self.last and not trainer.sanity_checking:
            pl_module.log_dict({f"dead_units/{g}": v for g, v in self.last.items()}, sync_dist=True)
