"""Entry point: `python train.py [overrides]` (see README). All the work is in redheart.train."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="train")
def main(cfg: DictConfig) -> None:
    from redheart.train import train

    train(cfg)


if __name__ == "__main__":
    main()
