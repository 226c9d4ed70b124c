"""LR sweep pieces without training: the cumulative file under concurrent writers, the selection
scores, stage planning (reuse, 10% gap), the optimal_lr resolver, and EMA warm-up."""

from __future__ import annotations

import json
import math
import multiprocessing as mp

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from torch.optim.swa_utils import AveragedModel

from callbacks.ema import warmup_decay, warmup_ema_multi_avg_fn
from redheart.sweep.cumulative import CumulativeResults, SweepFileError
from redheart.sweep.optimal import OptimalLRError, read_optimal_lr, register_resolver
from redheart.sweep.score import ScoreConfigError, job_criteria, select
from redheart.sweep.stages import keep_gap, log_points, plan_stage, stage_range
from tests.sweep_app.concurrent_writer import append_entries


def entry(lr: float, val: list[float], train: list[float] | None = None, stability: float = 0.5,
          status: str = "completed", finite: bool = True) -> dict:
    train = train or [v - 0.05 for v in val]
    epochs = [{"epoch": i + 1, "val_loss": v, "train_loss": t, "stability": stability, "finite": finite,
               "efficiency": (train[0] - t) / train[0]} for i, (v, t) in enumerate(zip(val, train, strict=True))]
    return {"key": f"job-{lr}", "lr": lr, "signature": "s", "status": status, "epochs": epochs, "error": None}


def test_eight_concurrent_writers_lose_no_entry(tmp_path):
    path = tmp_path / "lr_sweep_cumulative.json"
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=append_entries, args=(str(path), w, 15)) for w in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert all(w.exitcode == 0 for w in workers)
    keys = {e["key"] for e in CumulativeResults(path).read()}
    assert keys == {f"{w}-{i}" for w in range(8) for i in range(15)}


def test_recording_a_job_twice_keeps_one_entry_and_a_foreign_file_is_refused(tmp_path):
    results = CumulativeResults(tmp_path / "c.json")
    results.append({"key": "a", "stage": None})
    assert results.append({"key": "a", "stage": 2}) == 1
    assert results.read() == [{"key": "a", "stage": 2}]
    (tmp_path / "bad.json").write_text(json.dumps({"entries": []}))
    with pytest.raises(SweepFileError, match="bad.json.*format"):
        CumulativeResults(tmp_path / "bad.json").read()


def test_seed003_score_normalises_each_criterion_and_never_picks_a_diverged_job():
    entries = [
        entry(1e-5, [2.0, 1.9, 1.8, 1.7]),                  # slow: worst loss and efficiency
        entry(1e-4, [2.0, 1.5, 1.2, 1.0], stability=0.8),   # best loss, efficiency and stability
        entry(1e-3, [2.0, 1.6, 1.4, 1.3], train=[1.9, 1.2, 0.8, 0.5]),  # overfits
        entry(1e-2, [2.0, math.nan, 9.0, 9.0], finite=False),
        entry(3e-2, [], status="failed"),
    ]
    sel = select(entries)
    assert sel.best_lr == 1e-4 and sel.higher_is_better
    assert set(sel.unscored) == {1e-2, 3e-2} and "diverged" in sel.unscored[1e-2]
    assert all(0.0 <= s <= 1.0 for s in sel.scores.values())
    # 1e-4: best val loss (0.4), stability (0.2) and gap (0.2, tied with 1e-5); efficiency between 1e-5 and 1e-3
    efficiency = {lr: (1.95 - t) / 1.95 for lr, t in ((1e-5, 1.65), (1e-4, 0.95))} | {1e-3: (1.9 - 0.5) / 1.9}
    normalised = (efficiency[1e-4] - efficiency[1e-5]) / (efficiency[1e-3] - efficiency[1e-5])
    assert sel.scores[1e-4] == pytest.approx(0.4 + 0.2 + 0.2 * normalised + 0.2)
    assert "1e-04" in sel.reason or "0.0001" in sel.reason
    # weights move the choice: overfitting-only weighting prefers a job with no gap
    assert select(entries, weights={"overfitting": 1.0}).best_lr in (1e-5, 1e-4)
    assert select(entries, weights={"efficiency": 1.0}).best_lr == 1e-3


def test_seed002_score_is_mean_last_three_val_plus_tenth_of_gap():
    e = entry(1e-4, [3.0, 2.0, 1.0, 0.9, 0.8], train=[3.0, 2.0, 1.0, 0.8, 0.5])
    sel = select([e, entry(1e-3, [3.0, 2.5, 2.4, 2.3, 2.2])], method="seed002")
    assert not sel.higher_is_better and sel.best_lr == 1e-4
    assert sel.scores[1e-4] == pytest.approx((1.0 + 0.9 + 0.8) / 3 + 0.1 * 0.3)


