"""`python analyze.py` on a real (tiny) training run: the three outputs, readable, from real metrics files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from matplotlib.image import imread

from redheart.train import train
from tests.conftest import REPO_ROOT, compose_for

FAST = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64", "data.progress=false",
        "logger=none", "+trainer.enable_progress_bar=false", "test=false")


@pytest.mark.slow
def test_analyze_py_on_a_real_tiny_run_writes_report_plots_and_metrics(tmp_path):
    train(compose_for(tmp_path, *FAST, "trainer.max_epochs=10"))  # 5 modular checkpoints: 2, 4, ..., 10
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "analyze.py"), f"ckpt_dir={run / 'modular'}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    out = run / "analysis_results"
    metrics = json.loads((out / "module_metrics.json").read_text())
    manifest = json.loads((run / "modular" / "manifest.json").read_text())
    assert metrics["epochs"] == [c["epoch"] for c in manifest["checkpoints"]] == list(range(2, 12, 2))
    assert set(metrics["recommended"]) == set(manifest["groups"])
    for group, entry in metrics["groups"].items():
        epoch = entry["recommended_epoch"]
        assert epoch in metrics["epochs"] and epoch not in entry["excluded_epochs"]
        assert entry["plateau"][0] <= entry["plateau"][1]
        assert entry["series"][entry["metric"]["name"]]["10"] is not None  # the real metric was found
        assert entry["series"][f"groups/{group}/grad_norm_mean"]["2"] > 0
    report = (out / "analysis_report.md").read_text()
    assert all(f"[Module: {g}]" in report for g in manifest["groups"])
    assert "- Recommended epoch:" in report and "- Confidence:" in report and "nan" not in report.lower()
    pngs = sorted(p.name for p in (out / "visualizations").glob("*.png"))
    assert pngs == sorted([f"curves_{g}.png" for g in manifest["groups"]] +
                          ["mcda_heatmap.png", "overfitting.png", "vote.png"])
    for name in pngs:
        image = imread(out / "visualizations" / name)
        assert image.shape[0] > 300 and image.shape[1] > 500 and image.std() > 0.05  # a drawn picture
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "run"]  # Hydra left nothing in the cwd
