"""Hydra callback of every multirun that sweeps `optim.lr` (conf/hydra/default.yaml enables it).

`on_job_end` runs where the job ran — in a joblib or SLURM worker, not the launching process — so it
aggregates through the cumulative file (locked, atomic), never through memory. `on_multirun_end`
runs in the launching process after all jobs and writes optimal_lr.json and lr_curves.png.
Single runs and multiruns that do not sweep the learning rate are left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from redheart.sweep.cumulative import CumulativeResults
from redheart.sweep.optimal import cumulative_path, write_optimal
from redheart.sweep.records import LR_KEY, job_entry, swept_param

log = logging.getLogger(__name__)


def sweeps_lr(overrides: list[str], param: str = LR_KEY) -> bool:
    return any(o.split("=", 1)[0].lstrip("+~") == param for o in overrides)


def record_job(job_cfg: DictConfig, job_return: JobReturn, sweep_dir: Path, cumulative: Path,
               stage: int | None = None) -> dict[str, Any]:
    """Append one finished job to the cumulative file (idempotent: keyed by its folder).

    Paths come in resolved: re-resolving `hydra.sweep.dir` on a copied config would re-evaluate `${now:}`.
    """
    failed = job_return.status != JobStatus.COMPLETED
    error = repr(job_return._return_value) if failed else None
    entry = job_entry(job_cfg, Path(job_return.hydra_cfg.hydra.runtime.output_dir), sweep_dir,
                      "failed" if failed else "completed", error, stage)
    CumulativeResults(cumulative).append(entry)
    return entry


class LRSweepCallback(Callback):
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        overrides = list(job_return.overrides or [])
        if config.hydra.mode != RunMode.MULTIRUN or not sweeps_lr(overrides, swept_param(config)):
            return
        record_job(config, job_return, Path(config.hydra.sweep.dir), cumulative_path(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.sweeper.get("_target_", "")).endswith("HierarchicalLRSweeper"):
            return  # it wrote optimal_lr.json itself, from the jobs of its own config signature
        if cumulative_path(config).is_file():
            write_optimal(config)