def test_score_config_errors_name_the_setting():
    with pytest.raises(ScoreConfigError, match="unknown criteria.*speed"):
        select([entry(1e-4, [1.0])], weights={"speed": 1.0})
    with pytest.raises(ScoreConfigError, match="seed003 or seed002"):
        select([entry(1e-4, [1.0])], method="best")
    assert job_criteria(entry(1e-4, [1.0], status="failed")).startswith("job failed")


def test_stage_zero_spans_the_range_and_later_stages_narrow_around_the_best():
    points = log_points(1e-5, 5e-4, 5)
    assert points[0] == pytest.approx(1e-5) and points[-1] == pytest.approx(5e-4)
    ratios = [b / a for a, b in zip(points, points[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))
    widths = [math.log(h / lo) for lo, h in (stage_range(s, 1e-4, (1e-5, 5e-4), 0.6) for s in range(5))]
    assert all(b == pytest.approx(0.6 * a) for a, b in zip(widths, widths[1:], strict=False))
    low, high = stage_range(3, 2e-4, (1e-5, 5e-4), 0.6)
    assert math.sqrt(low * high) == pytest.approx(2e-4)


def test_plan_reuses_tested_lrs_and_moves_crowding_ones_to_a_ten_percent_gap():
    tested = [1e-4, 2e-4]
    plan = plan_stage([1e-4, 1.05e-4, 1.5e-4, 1.95e-4], tested, min_gap=0.1)
    assert plan[0].reused and plan[0].lr == 1e-4
    assert plan[1].moved_from == 1.05e-4 and plan[1].lr == pytest.approx(1.1e-4)  # nearest free LR
    assert plan[2].lr == 1.5e-4 and plan[2].moved_from is None and not plan[2].reused
    assert plan[3].moved_from == 1.95e-4 and plan[3].lr == pytest.approx(2e-4 / 1.1)


def test_a_saturated_range_skips_points_instead_of_running_far_away():
    tested = [1e-4 * 1.1**k for k in range(-3, 4)]  # 7 LRs 10% apart
    plan = plan_stage([1e-4 * 1.02**k for k in range(-2, 3)], tested, min_gap=0.1)
    assert any(p.skipped for p in plan)
    for p in plan:
        if not p.skipped:
            assert 1e-4 * 1.02**-2 / 1.1 <= p.lr <= 1e-4 * 1.02**2 * 1.1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-5, -2.5), min_size=0, max_size=12), st.lists(st.floats(-5, -2.5), min_size=1, max_size=6))
def test_placed_lrs_keep_the_gap_to_every_other_point(tested_logs, planned_logs):
    tested = sorted({10**x for x in tested_logs})
    tested = [t for i, t in enumerate(tested) if i == 0 or t / tested[i - 1] >= 1.1]  # an earlier sweep kept its gaps
    plan = plan_stage([10**x for x in planned_logs], tested, min_gap=0.1)
    new = [p.lr for p in plan if not (p.reused or p.skipped)]
    points = tested + new
    for a in new:
        for b in points:
            if b is not a:
                assert max(a, b) / min(a, b) >= 1.1 * (1 - 1e-6)
    assert keep_gap(1e-4, [], 0.1) == 1e-4


def test_optimal_lr_resolver_reads_the_file_and_names_a_bad_one(tmp_path):
    register_resolver()
    (tmp_path / "optimal_lr.json").write_text(json.dumps({"lr": 2.5e-4}))
    cfg = OmegaConf.create({"lr": f"${{optimal_lr:{tmp_path}}}"})
    assert cfg.lr == 2.5e-4
    (tmp_path / "none.json").write_text(json.dumps({"lr": None}))
    with pytest.raises(OptimalLRError, match="none.json.*'lr'"):
        read_optimal_lr(tmp_path / "none.json")
    with pytest.raises(OptimalLRError, match="no such file"):
        read_optimal_lr(tmp_path / "absent.json")


