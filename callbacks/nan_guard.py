"""NaNGuard: stop training at the first non-finite loss, naming the step, the epoch and the likely cause.

When: each micro-batch's loss is kept (a reference, no copy) at `on_before_backward` and tested at
`on_before_optimizer_step`, i.e. after the backward pass and before the update. The weights are then
still the ones that produced the NaN, so the diagnosis means something (after the update every weight
is NaN: gradient clipping by norm spreads one NaN gradient to all), and the poisoned update never
happens. The test is one `isfinite` on the step's loss scalar(s), read by the host once per optimizer
step. On a GPU that read is a device sync, but GradientNormMonitor (listed before this callback in
conf/callbacks/default.yaml) already syncs at this very hook to read its norms, so the extra read is
a copy of one byte, not a pipeline stall. Checking every N steps or accumulating a flag on the device
would save that byte but let N-1 poisoned updates through and lose the batch that caused them.

Why not Lightning's own tools:
- `Trainer(detect_anomaly=True)` turns on torch.autograd's anomaly mode: every backward op checks its
  outputs and keeps its forward stack, a debugging aid that slows every step; it sees only NaNs born in
  the backward pass and fails with a RuntimeError naming an autograd op, not a step, epoch or cause.
- `EarlyStopping(monitor=..., check_finite=True)` looks at an epoch-level metric at the end of the
  epoch: by then the weights have been NaN for the rest of the epoch and validation ran on them, and it
  only sets `should_stop` (no error, no step, no cause; `min_epochs` can even keep training going).

On a non-finite loss the guard finds the cause (non-finite loss parts, which the LightningModule
keeps in `last_train_losses`; non-finite values in the batch; parameters that were already non-finite;
non-finite gradients), writes `<dirpath>/nan_event.json` (step, epoch, cause, details: the analysis
never recommends a checkpoint of that epoch or later) and raises `NonFiniteLossError`, which
`train.py` turns into one log line and exit code 2. A resumed fit starts from weights saved before the
event, so the guard moves an earlier event file aside (`nan_event.previous.json`).

Epochs are counted from 1, as the modular checkpoints count them: the NaN of epoch 3 came after
checkpoint epoch_002 was written and before epoch_004 could be.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from typing_extensions import override

from callbacks.module_groups import target_module
from redheart.errors import RedHeartError
from redheart.io import atomic_write_json
from redheart.run_folder import NAN_EVENT

log = logging.getLogger(__name__)


class NonFiniteLossError(RedHeartError, RuntimeError):
    """The training loss became NaN or infinite at optimizer step `step` of epoch `epoch` (from 1)."""

    def __init__(self, step: int, epoch: int, cause: str):
        self.step, self.epoch, self.cause = step, epoch, cause
        super().__init__(f"non-finite training loss at global step {step}, epoch {epoch}: {cause}")

    def __reduce__(self):  # picklable (joblib / submitit launchers send a failed job's error back)
        return type(self), (self.step, self.epoch, self.cause)


def _count(tensor: torch.Tensor) -> int:
    return int((~torch.isfinite(tensor)).sum()) if tensor.is_floating_point() else 0


def _names(names: list[str], limit: int) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


@dataclass
class Findings:
    """What was non-finite at the step whose loss was: the evidence behind the one-line cause."""

    loss: float
    parts: dict[str, float] = field(default_factory=dict)     # non-finite loss parts -> value
    inputs: dict[str, str] = field(default_factory=dict)      # batch tensor -> "n of m (rows ...)"
    parameters: list[str] = field(default_factory=list)       # non-finite before the update
    gradients: list[str] = field(default_factory=list)
    limit: int = 5

    def cause(self) -> str:
        """The most upstream finding first: a bad input explains everything after it, and so on."""
        if self.inputs:
            found = "; ".join(f"{k} {v}" for k, v in self.inputs.items())
            head = f"the batch holds non-finite input values: {found}"
        elif self.parameters:
            head = (f"{len(self.parameters)} parameter tensor(s) were already non-finite before this step's "
                    f"update (an earlier update diverged): {_names(self.parameters, self.limit)}")
        elif self.parts:
            head = ("inputs and weights are finite, the forward pass overflowed (learning rate too high, or a "
                    "numerically unstable operation)")
        else:
            head = "the loss is non-finite but no logged loss part, input or parameter is (another loss term?)"
        tail = []
        if self.parts:
            parts = [f"{k}={v}" for k, v in self.parts.items()]
            tail.append(f"non-finite loss parts: {_names(parts, self.limit)}")
        if self.gradients:
            tail.append(f"non-finite gradients in {len(self.gradients)} tensor(s): "
                        f"{_names(self.gradients, self.limit)}")
        return "; ".join([f"loss {self.loss}, {head}", *tail])

    def as_json(self) -> dict[str, Any]:
        loss = self.loss if math.isfinite(self.loss) else str(self.loss)
        return {"loss": loss, "loss_parts": {k: str(v) for k, v in self.parts.items()}, "inputs": self.inputs,
                "parameters": self.parameters, "gradients": self.gradients}


@torch.no_grad()
def diagnose(loss: torch.Tensor, parts: dict[str, torch.Tensor], batch: Any, net: nn.Module,
             limit: int = 5) -> Findings:
    """Look for the non-finite values behind a non-finite loss (runs once, when training stops)."""
    findings = Findings(loss=float(loss), limit=limit)
    findings.parts = {k: float(v) for k, v in parts.items() if not math.isfinite(float(v))}
    for name, tensor in (batch.items() if isinstance(batch, dict) else []):
        bad = _count(tensor) if torch.is_tensor(tensor) else 0
        if bad:
            where = ""
            if tensor.ndim:
                rows = torch.nonzero(~torch.isfinite(tensor.reshape(len(tensor), -1)).all(dim=1)).flatten()
                where = f" (batch rows {rows[:limit].tolist()})"
            findings.inputs[name] = f"has {bad} of {tensor.numel()} values non-finite{where}"
    for name, param in net.named_parameters():
        if _count(param):
            findings.parameters.append(name)
        if param.grad is not None and _count(param.grad):
            findings.gradients.append(name)
    return findings


@dataclass
class _MicroBatch:
    batch_idx: int
    batch: Any
    loss: torch.Tensor
    parts: dict[str, torch.Tensor]


class NaNGuard(L.Callback):
    """Stops training at the first non-finite loss, before the optimizer step it would poison.

    Args:
        dirpath: the run folder, where nan_event.json is written (None: write nothing).
        max_names: how many tensors or loss parts the cause names at most.
    """
    def __init__(self, dirpath: str | None = None, max_names: int = 5):
        if max_names < 1:
            raise ValueError(f"max_names must be >= 1, got {max_names}")
        self.event_path = Path(dirpath) / NAN_EVENT if dirpath else None
        self.max_names = max_names
        self.event: dict[str, Any] | None = None
        self._batch: tuple[int, Any] = (-1, None)
        self._window: list[_MicroBatch] = []  # the micro-batches of the coming optimizer step

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._window = []  # after the restore: `ckpt_path` is set by now whatever the strategy
        if trainer.ckpt_path and self.event_path is not None and self.event_path.is_file():
            self._set_aside(self.event_path)

    @rank_zero_only
    def _set_aside(self, path: Path) -> None:
        os.replace(path, path.with_suffix(".previous.json"))
        log.info("resuming from a checkpoint saved before the non-finite loss recorded in %s: moved it to %s",
                 path, path.with_suffix(".previous.json").name)

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._batch = (batch_idx, batch)

    @override
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        parts = getattr(pl_module, "last_train_losses", None) or {}
        self._window.append(_MicroBatch(self._batch[0], self._batch[1], loss.detach(), parts))

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        window, self._window = self._window, []
        if not window:
            return
        finite = bool(torch.isfinite(torch.stack([w.loss.float() for w in window])).all())  # the one host read
        if trainer.strategy.reduce_boolean_decision(finite, all=True):  # every process finite (DDP: all stop)
            return
        self.stop(trainer, pl_module, next((w for w in window if not torch.isfinite(w.loss)), None))

    def stop(self, trainer: L.Trainer, pl_module: L.LightningModule, bad: _MicroBatch | None) -> None:
        step, epoch = trainer.global_step, trainer.current_epoch + 1
        if bad is None:
            cause, details = "a non-finite loss on another process (this one's was finite)", {}
        else:
            findings = diagnose(bad.loss, bad.parts, bad.batch, target_module(pl_module), self.max_names)
            cause, details = findings.cause(), findings.as_json()
        self.event = {"step": step, "epoch": epoch, "batch_idx": None if bad is None else bad.batch_idx,
                      "cause": cause, "details": details}
        self._write_event()
        raise NonFiniteLossError(step, epoch, cause)

    @rank_zero_only
    def _write_event(self) -> None:
        if self.event_path is not None:
            atomic_write_json(self.event_path, self.event)
