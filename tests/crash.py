"""A callback that simulates a crash: raises in the middle of a chosen epoch (after `batch` batches)."""

from __future__ import annotations

import lightning as L


class SimulatedCrash(RuntimeError):
    pass


class CrashAt(L.Callback):
    def __init__(self, epoch: int, batch: int = 2):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise SimulatedCrash(f"simulated crash in epoch {self.epoch}, batch {batch_idx}")
