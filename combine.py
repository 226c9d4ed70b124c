"""Entry point: `python combine.py ckpt_dir=RUN [crossover.<group>=<epoch> ...]` (docs/crossover.md).

The design's combine_modules.py: one model assembled from per-group checkpoint epochs (explicit, or the
analysis' recommendations), written as crossover_final.safetensors with provenance.json. All the work
is in redheart.crossover.run.combine.
"""

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="combine")
def main(cfg: DictConfig) -> None:
    from redheart.crossover.run import combine
    from redheart.errors import RedHeartError

    try:
        combine(cfg)
    except RedHeartError as err:  # the message names the file and field; a traceback adds nothing
        logging.getLogger("combine").error("%s: %s", type(err).__name__, err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
