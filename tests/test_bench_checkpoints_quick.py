"""The checkpoint, crossover-memory and GPU benches in their --quick mode, so CI notices when one breaks
or (crossover memory, disk arithmetic) drifts past its goal: each exits non-zero then."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str, out: Path, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick", "--out", str(out), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def test_checkpoint_disk_arithmetic_matches_real_files_and_the_default_fits(tmp_path):
    run_quick("checkpoint_disk.py", tmp_path)
    result = json.loads((tmp_path / "checkpoint_disk.json").read_text())
    assert result["real_file_check"]["all_exact"] and result["meets_goal"]
    assert result["default_modular_gb"] <= 90 < next(o["gb_modular_total"] for o in result["options"]
                                                     if (o["weights"], o["dtype"]) == ("both", "float32"))


def test_gpu_full_runs_its_cpu_stand_in(tmp_path):
    run_quick("gpu_full.py", tmp_path)
    result = json.loads((tmp_path / "gpu_full_quick.json").read_text())
    assert result["ran_on"] == "cpu" and result["runs"][0]["ok"] and result["runs"][0]["preset"] == "tiny"
    assert result["runs"][0]["modular_checkpoint"]["write_seconds"] > 0


@pytest.mark.slow
def test_crossover_assembly_memory_stays_under_its_goal(tmp_path):
    """~1 min and 1.5 GB of disk: one full-preset checkpoint, the assembly's peak RSS vs the weights."""
    run_quick("crossover_memory.py", tmp_path)
    assert json.loads((tmp_path / "crossover_memory_quick.json").read_text())["ours"]["meets_goal"]


@pytest.mark.slow
def test_callback_overhead_bench_runs_with_every_default_callback(tmp_path):
    run_quick("callback_overhead.py", tmp_path)
    result = json.loads((tmp_path / "callback_overhead_quick.json").read_text())
    names = {target.rsplit(".", 1)[1] for target in result["default_callbacks"].values()}
    assert result["design"] == "gated" and names <= set(result["callbacks"])  # every default callback ran
    epochs = result["gated"]["epochs"][0]
    assert [e["callbacks_on"] for e in epochs] == [True] * 3 + [False] * 2 + [True] * 2  # warm-up, off, on
    assert all(e["hooks_total_s"] == 0 for e in epochs if not e["callbacks_on"])  # off: no callback hook ran
    assert all(e["hooks_total_s"] > 0 for e in epochs if e["callbacks_on"])
    assert len(result["gated"]["ratio_per_on_pair"]) == 1 and result["ratio_with_to_without"] > 0
