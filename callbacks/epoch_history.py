"""EpochHistory: one record per epoch in `<run>/epoch_history.json`, what an LR sweep compares.

Per epoch: train and validation loss, the validation metrics, the total gradient norm over the
epoch's optimizer steps (mean, std, min, max; before clipping), learning efficiency (relative drop of
the train loss since the first epoch), stability (1 / (1 + std of the step gradient
norms)): the LR sweep's criteria (docs/design.md), learning rate and wall time. It also hashes the
initial weights at fit start, so
a sweep can show that every job started from the same weights. The step norms come from the
GradientNormMonitor when it runs (one pass over the gradients per step, not two).

The file is rewritten atomically after every epoch, so a killed job leaves the epochs it finished.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from callbacks.gradient_norms import step_total_norm
from callbacks.module_groups import target_module
from callbacks.train_loss import epoch_train_loss
from redheart.io import atomic_write_json
from redheart.run_folder import EPOCH_HISTORY


def state_sha256(module: torch.nn.Module) -> str:
    """SHA-256 over every tensor of the state dict (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class EpochHistory(L.Callback):
    """One record per epoch in `<dirpath>/epoch_history.json`, rewritten atomically after each epoch.

    Args:
        dirpath: the run (or sweep job) folder.
        hash_initial_weights: record the SHA-256 of the initial weights, so a sweep can show that every job
            started from the same weights.
    """
    def __init__(self, dirpath: str, hash_initial_weights: bool = True):
        self.path = Path(dirpath) / EPOCH_HISTORY
        self.hash_initial_weights = hash_initial_weights
        self.records: list[dict[str, Any]] = []
        self.initial_sha256: str | None = None
        self._norms: list[torch.Tensor | float] = []
        self._epoch_start = time.monotonic()
        self._lr: float | None = None

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.hash_initial_weights and self.initial_sha256 is None and trainer.global_step == 0:
            self.initial_sha256 = state_sha256(target_module(pl_module))

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._norms = []
        self._epoch_start = time.monotonic()
        self._lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        total = step_total_norm(pl_module)  # GradientNormMonitor's norm of this step, when it covers the net
        if total is not None:
            self._norms.append(total)
            return
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads:  # kept on the device: one sync per epoch, not per step
            self._norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float()))

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        logged = trainer.callback_metrics
        norms = (torch.stack([torch.as_tensor(n).double().cpu() for n in self._norms]) if self._norms
                 else torch.zeros(0, dtype=torch.float64))
        grad = ({"mean": _finite_or_none(norms.mean()), "std": _finite_or_none(norms.std(unbiased=False)),
                 "min": _finite_or_none(norms.min()), "max": _finite_or_none(norms.max()), "steps": len(norms)}
                if len(norms) else None)
        raw_train_loss = epoch_train_loss(trainer, pl_module)
        train_loss = _finite_or_none(raw_train_loss)
        first = self.records[0]["train_loss"] if self.records else train_loss
        self.records.append({
            "epoch": trainer.current_epoch + 1,
            "global_step": trainer.global_step,
            "lr": self._lr,  # the rate this epoch trained with (the scheduler steps before this hook)
            "train_loss": train_loss,
            "val_loss": _finite_or_none(logged.get("val/loss")),
            "val": {k[len("val/"):]: _finite_or_none(v) for k, v in sorted(logged.items())
                    if k.startswith("val/") and not k.startswith("val/module/")},
            "grad_norm": grad,
            "efficiency": (first - train_loss) / first if first and train_loss is not None else None,
            "stability": 1.0 / (1.0 + grad["std"]) if grad and grad["std"] is not None else None,
            "time_s": time.monotonic() - self._epoch_start,
            # a non-finite loss is stored as null (JSON has no NaN); this flag keeps the fact
            "finite": all(v is None or math.isfinite(float(v)) for v in (raw_train_loss, logged.get("val/loss"))),
        })
        self._write()

    @rank_zero_only
    def _write(self) -> None:
        atomic_write_json(self.path, {"initial_param_sha256": self.initial_sha256, "epochs": self.records})

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records, "initial_sha256": self.initial_sha256}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict.get("records", []))
        self.initial_sha256 = state_dict.get("initial_sha256")
