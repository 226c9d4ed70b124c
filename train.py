"""Entry point: `python train.py [overrides]` (see README). All the work is in redheart.train."""

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig
from omegaconf.errors import InterpolationResolutionError

from redheart.sweep.optimal import register_resolver

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


register_resolver()  # ${optimal_lr:PATH}: the LR an LR sweep chose (docs/sweeps.md)


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from callbacks.oom_backoff import OOMBackoffError
    from redheart.data.errors import DataError
    from redheart.model.summary import ParameterCountError
    from redheart.train import ResumeError, optimized_value, train

    try:
        return optimized_value(train(cfg), cfg.get("optimized_metric"))  # a value for Optuna-style sweepers
    except (DataError, ParameterCountError, ResumeError, OOMBackoffError,
            InterpolationResolutionError) as err:  # the message says what and where; a traceback adds nothing
        logging.getLogger("train").error("%s: %s", type(err).__name__, err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
