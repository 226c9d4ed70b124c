"""Entry point: `python predict.py bundle=DIR input=FILE output=FILE` or `python predict.py bundle=DIR text="..."`.

A model bundle over new texts (README, "Using a trained model"); the work is in redheart.bundle.predict.
"""

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="predict")
def main(cfg: DictConfig) -> None:
    from redheart.bundle.predict import predict
    from redheart.errors import RedHeartError

    try:
        predict(cfg)
    except RedHeartError as err:  # the message names the file and the fix
        logging.getLogger("predict").error("%s: %s", type(err).__name__, err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
