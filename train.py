"""Entry point: `python train.py [overrides]` (see README). All the work is in redheart.train."""

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="train")
def main(cfg: DictConfig) -> None:
    from callbacks.oom_backoff import OOMBackoffError
    from redheart.data.errors import DataError
    from redheart.model.summary import ParameterCountError
    from redheart.train import ResumeError, train

    try:
        train(cfg)
    except (DataError, ParameterCountError, ResumeError, OOMBackoffError) as err:  # the message says what and where; a traceback adds nothing
        logging.getLogger("train").error("%s: %s", type(err).__name__, err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
