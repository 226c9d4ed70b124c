"""Entry point: `python evaluate.py bundle=DIR data=<data config> data.path=FILE [baseline=true] [out=DIR]`.

A model bundle measured on any labelled dataset (README, "Using a trained model"); the work is in
redheart.bundle.evaluate.
"""

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from redheart.bundle.errors import BundleError
    from redheart.bundle.evaluate import DATA_KEYS, evaluate_bundle
    from redheart.errors import RedHeartError

    try:
        if OmegaConf.is_missing(cfg.data, "path"):
            raise BundleError("data.path=FILE is required: the labelled dataset to evaluate on")
        data = {k: _plain(cfg.data[k]) for k in DATA_KEYS if k in cfg.data}  # only what reading the data needs
        evaluate_bundle(cfg.bundle, data, cfg.get("out"), cfg.get("batch_size"), cfg.get("device"),
                        _plain(cfg.bootstrap), int(cfg.calibration_bins), cfg.get("baseline"),
                        _plain(cfg.baseline_settings), cfg.get("embedding_model"))
    except RedHeartError as err:  # the message names the file and the fix
        logging.getLogger("evaluate").error("%s: %s", type(err).__name__, err)
        raise SystemExit(2) from None


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


if __name__ == "__main__":
    main()
