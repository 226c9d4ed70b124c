"""Entry point: `python train.py [overrides]` (see README). All the work is in redheart.train."""

import logging
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import InterpolationResolutionError

from redheart.sweep.optimal import register_resolver

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


register_resolver()  # ${optimal_lr:PATH}: the LR an LR sweep chose (docs/sweeps.md)


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from callbacks.nan_guard import NonFiniteLossError
    from callbacks.oom_backoff import OOMBackoffError
    from redheart.data.errors import DataError
    from redheart.model.summary import ParameterCountError
    from redheart.threads import ThreadsSettingError
    from redheart.train import ResumeError, optimized_value, train

    try:
        return optimized_value(train(cfg), cfg.get("optimized_metric"))  # a value for Optuna-style sweepers
    except (DataError, ParameterCountError, ResumeError, OOMBackoffError, NonFiniteLossError, ThreadsSettingError,
            InterpolationResolutionError) as err:  # the message says what and where; a traceback adds nothing
        logging.getLogger("train").error("%s: %s", type(err).__name__, err)
        if isinstance(err, NonFiniteLossError) and HydraConfig.get().mode == RunMode.MULTIRUN:
            # A diverging LR is a result of a sweep, not a failure of it: the job ends normally, its
            # nan_event.json marks it diverged (never chosen), and the other jobs and optimal_lr.json go on.
            # A sweeper that optimises a value (Optuna) gets the error and records a failed trial.
            if cfg.get("optimized_metric"):
                raise
            return None
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
