"""`make demo` (python -m redheart.demo) end to end on a tiny preset, and `make isear` without the data.

The demo chains the real entry points (train.py data report → hierarchical LR sweep → main run with
`${optimal_lr:...}` → analyze.py); the test checks that each step consumed the previous step's output:
the main run trained with the LR the sweep chose, and the final report evaluated that run's checkpoints.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

TINY = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64", "trainer.max_epochs=6")


@pytest.mark.slow
def test_the_demo_chains_sweep_main_run_and_analysis_and_prints_where_everything_is(tmp_path):
    args = [sys.executable, "-m", "redheart.demo", *TINY, f"paths.log_dir={tmp_path}", "task_name=tinydemo",
            f"data.cache_dir={tmp_path / 'cache'}", "data.progress=false", "+trainer.enable_progress_bar=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REDHEART_ROOT": str(REPO_ROOT)}
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    out = result.stdout
    for title in ("1/4 data report", "2/4 hierarchical LR sweep", "3/4 main run", "4/4 sweet spots"):
        assert f"=== {title}" in out
    outputs = tmp_path / "tinydemo"
    (sweep,) = (outputs / "lr_sweeps").iterdir()
    (run,) = (p for p in (outputs / "runs").iterdir() if not p.name.endswith("_data"))
    chosen = json.loads((sweep / "optimal_lr.json").read_text())
    run_info = json.loads((run / "run.json").read_text())
    assert run_info["lr_source"] == f"${{optimal_lr:{sweep}}}"
    assert run_info["config"]["optim"]["lr"] == pytest.approx(chosen["lr"])  # the sweep's choice trained
    manifest = json.loads((run / "modular" / "manifest.json").read_text())
    assert [c["epoch"] for c in manifest["checkpoints"]] == [2, 4, 6]
    results = run / "analysis_results"
    evaluation = json.loads((results / "evaluation.json").read_text())
    names = {c["name"] for c in evaluation["candidates"]}
    assert {"best_single", "crossover", "logistic_regression"} <= names
    assert f"final report     {results / 'final_report.md'}" in out
    assert f"TensorBoard logs {run / 'tensorboard'}" in out and any((run / "tensorboard").rglob("events.out.*"))
    (hint,) = [line for line in out.splitlines() if line.startswith("view them with")]
    command = hint.split()[3]  # the TensorBoard printed must exist as given (not only on the venv's PATH)
    assert f"tensorboard --logdir {outputs}" in hint and os.access(command, os.X_OK), hint
    for stage in ("data report", "LR sweep", "main run", "analysis", "total"):
        assert re.search(rf"^{stage} +\d+ s$", out, re.M), stage
    data_report = json.loads((outputs / "runs" / f"{run.name}_data" / "data_report.json").read_text())
    counts = data_report["counts"]
    assert counts["read"] == counts["kept"] + counts["near_duplicates"] + counts["quarantined"]


def test_make_isear_without_the_data_says_where_to_put_it(tmp_path):
    missing = tmp_path / "nowhere" / "isear.csv"
    result = subprocess.run(["make", "-s", "isear-present", f"ISEAR={missing}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"ISEAR not found at {missing}" in result.stdout and "make isear ISEAR=/path/to/isear.csv" in result.stdout


@pytest.mark.slow
def test_the_demo_with_the_fine_tuned_encoder_sweeps_its_lr_and_gives_it_a_sweet_spot(tmp_path):
    from tests.conftest import make_tiny_encoder

    encoder = make_tiny_encoder(tmp_path / "bert")
    args = [sys.executable, "-m", "redheart.demo", "model=tiny", "encoder=finetune", "data.embedding.backend=hashing",
            "data.embedding.dim=64", f"data.tokens.model={encoder}", "data.tokens.max_length=32",
            "data.max_samples=400", "trainer.max_epochs=4", "sweep=short", "sweep_param=optim.encoder.lr",
            "sweep_range=1e-5,1e-3", f"paths.log_dir={tmp_path}", "task_name=tinyft",
            f"data.cache_dir={tmp_path / 'cache'}", "data.progress=false", "+trainer.enable_progress_bar=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REDHEART_ROOT": str(REPO_ROOT)}
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "=== 2/4 hierarchical LR sweep of optim.encoder.lr" in result.stdout
    outputs = tmp_path / "tinyft"
    (sweep,) = (outputs / "lr_sweeps").iterdir()
    (run,) = (p for p in (outputs / "runs").iterdir() if not p.name.endswith("_data"))
    chosen = json.loads((sweep / "optimal_lr.json").read_text())
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["optim"]["encoder"]["lr"] == pytest.approx(chosen["lr"])  # the sweep chose the encoder's LR
    assert config["optim"]["lr"] == pytest.approx(5e-4)                      # and left the rest's alone
    results = run / "analysis_results"
    report = (results / "final_report.md").read_text().splitlines()
    assert "optimal_lr.json](" in next(line for line in report if line.startswith("- LR sweep:"))  # linked
    module_metrics = json.loads((results / "module_metrics.json").read_text())
    assert "encoder" in module_metrics["recommended"]                         # its own sweet spot
    evaluation = json.loads((results / "evaluation.json").read_text())
    assert {"best_single", "crossover", "logistic_regression"} <= {c["name"] for c in evaluation["candidates"]}
