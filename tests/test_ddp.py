"""DDP on 2 CPU processes (gloo): `trainer=ddp` trains, its files verify, logged losses are the whole split's.

The check that matters is the val loss: logged without `sync_dist`, each rank would report the mean of
its own half of the val split; with it, the modular checkpoint's val loss is the whole split's, which
the crossover evaluation (one process, every val record) recomputes from the saved weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callbacks.modular_checkpoint import ModularCheckpoint
from redheart.crossover.run import crossover_and_evaluate
from tests.test_crossover import all_at

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_logs_whole_split_losses(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REDHEART_ROOT": str(ROOT)}
    run_dir = tmp_path / "run"
    args = [sys.executable, "train.py", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "model=tiny",
            "data.embedding.backend=hashing", "data.embedding.dim=64", "data.progress=false", "logger=none",
            "+trainer.enable_progress_bar=false", "trainer.max_epochs=2", "test=false", f"hydra.run.dir={run_dir}"]
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr  # two processes trained
    manifest = json.loads((run_dir / "modular" / "manifest.json").read_text())
    assert [c["epoch"] for c in manifest["checkpoints"]] == [2]  # the evaluation below verifies every sha256
    assert not list(run_dir.rglob("*.tmp")) and not list(run_dir.rglob(".*.tmp"))
    evaluation = crossover_and_evaluate(all_at(2, "auto"), {"fixed_epochs": [], "shifts": [], "greedy_soup": False,
                                                            "greedy_crossover": False, "baseline": {
                                                                "logistic_regression": False}},
                                        run_dir, None, tmp_path / "eval")["evaluation"]
    consistency = evaluation["consistency_with_training"]
    assert consistency["checked_epochs"] == 1
    # DistributedSampler pads the val split to a multiple of 2 with one repeated record at most
    assert consistency["max_abs_val_loss_difference"] < 5e-3, consistency


def test_modular_checkpoint_refuses_sharded_strategies():
    from lightning.pytorch.strategies import FSDPStrategy

    class Trainer:
        strategy = FSDPStrategy()

    callback = ModularCheckpoint("unused", {"backbone": ["backbone"]})
    with pytest.raises(ValueError, match="does not support FSDPStrategy.*trainer=ddp"):
        callback.setup(Trainer(), None, "fit")
