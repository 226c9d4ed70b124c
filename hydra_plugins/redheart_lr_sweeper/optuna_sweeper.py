"""OptunaSweeper: Optuna (>= 4) TPE over the learning rate, with a resumable study and pruning.

    python train.py -m experiment=lr_optuna [hydra.sweeper.n_trials=20]

The study lives in a database (default: SQLite `optuna.db` in the sweep folder), so running the same
sweep folder again continues the study: trial numbers go on, TPE sees every earlier trial, and only
the trials missing to reach `n_trials` finished (complete or pruned) ones are run. Each job gets its
trial through the `optuna_trial` override and reports the per-epoch value of `optimized_metric`
(redheart.sweep.pruning); the pruner may stop it early. Trials go through the configured launcher,
`n_jobs` at a time, into `<sweep>/trial{number}` folders (unique across resumed runs). The optuna
process itself only asks, launches and tells: the study is the one record of the search.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from redheart.io import atomic_write_json

log = logging.getLogger(__name__)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def distribution(override: Override) -> optuna.distributions.BaseDistribution:
    """Hydra sweep syntax → an Optuna distribution: interval(a, b), tagged `log` for a log scale and `int`
    for integers (Hydra reads interval bounds as floats), or choice(...)."""
    value = override.value()
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if "int" in value.tags:
            return optuna.distributions.IntDistribution(int(value.start), int(value.end), log=log_scale)
        return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution(list(value.list))
    raise ValueError(f"optuna sweeper: '{override.input_line}' must be interval(low, high) (tag(log, ...) for a "
                     "log scale) or choice(a, b, ...)")


def override_value(value: Any) -> str:
    """A Python value written as a Hydra override value (strings quoted, quotes escaped)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class OptunaSweeper(Sweeper):
    def __init__(self, direction: str = "minimize", study_name: str = "lr", storage: str | None = None,
                 n_trials: int = 20, n_jobs: int = 1, seed: int | None = None,
                 params: Mapping[str, str] | None = None, pruner: Any = None):
        if direction not in {"minimize", "maximize"}:
            raise ValueError(f"hydra.sweeper.direction must be minimize or maximize, got {direction!r}")
        if n_trials < 1 or n_jobs < 1:
            raise ValueError(f"hydra.sweeper.n_trials and n_jobs must be >= 1, got {n_trials}, {n_jobs}")
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs, self.seed = n_trials, n_jobs, seed
        self.params = dict(params or {})
        del pruner  # Hydra builds it with the sweeper; the jobs build their own from the config (_pruner_config)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def _space(self, arguments: list[str]) -> tuple[dict[str, optuna.distributions.BaseDistribution], list[str]]:
        """Search space (config `params`, then sweep syntax on the command line) and the fixed overrides."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space = {key: distribution(parser.parse_override(f"{key}={spec}")) for key, spec in self.params.items()}
        fixed = []
        for override in parser.parse_overrides(arguments):
            if override.is_sweep_override():
                space[override.get_key_element()] = distribution(override)
            else:
                fixed.append(override.input_line)
        if not space:
            raise ValueError("optuna sweeper: nothing to search; set hydra.sweeper.params")
        return space, fixed

    def _pruner_config(self) -> dict[str, Any] | None:
        """The pruner as config: a study's pruner is not stored with it, so every job builds its own from this."""
        cfg = self.config.hydra.sweeper.get("pruner")
        return None if cfg is None else OmegaConf.to_container(cfg, resolve=True)

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None
        if not self.config.get("optimized_metric"):
            raise ValueError("optuna sweeper: set optimized_metric (e.g. val/loss), the value each trial returns")
        space, fixed = self._space(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        storage = self.storage or f"sqlite:///{sweep_dir / 'optuna.db'}"
        study = optuna.create_study(study_name=self.study_name, storage=storage, direction=self.direction,
                                    load_if_exists=True)
        self._fail_stale(study)
        # Seeded per resume: the same seed again would redraw the first run's random start-up points.
        seed = None if self.seed is None else int(self.seed) + len(study.trials)
        study.sampler = optuna.samplers.TPESampler(seed=seed)
        done = sum(t.state in FINISHED for t in study.trials)
        remaining = max(0, self.n_trials - done)
        log.info("optuna study %r in %s: %d finished trials, running %d more", self.study_name, storage, done,
                 remaining)
        returns: list[Sequence[JobReturn]] = []
        while remaining > 0:
            trials = [study.ask(fixed_distributions=space) for _ in range(min(self.n_jobs, remaining))]
            batch = [self._job_overrides(fixed, trial, storage) for trial in trials]
            self.validate_batch_is_legal(batch)
            batch_returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, job in zip(trials, batch_returns, strict=True):
                self._tell(study, trial, job)
            returns.append(batch_returns)
            remaining -= len(trials)
        self._write_results(study, sweep_dir, storage)
        return returns

    def _job_overrides(self, fixed: list[str], trial: optuna.Trial, storage: str) -> list[str]:
        # imported here, not at the top: Hydra imports every plugin module at the start of every entry point
        # (predict.py too), and redheart.sweep.pruning imports Lightning for its callback (~9 s alone; measured
        # on predict.py text=...: 14.1-14.6 s before, 13.3-14.0 s after, as its embedding model shares most)
        from redheart.sweep.pruning import TRIAL_KEY

        params = [f"{key}={override_value(value)}" for key, value in trial.params.items()]
        handle = f"{TRIAL_KEY}=" + override_value({"storage": storage, "study_name": self.study_name,
                                                   "number": trial.number, "pruner": self._pruner_config()})
        return [*fixed, *params, handle, f"hydra.sweep.subdir=trial{trial.number}"]

    @staticmethod
    def _fail_stale(study: optuna.Study) -> None:
        """A trial still RUNNING when a sweep starts was left by a killed earlier run of it: mark it failed."""
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            log.warning("trial %d was left running by an earlier, interrupted sweep: marked failed", trial.number)
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)

    @staticmethod
    def _tell(study: optuna.Study, trial: optuna.Trial, job: JobReturn) -> None:
        if job.status == JobStatus.COMPLETED and job._return_value is not None:
            study.tell(trial, float(job._return_value))
            log.info("trial %d %s: %s", trial.number, trial.params, job._return_value)
        elif isinstance(job._return_value, optuna.TrialPruned):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            log.info("trial %d %s pruned: %s", trial.number, trial.params, job._return_value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            log.warning("trial %d %s failed: %r", trial.number, trial.params, job._return_value)

    def _write_results(self, study: optuna.Study, sweep_dir: Path, storage: str) -> None:
        """optuna_results.json: the best trial and every trial's state (the study holds the rest)."""
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise RuntimeError(f"optuna sweeper: no trial of study {self.study_name!r} completed; see the job logs "
                               f"under {sweep_dir}")
        best = study.best_trial
        atomic_write_json(sweep_dir / "optuna_results.json", {
            "study_name": self.study_name, "storage": storage, "direction": self.direction,
            "best": {"number": best.number, "params": best.params, "value": best.value},
            "trials": [{"number": t.number, "state": t.state.name, "params": t.params, "value": t.value,
                        "last_step": t.last_step} for t in trials],
        })
        log.info("best trial %d: %s -> %s", best.number, best.params, best.value)