def test_ema_warmup_follows_early_steps_then_settles_at_the_decay():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    warm = AveragedModel(model, multi_avg_fn=warmup_ema_multi_avg_fn(0.99), use_buffers=True)
    reference = None
    for n in range(40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        current = [p.detach().clone() for p in model.parameters()]
        # AveragedModel copies on its first update, then blends with the decay for update count n
        reference = current if reference is None else [
            warmup_decay(0.99, n) * r + (1 - warmup_decay(0.99, n)) * c
            for r, c in zip(reference, current, strict=True)]
        warm.update_parameters(model)
    for r, w in zip(reference, warm.module.parameters(), strict=True):
        assert torch.allclose(r, w, atol=1e-5)
    assert warmup_decay(0.99, 5) == pytest.approx(6 / 15) and warmup_decay(0.99, 10_000) == 0.99


def test_final_report_links_the_sweep_the_run_took_its_lr_from(tmp_path):
    from redheart.crossover.report import _find_lr_sweep

    sweep = tmp_path / "outputs" / "lr_sweep" / "multiruns" / "s1"
    sweep.mkdir(parents=True)
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"lr_source": "${optimal_lr:outputs/lr_sweep/multiruns/s1}",
                                              "cwd": str(tmp_path)}))
    assert _find_lr_sweep(run) == sweep / "optimal_lr.json"
    (run / "run.json").write_text(json.dumps({"lr_source": 0.0001, "cwd": str(tmp_path)}))
    assert _find_lr_sweep(run) == "none: optim.lr=0.0001 was set in the config"
    # a fine-tuned encoder's LR swept on its own (make isear-finetune): that sweep is the one linked
    (run / "run.json").write_text(json.dumps({"lr_sources": {"optim.lr": 0.0005, "optim.encoder.lr":
                                                             "${optimal_lr:outputs/lr_sweep/multiruns/s1}"},
                                              "cwd": str(tmp_path)}))
    assert _find_lr_sweep(run) == sweep / "optimal_lr.json"
    (run / "run.json").write_text(json.dumps({"lr_sources": {"optim.lr": 0.0005, "optim.encoder.lr": 0.00012},
                                              "cwd": str(tmp_path)}))
    assert _find_lr_sweep(run) == "none: optim.lr=0.0005, optim.encoder.lr=0.00012 were set in the config"


def test_non_finite_values_are_written_as_null():
    from redheart.io import nulls_for_non_finite

    assert nulls_for_non_finite({"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": 2, "e": "x"}) == \
        {"a": None, "b": [1.0, None, {"c": None}], "d": 2, "e": "x"}


def test_a_job_stopped_by_the_nan_guard_is_recorded_as_diverged_and_never_chosen(tmp_path):
    from redheart.sweep.records import job_entry

    job = tmp_path / "job"
    job.mkdir()
    (job / "epoch_history.json").write_text(json.dumps({"epochs": entry(1e-2, [2.0, 1.0])["epochs"]}))
    (job / "nan_event.json").write_text(json.dumps({"step": 17, "epoch": 3, "cause": "loss part emotion is NaN"}))
    cfg = OmegaConf.create({"optim": {"lr": 1e-2}, "model": {}, "trainer": {}})
    diverged = job_entry(cfg, job, tmp_path, "completed")
    assert diverged["status"] == "diverged" and "step 17" in diverged["error"]
    sel = select([diverged, entry(1e-4, [2.0, 1.5])])
    assert sel.best_lr == 1e-4 and "diverged" in sel.unscored[1e-2] and "step 17" in sel.unscored[1e-2]


def test_optuna_sweeper_maps_hydra_sweep_syntax_and_writes_overrides_hydra_reads_back():
    import optuna
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.redheart_lr_sweeper.optuna_sweeper import distribution, override_value

    parser = OverridesParser.create()
    lr = distribution(parser.parse_override("optim.lr=tag(log, interval(1e-5, 5e-4))"))
    assert lr == optuna.distributions.FloatDistribution(1e-5, 5e-4, log=True)
    batch = distribution(parser.parse_override("b=tag(int, interval(1, 8))"))
    assert batch == optuna.distributions.IntDistribution(1, 8)
    assert distribution(parser.parse_override("o=choice(adam, sgd)")).choices == ("adam", "sgd")
    with pytest.raises(ValueError, match="interval"):
        distribution(parser.parse_override("x=range(1, 5)"))
    handle = {"storage": "sqlite:////tmp/it's here/optuna.db", "number": 3, "pruner": {"_target_": "a.B", "n": 1.5},
              "flag": True, "none": None, "list": [1, "x"]}
    parsed = parser.parse_override(f"optuna_trial={override_value(handle)}").value()
    assert parsed == handle


def test_the_sweeper_plugins_import_without_lightning():
    """Hydra imports every plugin module at the start of every entry point (predict.py too): they must not
    pull in Lightning (~9 s to import alone) before a sweep needs it."""
    import subprocess
    import sys

    code = ("import sys, hydra_plugins.redheart_lr_sweeper.optuna_sweeper, "
            "hydra_plugins.redheart_lr_sweeper.hierarchical_lr_sweeper; print('lightning' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr[-2000:]
