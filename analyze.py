"""Entry point: `python analyze.py ckpt_dir=RUN [output=DIR] [thresholds=FILE] [calibrate=FILE]
[crossover.<group>=<epoch>] [combine=false]`.

All the work is in redheart.analysis.run.analyze (docs/analysis.md, docs/crossover.md).
"""

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="analyze")
def main(cfg: DictConfig) -> None:
    from redheart.analysis.errors import AnalysisError
    from redheart.analysis.run import analyze
    from redheart.bundle.errors import BundleError
    from redheart.crossover.errors import CrossoverError
    from redheart.data.errors import DataError

    try:
        analyze(cfg)
    except (AnalysisError, BundleError, CrossoverError, DataError) as err:  # the message names the file and field; a traceback adds nothing
        logging.getLogger("analyze").error("%s: %s", type(err).__name__, err)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
