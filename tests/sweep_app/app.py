"""A cheap stand-in for train.py to test the LR sweep machinery in seconds.

Each job writes the epoch_history.json a real job would write, with a validation loss that is a
parabola in log10(lr) around OPTIMUM (plus an overfitting gap above it), and counts its runs in
runs.log at the sweep root, so tests can see which LRs were launched and which were reused.
"""

import json
import math
import os
from pathlib import Path

import hydra
from filelock import FileLock
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

OPTIMUM = 1.3e-4
ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("REDHEART_ROOT", str(ROOT))


def history(lr: float, epochs: int) -> dict:
    distance = (math.log10(lr) - math.log10(OPTIMUM)) ** 2
    records = []
    for epoch in range(1, epochs + 1):
        val = 1.0 + distance + 1.0 / epoch
        train = val - 0.05 - 0.2 * max(0.0, math.log10(lr / OPTIMUM))
        first = records[0]["train_loss"] if records else train
        records.append({"epoch": epoch, "train_loss": train, "val_loss": val, "val": {"loss": val},
                        "grad_norm": {"mean": 1.0, "std": distance, "min": 0.5, "max": 2.0, "steps": 10},
                        "efficiency": (first - train) / first, "stability": 1.0 / (1.0 + distance),
                        "time_s": 0.01, "finite": math.isfinite(val), "lr": lr, "global_step": 10 * epoch})
    return {"initial_param_sha256": "same-init", "epochs": records}


@hydra.main(version_base="1.3", config_path="conf", config_name="app")
def main(cfg: DictConfig) -> float:
    out = Path(HydraConfig.get().runtime.output_dir)
    lr = float(cfg.optim.lr)
    runs = Path(HydraConfig.get().sweep.dir) / "runs.log"
    with FileLock(str(runs) + ".lock"), runs.open("a") as f:
        f.write(f"{lr!r}\n")
    if cfg.fail_above is not None and lr > cfg.fail_above:
        raise RuntimeError(f"diverged at lr {lr}")
    (out / "epoch_history.json").write_text(json.dumps(history(lr, cfg.trainer.max_epochs)))
    return history(lr, cfg.trainer.max_epochs)["epochs"][-1]["val_loss"]


if __name__ == "__main__":
    main()
