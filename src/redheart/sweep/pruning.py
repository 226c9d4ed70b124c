"""Optuna pruning inside a training job: report each epoch's value, stop when the pruner says so.

The Optuna sweeper (hydra_plugins/redheart_lr_sweeper/optuna_sweeper.py) passes the job its trial as
`optuna_trial={storage, study_name, number, pruner}`. `OptunaPruning` reports the monitored validation metric
to that trial after every validation epoch (rank zero only; the decision is broadcast so every DDP rank
stops together). A pruned job stops at the end of the epoch and `train()` raises `optuna.TrialPruned`,
which the sweeper records as a pruned trial.

optuna-integration's PyTorchLightningPruningCallback does the same for a trial object in the same
process; the trial here lives in another process (a joblib or SLURM worker), so it is re-opened from
the study storage by number.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import lightning as L

log = logging.getLogger(__name__)

TRIAL_KEY = "optuna_trial"  # the job config key the sweeper sets


class OptunaPruning(L.Callback):
    def __init__(self, storage: str, study_name: str, number: int, monitor: str = "val/loss",
                 pruner: Mapping[str, Any] | None = None) -> None:
        import optuna
        from hydra.utils import instantiate

        # Optuna does not store a study's pruner with it: each job builds the sweep's from its config.
        built = optuna.pruners.NopPruner() if pruner is None else instantiate(dict(pruner))
        study = optuna.load_study(study_name=study_name, storage=storage, pruner=built)
        trial_id = next((t._trial_id for t in study.get_trials(deepcopy=False) if t.number == number), None)
        if trial_id is None:
            raise ValueError(f"{TRIAL_KEY}: study {study_name!r} in {storage} has no trial {number}")
        self.trial = optuna.Trial(study, trial_id)
        self.monitor, self.number = monitor, number
        self.pruned_at: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, handle: Mapping[str, Any] | None, monitor: str | None) -> OptunaPruning | None:
        if not handle:
            return None
        return cls(str(handle["storage"]), str(handle["study_name"]), int(handle["number"]), monitor or "val/loss",
                   handle.get("pruner"))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        decision = None
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                raise KeyError(f"pruning monitors {self.monitor!r}, which validation did not log: "
                               f"{sorted(trainer.callback_metrics)}")
            value = float(value)
            if math.isfinite(value):  # a NaN epoch is the NaN guard's to stop, not a value to compare
                self.trial.report(value, step=trainer.current_epoch)
                if self.trial.should_prune():
                    decision = {"epoch": trainer.current_epoch, "value": value}
        decision = trainer.strategy.broadcast(decision, src=0)
        if decision is not None:
            self.pruned_at = decision
            trainer.should_stop = True

    def pruned_error(self) -> Exception | None:
        """The optuna.TrialPruned for `train()` to raise after fit, or None when the trial ran to the end."""
        if self.pruned_at is None:
            return None
        import optuna

        return optuna.TrialPruned(f"trial {self.number} pruned after epoch {self.pruned_at['epoch']}: "
                                  f"{self.monitor} {self.pruned_at['value']:.4g}")
