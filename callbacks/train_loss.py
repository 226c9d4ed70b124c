"""The current epoch's mean training loss, wherever a callback runs.

Lightning aggregates logged epoch metrics (`train/loss_epoch`) only after the epoch's validation, so a
callback that runs at validation end reads the previous epoch's value there. RedHeartLitModule keeps
the epoch's batch-size-weighted mean in `epoch_train_loss` (a torchmetrics MeanMetric, synced across
processes); other LightningModules fall back to the logged value.
"""

from __future__ import annotations

import lightning as L


def epoch_train_loss(trainer: L.Trainer, pl_module: L.LightningModule) -> float | None:
    mean = getattr(pl_module, "epoch_train_loss", None)
    if mean is not None and mean.update_called:
        value = float(mean.compute())
    else:
        logged = trainer.callback_metrics
        value = logged.get("train/loss_epoch", logged.get("train/loss"))
        value = None if value is None else float(value)
    return value
