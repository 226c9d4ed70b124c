"""Entry point: `python export.py ckpt_dir=RUN select=crossover|best_single|last|<epoch> out=DIR`.

A model bundle of the chosen weights (README, "Using a trained model"); the work is in redheart.bundle.export.
"""

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="export")
def main(cfg: DictConfig) -> None:
    from redheart.bundle.export import export_bundle
    from redheart.errors import RedHeartError

    try:
        out = export_bundle(cfg.ckpt_dir, cfg.select, cfg.get("out"), cfg.get("analysis_dir"), cfg.weights,
                            cfg.device, dict(cfg.bootstrap))
    except RedHeartError as err:  # the message names the file and the fix
        logging.getLogger("export").error("%s: %s", type(err).__name__, err)
        raise SystemExit(2) from None
    print(out)


if __name__ == "__main__":
    main()
