"""The model and the data of a finished run, rebuilt from its `run.json` (the resolved training config).

Why: the crossover must be checked against the exact module tree the run trained (sizes from the
config, input width from the data), and evaluated on the run's own split. The data pipeline caches its
prepared split under a key of file hash + settings, so preparing it again reads the cache and gives the
identical train/val/test split.

The net's arguments are built here as redheart.train.model_arguments builds them (a test keeps the two
equal) rather than imported from it: that module imports Lightning (~0.2 GB of RSS), which assembling
the full preset's weights within 1.3x their size cannot afford (bench/crossover_memory.py). The data and
loss imports are deferred for the same reason.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from redheart.crossover.errors import CrossoverError
from redheart.io import read_json
from redheart.run_folder import RUN_INFO
from redheart.safe_targets import DATAMODULE, NET, check_targets
from redheart.schema import TaskSchema

if TYPE_CHECKING:
    from redheart.data.datamodule import RedHeartDataModule

log = logging.getLogger(__name__)


def run_config(run_dir: Path) -> DictConfig:
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise CrossoverError(f"{path}: not found; the crossover rebuilds the model from the run's resolved config")
    record = read_json(path, CrossoverError)
    config = record.get("config") if isinstance(record, dict) else None
    if not isinstance(config, dict) or not all(k in config for k in ("model", "optim", "data")):
        raise CrossoverError(f"{path}: field 'config' must hold the run's resolved model, optim and data config")
    check_run_targets(config, str(path))
    return OmegaConf.create(config)


def check_run_targets(config: dict[str, Any], source: str) -> None:
    """The parts of a run's config that get instantiated build only the project's net and datamodule."""
    if not isinstance(config.get("model"), dict) or not isinstance(config["model"].get("net"), dict):
        raise CrossoverError(f"{source}: field 'config.model.net' must hold the run's network config")
    check_targets(config["data"], f"{source}: config.data", CrossoverError, frozenset({DATAMODULE}))
    check_targets(config["model"]["net"], f"{source}: config.model.net", CrossoverError, frozenset({NET}))


def schema_of(cfg: DictConfig) -> TaskSchema:
    return TaskSchema.from_config(**OmegaConf.to_container(cfg.data.get("schema") or {}, resolve=True))


def datamodule_of(cfg: DictConfig, batch_size: int | None = None) -> RedHeartDataModule:
    """The run's datamodule, prepared and set up (from the cache), writing no report into the run folder."""
    overrides: dict[str, Any] = {"report_dir": None, "progress": False}
    if batch_size:
        overrides["batch_size"] = int(batch_size)
    check_targets(cfg.data, "config.data", CrossoverError, frozenset({DATAMODULE}))  # also when not from run_config
    datamodule: RedHeartDataModule = hydra.utils.instantiate(cfg.data, **overrides)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def input_dim_of(run_dir: Path, cfg: DictConfig) -> int:
    """Embedding width: metrics.json of the finished run, else the prepared data (cached)."""
    metrics = Path(run_dir) / "metrics.json"
    if metrics.is_file():
        dim = json.loads(metrics.read_text(encoding="utf-8")).get("embedding_dim")
        if isinstance(dim, int) and dim > 0:
            return dim
    log.info("no embedding_dim in %s: preparing the run's data (from its cache) to read it", metrics)
    return datamodule_of(cfg).embedding_dim


def net_arguments(cfg: DictConfig, input_dim: int) -> dict[str, Any]:
    """RedHeartNet's config, sized to the data as redheart.train.model_arguments sizes it."""
    schema = schema_of(cfg)
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    net.update(input_dim=input_dim, num_classes=len(schema.class_names), num_bentham=len(schema.bentham_names),
               num_surd=len(schema.surd_names))
    return net


def build_net(cfg: DictConfig, input_dim: int, device: str | torch.device = "cpu") -> torch.nn.Module:
    """RedHeartNet as the run built it; `device="meta"` allocates nothing (for checking shapes)."""
    arguments = net_arguments(cfg, input_dim)
    check_targets(arguments, "config.model.net", CrossoverError, frozenset({NET}))
    with torch.device(device):
        return hydra.utils.instantiate(arguments)


def loss_settings(cfg: DictConfig) -> dict[str, Any]:
    from redheart.training.lit_module import DEFAULT_LOSS

    loss = OmegaConf.to_container(cfg.model.get("loss") or {}, resolve=True)
    return {**DEFAULT_LOSS, **loss}
