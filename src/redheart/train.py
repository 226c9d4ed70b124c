"""`train(cfg)`: the pure function behind `train.py` (Hydra only parses the command line).

Today it runs the data pipeline and hands the first training batch over; the model and the
Trainer loop plug in here when the model issue lands (`cfg.model`).
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from redheart.data.datamodule import RedHeartDataModule

log = logging.getLogger(__name__)


def describe_batch(batch: dict) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in batch.items()}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured pipeline; return its metrics (data counts, first-batch shapes)."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule: RedHeartDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    report = datamodule.prepared.report
    first = next(iter(datamodule.train_dataloader()))
    metrics = {
        "counts": report["counts"],
        "split_sizes": {name: len(ds) for name, ds in datamodule.datasets.items()},
        "embedding_dim": datamodule.embedding_dim,
        "first_batch": describe_batch(first),
    }
    counts = report["counts"]
    log.info(
        "data ready: read %d = kept %d + near-duplicates %d + quarantined %d; train/val/test %s; first batch %s",
        counts["read"], counts["kept"], counts["near_duplicates"], counts["quarantined"],
        metrics["split_sizes"], metrics["first_batch"]["embedding"],
    )
    if cfg.get("model") is None:
        log.info("no model configured yet: stopping after the data pipeline (report in %s)", datamodule.report_dir)
    return metrics
