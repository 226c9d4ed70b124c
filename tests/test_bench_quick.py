"""Every bench script still runs: `python bench/<name>.py --quick --out DIR` writes a JSON with sane figures.

A benchmark that only runs by hand rots (analysis_speed.py once failed for weeks); its quick mode
(tiny preset, small n) keeps it in CI at the cost of seconds to tens of seconds each.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = sorted(p.name for p in (REPO_ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
# Quick modes with their own assertions (goals, not just sane figures): tests/test_bench_checkpoints_quick.py
CHECKED_ELSEWHERE = {"callback_overhead.py", "crossover_memory.py", "checkpoint_disk.py", "gpu_full.py"}


def _finite_numbers(value) -> bool:
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


# What each script's JSON must say for its figures to mean anything (beyond running at all).
CHECKS = {
    "analysis_speed.py": lambda r: r["pngs"] >= 10 and len(r["process_wall_s"]) == 1
    and all(w > 0 for w in r["process_wall_s"]) and r["stages_in_process"]["analyse_s"] > 0,
    "dedup_bench.py": lambda r: r["generated_vs_seed_loop"]["identical_kept_sets"]
    and r["generated"]["n"] == 2000 and 0 < r["generated"]["dropped"] < 2000,
    "embedding_cache_bench.py": lambda r: r["texts"] == 64 and r["first_run_encoded"] == 64
    and r["rerun_model_loads"] == 0 and r["first_run_seconds"] > r["rerun_seconds"] > 0,
    "full_step_memory.py": lambda r: r["model"] == "tiny" and r["params"] > 0
    and r["peak_rss_gb"] >= r["baseline_rss_gb"] > 0 and r["step_seconds"] > 0,
    "kill_resume.py": lambda r: r["passed"] and r["kill_count"] >= 1,
    "predict_throughput.py": lambda r: r["texts"] == 128 and r["raw_encode_texts_per_second"] > 0
    and r["predict_texts_per_second"] > 0 and 0 < r["network_share_of_predict"] < 1
    and r["fine_tuned"]["predict_texts_per_second"] > 0 and r["fine_tuned"]["max_length"] == 128,
    "cpu_threads.py": lambda r: r["model"] == "tiny" and r["arms"]["setting_alone"]["threads"] == r["setting"]
    and all(a["median_s"] > 0 for a in r["arms"].values()) and all(v > 0 for v in r["ratios"].values()),
    "isear_encoder.py": lambda r: set(r["variants"]) >= {"frozen", "finetune", "plain_finetune"}
    and all(0 <= v["test_acc"] <= 1 and v["wall_s"] > 0 and "delta_acc_vs_plain_finetune_ci" in v
            for v in r["variants"].values())
    and r["variants"]["frozen_tokens"]["encoder_forward_pass_s"] > 0
    and all(r["variants"][name]["chosen"] in r["variants"][name]["chosen_on_val_from"]
            and r["variants"][name]["val_acc"] == max(r["variants"][v]["val_acc"]
                                                      for v in r["variants"][name]["chosen_on_val_from"])
            for name in ("finetune", "plain_finetune") if "chosen" in r["variants"][name])
    and "chosen" in r["variants"]["plain_finetune"],  # its LR is chosen on val by default
    "encoder_activations.py": lambda r: r["model"] == "tiny" and r["encoder_parameters"] > 0
    and r["lengths"]["128"]["saved_bytes_fp32_per_text"] > r["lengths"]["32"]["saved_bytes_fp32_per_text"] > 0,
    "crossover_seeds.py": lambda r: r["complete"] and len(r["seeds"]) == 2
    and set(r["beat_best_single_beyond_ci_on_every_seed"]) == {"emotion", "intensity", "regret", "bentham", "surd"},
    "ema_every_n.py": lambda r: r["model"] == "tiny" and set(r["summary"]) >= {"1", "4"}
    and r["summary"]["1"]["max_abs_val_loss_difference_vs_n1"] == 0.0,
    "checkpoint_writer.py": lambda r: r["model"] == "tiny" and r["checkpoint_bytes"] > 0
    and all(r["modes"][m]["stage_s"] > 0 and r["modes"][m]["overlapping_steps"][0] >= 1 for m in ("thread", "process"))
    and r["modes"]["none"]["stage_s"] == 0 and all(m["step_s"] > 0 for m in r["modes"].values()),
    "param_monitor_cost.py": lambda r: r["model"] == "tiny" and r["params"] > 0 and r["window_check_s"] > 0
    and r["fwd_bwd_s"] > 0 and r["snapshot_bytes"] < r["full_copy_bytes"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_quick_mode_writes_sane_figures(script, tmp_path):
    if script in CHECKED_ELSEWHERE:
        pytest.skip(f"{script}: run by tests/test_bench_checkpoints_quick.py")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / script), "--quick", "--out", str(out)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (written,) = out.glob("*.json")  # one JSON, in the folder given (never in bench/results/)
    figures = json.loads(written.read_text())
    assert figures["quick"] is True and _finite_numbers(figures)
    assert CHECKS.get(script, lambda r: bool(r))(figures), json.dumps(figures)[:3000]


def test_every_bench_script_has_a_quick_check():
    assert set(SCRIPTS) == set(CHECKS) | CHECKED_ELSEWHERE


@pytest.mark.slow
def test_the_isear_seed_ensemble_averages_its_runs_probabilities(tmp_path):
    import numpy as np

    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO_ROOT / "bench" / "isear_encoder.py"), "--quick", "--out", str(out),
               "--ensemble-seeds", "1,2", "--variants", "plain_finetune_hi"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    figures = json.loads((out / "isear_encoder_seeds_quick.json").read_text())
    row = figures["variants"]["plain_finetune_hi"]
    assert figures["quick"] is True and _finite_numbers(figures) and figures["seeds"] == [1, 2]
    assert [m["seed"] for m in row["single_runs"]] == [1, 2]
    runs = [np.load(out / ".isear_encoder_seeds_quick" / f"seed_{s}" / "plain_finetune_hi.npz") for s in (1, 2)]
    assert not np.array_equal(runs[0]["test_prob"], runs[1]["test_prob"])  # the seeds trained different models
    for split in ("val", "test"):  # the ensemble is the argmax of the mean probability, on both splits
        mean = np.mean([r[f"{split}_prob"] for r in runs], axis=0).argmax(1)
        accuracy = round(float((mean == runs[0][f"{split}_labels"]).mean()), 4)
        assert row["ensemble"][f"{split}_acc"] == accuracy
