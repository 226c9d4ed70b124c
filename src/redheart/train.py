"""`train(cfg)`: the pure function behind `train.py` (Hydra only parses the command line).

Data pipeline → parameter table (meta device, checked against the preset's seed figures) → model →
Lightning Trainer fit and test. Returns the metrics and writes them to `metrics.json` in the run dir.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from redheart.data.datamodule import RedHeartDataModule
from redheart.io import atomic_write_json
from redheart.model.summary import build_on_meta, format_table, parameter_table, verify
from redheart.schema import TaskSchema
from redheart.training.lit_module import RedHeartLitModule

log = logging.getLogger(__name__)


def describe_batch(batch: dict) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in batch.items()}


def model_arguments(cfg: DictConfig, input_dim: int, schema: TaskSchema) -> dict[str, Any]:
    """Plain keyword arguments of the LightningModule, the net sized to the data (embedding dim, tasks)."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("_target_", None)
    model["net"].update(input_dim=input_dim, num_classes=len(schema.class_names),
                        num_bentham=len(schema.bentham_names), num_surd=len(schema.surd_names))
    model["optimizer"] = OmegaConf.to_container(cfg.optim.optimizer, resolve=True)
    model["scheduler"] = OmegaConf.to_container(cfg.optim.scheduler, resolve=True) if cfg.optim.get("scheduler") else None
    return model


def check_parameters(model_args: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """Count the configured net on the meta device, save parameters.json, stop if off the seed figures."""
    table = parameter_table(build_on_meta(model_args["net"]), model_args.get("param_targets"))
    atomic_write_json(output_dir / "parameters.json", table)
    log.info("parameters (also in %s):\n%s", output_dir / "parameters.json", format_table(table))
    verify(table)
    return table


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        if math.isfinite(value):
            out[name] = value
    return dict(sorted(out.items()))


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured pipeline; return its metrics (data counts, parameters, fit and test metrics)."""
    L.seed_everything(cfg.seed, workers=True)
    trainer: L.Trainer | None = None
    if cfg.get("model") is not None:  # first, so a missing strategy package (DeepSpeed) fails in seconds
        trainer = hydra.utils.instantiate(cfg.trainer, callbacks=_instantiate_all(cfg.get("callbacks")),
                                          logger=_instantiate_all(cfg.get("logger")) or False)
    datamodule: RedHeartDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    report = datamodule.prepared.report
    first = next(iter(datamodule.train_dataloader()))
    metrics: dict[str, Any] = {
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
    if trainer is None:
        log.info("no model configured: stopping after the data pipeline (report in %s)", datamodule.report_dir)
        return metrics

    output_dir = Path(cfg.paths.output_dir)
    model_args = model_arguments(cfg, datamodule.embedding_dim, datamodule.schema)
    metrics["parameters"] = check_parameters(model_args, output_dir)["total"]["actual"]
    L.seed_everything(cfg.seed, workers=True)  # same initial weights whatever the data stage consumed
    model = RedHeartLitModule(**model_args)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics["fit"] = _scalars(trainer.callback_metrics)
    metrics["epochs"], metrics["steps"] = trainer.current_epoch, trainer.global_step
    if cfg.get("test", True) and not trainer.interrupted:
        trainer.test(model, datamodule=datamodule, verbose=False)
        metrics["test"] = {k: v for k, v in _scalars(trainer.callback_metrics).items() if k.startswith("test/")}
        metrics["test_confusion"] = model.confusion.get("test")
    atomic_write_json(output_dir / "metrics.json", metrics)
    log.info("metrics in %s", output_dir / "metrics.json")
    return metrics
