"""Entry point: `python train.py [overrides]` (see README). All the work is in redheart.train."""

import logging
import os
import shutil
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from redheart.sweep.optimal import register_resolver

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


register_resolver()  # ${optimal_lr:PATH}: the LR an LR sweep chose (docs/sweeps.md)


def remove_if_nothing_useful(run_dir: Path) -> None:
    """Delete a failed run's folder when it holds only what Hydra wrote at start (.hydra/, the log).

    The error is on the console; an empty run folder would only pile up under outputs/ and look like a run.
    """
    if HydraConfig.get().mode == RunMode.RUN and run_dir.is_dir() and all(
            p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)  # train.log is inside: nothing may write (or reopen) it any more
            handler.close()
        shutil.rmtree(run_dir, ignore_errors=True)


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from callbacks.nan_guard import NonFiniteLossError
    from redheart.errors import RedHeartError
    from redheart.train import optimized_value, train

    try:
        return optimized_value(train(cfg), cfg.get("optimized_metric"))  # a value for Optuna-style sweepers
    except RedHeartError as err:  # the message says what and where; a traceback adds nothing
        logging.getLogger("train").error("%s: %s", type(err).__name__, err)
        if isinstance(err, NonFiniteLossError) and HydraConfig.get().mode == RunMode.MULTIRUN:
            # A diverging LR is a result of a sweep, not a failure of it: the job ends normally, its
            # nan_event.json marks it diverged (never chosen), and the other jobs and optimal_lr.json go on.
            # A sweeper that optimises a value (Optuna) gets the error and records a failed trial.
            if cfg.get("optimized_metric"):
                raise
            return None
        remove_if_nothing_useful(Path(HydraConfig.get().runtime.output_dir))
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
