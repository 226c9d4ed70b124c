"""HierarchicalLRSweeper: stages of LR jobs, each narrowing around the best LR so far (docs/design.md, LR sweep).

    python train.py -m hydra/sweeper=hierarchical_lr trainer.max_epochs=5

Each stage is one batch sent through the configured launcher (basic, joblib, submitit), so jobs of a
stage run in parallel where the launcher allows. Between stages the sweeper reads the cumulative
file (also fed by other sweeps sharing it), scores every comparable job (redheart.sweep.score) and
plans the next stage (redheart.sweep.stages): reused LRs are not re-run, new ones keep a 10% gap.
Job folders are `<sweep dir>/stage{s}/{i}`; after each stage `stage{s}_scores.png` and the
cumulative file; at the end `optimal_lr.json` and `lr_curves.png`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from redheart.io import atomic_write_json
from redheart.sweep.cumulative import CumulativeResults
from redheart.sweep.hydra_callback import record_job
from redheart.sweep.optimal import cumulative_path, select_from_config, write_optimal
from redheart.sweep.plots import plot_stage
from redheart.sweep.records import signature
from redheart.sweep.stages import log_points, plan_stage, stage_range

log = logging.getLogger(__name__)


class HierarchicalLRSweeper(Sweeper):
    def __init__(self, lr_range: Sequence[float] = (1e-5, 5e-4), stages: int = 5, points_per_stage: int = 5,
                 shrink: float = 0.6, min_gap: float = 0.1, param: str = "optim.lr"):
        low, high = (float(v) for v in lr_range)
        if not 0 < low < high:
            raise ValueError(f"hydra.sweeper.lr_range must be [low, high] with 0 < low < high, got {list(lr_range)}")
        if stages < 1 or points_per_stage < 1:
            raise ValueError(f"hydra.sweeper.stages and points_per_stage must be >= 1, "
                             f"got {stages}, {points_per_stage}")
        if not 0 < shrink < 1 or min_gap < 0:
            raise ValueError(f"hydra.sweeper.shrink must be in (0, 1) and min_gap >= 0, got {shrink}, {min_gap}")
        self.lr_range = (low, high)
        self.stages, self.points, self.shrink = stages, points_per_stage, shrink
        self.min_gap, self.param = min_gap, param
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def _check_arguments(self, arguments: list[str]) -> None:
        parsed = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(arguments)
        for override in parsed:
            if override.get_key_element() == self.param:
                raise ValueError(f"hierarchical_lr chooses {self.param} itself: drop '{override.input_line}' "
                                 "(set hydra.sweeper.lr_range instead)")
            if override.is_sweep_override():
                raise ValueError(f"hierarchical_lr sweeps only {self.param}: '{override.input_line}' is a sweep; "
                                 "run one hierarchical sweep per setting")

    def _signature(self, arguments: list[str]) -> str:
        job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, [*arguments, f"{self.param}=1e-4"])
        with open_dict(job_cfg):
            del job_cfg["hydra"]
        return signature(job_cfg)

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None
        self._check_arguments(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        cumulative = cumulative_path(self.config)
        results = CumulativeResults(cumulative)
        sig = self._signature(arguments)
        returns: list[Sequence[JobReturn]] = []
        stages: list[dict[str, Any]] = []
        job_idx = 0
        for stage in range(self.stages):
            entries = [e for e in results.read() if e["signature"] == sig]
            best = select_from_config(entries, self.config).best_lr if entries else None
            low, high = stage_range(stage, best, self.lr_range, self.shrink)
            plan = plan_stage(log_points(low, high, self.points), [float(e["lr"]) for e in entries], self.min_gap)
            launch = [(i, p.lr) for i, p in enumerate(plan) if not (p.reused or p.skipped)]
            batch = [(*arguments, f"{self.param}={lr!r}", f"hydra.sweep.subdir=stage{stage}/{i}") for i, lr in launch]
            log.info("stage %d: range [%.3g, %.3g] around %s; run %s; reuse %s; no room at a %g gap for %s", stage, low,
                     high, best, [f"{lr:.3g}" for _, lr in launch], [f"{p.lr:.3g}" for p in plan if p.reused],
                     self.min_gap, [f"{p.lr:.3g}" for p in plan if p.skipped])
            if batch:
                self.validate_batch_is_legal(batch)
                stage_returns = self.launcher.launch(batch, initial_job_idx=job_idx)
                job_idx += len(batch)
                returns.append(stage_returns)
                self._record(stage_returns, stage, sweep_dir, cumulative)
            entries = [e for e in results.read() if e["signature"] == sig]
            if not any(e["status"] == "completed" for e in entries):  # a broken config, not a bad LR
                for batch_returns in returns:
                    _ = batch_returns[0].return_value  # raises the first job's error
                raise RuntimeError(f"no job of this config completed; see {cumulative}")
            selection = select_from_config(entries, self.config)
            stages.append({"stage": stage, "range": [low, high], "centre": best,
                           "planned": [{"lr": p.lr, "reused": p.reused, "moved_from": p.moved_from,
                                        "skipped": p.skipped} for p in plan],
                           "best_after": selection.best_lr})
            atomic_write_json(sweep_dir / "stages.json", {"signature": sig, "stages": stages})
            if selection.scores:
                plot_stage([p.lr for p in plan if not p.skipped], stage, selection,
                           sweep_dir / f"stage{stage}_scores.png")
        write_optimal(self.config, sig)
        return returns

    @staticmethod
    def _record(stage_returns: Sequence[JobReturn], stage: int, sweep_dir: Path, cumulative: Path) -> None:
        """Record every job with its stage (a failed job is recorded as failed: it is never chosen)."""
        for r in stage_returns:
            record_job(r.cfg, r, sweep_dir, cumulative, stage)
