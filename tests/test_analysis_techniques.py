"""The analysis techniques on planted curves: each must find what was planted (within one checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import ruptures

from redheart.analysis.common import TechniqueResult, minmax_score, peak_confidence
from redheart.analysis.cusum import bic_penalty, change_points, cusum_technique, noise_level
from redheart.analysis.gradient_health import gradient_technique, health_table
from redheart.analysis.mcda import mcda_scores, mcda_technique
from redheart.analysis.overfitting import overfitting_point
from redheart.analysis.plateau import plateau_technique, sliding_windows, window_test
from redheart.analysis.run_metrics import RunMetrics
from redheart.analysis.settings import MetricSpec, Thresholds
from redheart.analysis.task_metrics import confusion_stability, task_technique
from redheart.analysis.vote import vote, weighted_median

EPOCHS = list(range(2, 62, 2))
E = np.array(EPOCHS, dtype=float)
DEFAULT = Thresholds(plateau_variance=0.012, improvement_rate=0.008, stability_window=5,
                     mcda_weights={"loss": 0.3, "task": 0.4, "stability": 0.15, "gradient": 0.15},
                     voting_confidence=0.75)
ALL = np.ones(len(EPOCHS), bool)


def planted_loss(plateau=(24, 40), rise=0.015, noise=0.002, seed=0) -> np.ndarray:
    """Falls until plateau[0], flat (shallow bowl) until plateau[1], rises after: relative noise."""
    rng = np.random.default_rng(seed)
    p0, p1 = plateau
    drop = np.clip((p0 - E) / (p0 - 2), 0, None) * 0.6
    bowl = 0.002 * ((E - (p0 + p1) / 2) / ((p1 - p0) / 2)) ** 2 * ((p0 <= E) & (p1 >= E))
    return (1 + drop + bowl + np.clip(E - p1, 0, None) * rise) * (1 + noise * rng.standard_normal(len(E)))


def test_mann_kendall_hamed_rao_tells_flat_from_trending():
    rng = np.random.default_rng(1)
    flat = 1 + 0.01 * rng.standard_normal(12)
    falling = np.linspace(2.0, 1.0, 12) + 0.01 * rng.standard_normal(12)
    x = np.arange(0, 24, 2)
    assert not window_test(flat, x, 0.05)["significant"]
    trend = window_test(falling, x, 0.05)
    assert trend["significant"] and trend["trend"] == "decreasing"
    assert trend["sen_slope"] == pytest.approx(-1.0 / 22, rel=0.1)  # Sen's slope per epoch, not per step


def test_windows_are_flat_only_on_the_plateau():
    windows = sliding_windows(EPOCHS, planted_loss(), DEFAULT, 0.05)
    centre_flat = {(w["first"] + w["last"]) // 2: w["flat"] for w in windows}
    assert not any(centre_flat[e] for e in range(6, 20, 2))   # the falling part
    assert all(centre_flat[e] for e in range(28, 38, 2))      # the plateau's inside
    assert not any(centre_flat[e] for e in range(46, 58, 2))  # the rise (1.5 % per epoch)


@pytest.mark.parametrize("plateau", [(24, 40), (14, 30), (30, 50)])
def test_plateau_technique_finds_the_planted_centre(plateau):
    result = plateau_technique(EPOCHS, planted_loss(plateau), "min", ALL, DEFAULT, 0.05)
    assert abs(result.epoch - sum(plateau) / 2) <= 2
    first, last = result.evidence["plateau"]
    # a window reaching back into the fall still falls significantly: the plateau may start a window late
    assert plateau[0] - 2 <= first <= plateau[0] + 4 and abs(last - plateau[1]) <= 2
    assert result.confidence > 0.5


def test_plateau_of_a_max_metric_and_no_plateau_in_a_pure_trend():
    f1 = 1.5 - planted_loss()  # rises to a plateau, then falls: the same plateau, mode max
    assert abs(plateau_technique(EPOCHS, f1, "max", ALL, DEFAULT, 0.05).epoch - 32) <= 2
    trend = plateau_technique(EPOCHS, np.linspace(3.0, 1.0, len(EPOCHS)), "min", ALL, DEFAULT, 0.05)
    assert trend.epoch is None and trend.confidence == 0.0


def _segments(y: np.ndarray, min_size: int = 3) -> list[int]:
    """Our penalised change points of y over EPOCHS, and the σ and penalty the technique would use."""
    sigma = max(noise_level(y), 0.03 * float(np.ptp(y)))
    return change_points(y, E, min_size, bic_penalty(len(y), sigma))


def test_a_smooth_exponential_decay_has_at_most_two_change_points():
    rng = np.random.default_rng(5)
    for tau in (5, 10, 20):
        for noise in (0.0, 0.002, 0.01):
            y = 1 + 0.6 * np.exp(-E / tau) + noise * rng.standard_normal(len(E))
            assert len(_segments(y)) - 1 <= 2, (tau, noise)
            result = cusum_technique(EPOCHS, y, "min", ALL, 1.0, 3, 0.002, 5)
            assert len(result.evidence["change_points"]) <= 2, (tau, noise, result.evidence["change_points"])


def test_a_planted_flattening_and_a_planted_rise_are_found():
    rng = np.random.default_rng(6)
    flattening = (1 + np.clip(24 - E, 0, None) * 0.02) * (1 + 0.003 * rng.standard_normal(len(E)))
    rise = (1 + np.clip(E - 40, 0, None) * 0.015) * (1 + 0.003 * rng.standard_normal(len(E)))
    both = 1 + np.clip(20 - E, 0, None) * 0.03 + np.clip(E - 40, 0, None) * 0.015
    assert [EPOCHS[i] for i in _segments(flattening)[:-1]] in ([22], [24], [26])
    assert [EPOCHS[i] for i in _segments(rise)[:-1]] in ([38], [40], [42])
    found = [EPOCHS[i] for i in _segments(both)[:-1]]
    assert len(found) == 2 and abs(found[0] - 20) <= 2 and abs(found[1] - 40) <= 2
    noise = 1 + 0.01 * rng.standard_normal(len(E))
    assert _segments(noise) == [len(E)]  # pure noise: one regime


@pytest.mark.parametrize("seed", range(6))
def test_change_points_match_ruptures_pelt(seed):
    """The same cost (a line per segment), penalty and minimum size: Pelt (exact) gives the same partition."""
    rng = np.random.default_rng(seed)
    knees = sorted(rng.choice(np.arange(6, 24), size=2, replace=False))
    slopes = rng.normal(0, 0.05, 3)
    y = np.cumsum(np.repeat(slopes, np.diff([0, *knees, len(E)]))) + 0.01 * rng.standard_normal(len(E))
    pen = bic_penalty(len(y), max(noise_level(y), 0.03 * float(np.ptp(y))))
    ours = change_points(y, E, 3, pen)
    signal = np.column_stack([y, np.ones(len(E)), E])
    theirs = ruptures.Pelt(model="linear", min_size=3, jump=1).fit(signal).predict(pen=pen)
    assert ours == theirs


def test_mann_kendall_calls_no_plateau_while_the_loss_still_falls():
    """A slow but steady fall (0.1 %/epoch, under improvement_rate) is learning, not a plateau."""
    falling = 1.0 - 0.001 * E + 0.0002 * np.random.default_rng(7).standard_normal(len(E))
    windows = sliding_windows(EPOCHS, falling, DEFAULT, 0.05, "min")
    assert not any(w["flat"] for w in windows if w["improving"])
    assert plateau_technique(EPOCHS, falling, "min", ALL, DEFAULT, 0.05).epoch is None
    rising = 1.0 + 0.001 * E  # the same size of drift upwards: resting on the floor, flat
    assert all(w["flat"] for w in sliding_windows(EPOCHS, rising, DEFAULT, 0.05, "min"))


def test_cusum_technique_centres_on_the_best_level_segment():
    result = cusum_technique(EPOCHS, planted_loss(), "min", ALL, 1.0, 3, 0.002, 5)
    assert abs(result.epoch - 32) <= 2 and result.confidence > 0.5
    first, last = result.evidence["segment"]
    assert abs(first - 24) <= 2 and abs(last - 40) <= 2


def test_task_technique_finds_the_planted_best_and_confusion_stability():
    rng = np.random.default_rng(4)
    f1 = 0.85 - 0.3 * ((E - 36) / 30) ** 2 + 0.002 * rng.standard_normal(len(E))
    mae = 0.1 + 0.1 * ((E - 36) / 30) ** 2 + 0.001 * rng.standard_normal(len(E))
    specs = (MetricSpec("f1", "max"), MetricSpec("mae", "min"))
    result = task_technique(EPOCHS, {"f1": f1, "mae": mae}, specs, ALL, 3, 0.05)
    assert abs(result.epoch - 36) <= 2
    assert result.evidence["metrics"]["f1"]["best_epoch"] in (34, 36, 38)
    same = np.array([[8, 2], [1, 9]])
    shifted = np.array([[2, 8], [1, 9]])  # class 0 now mostly confused: its row moves by 0.6
    stability = confusion_stability([2, 4, 6], {2: same, 4: same * 3, 6: shifted})
    assert np.isnan(stability[0]) and stability[1] == pytest.approx(1.0) and stability[2] == pytest.approx(0.7)


def test_mcda_weighs_criteria_and_penalises_unhealthy_epochs():
    n = len(EPOCHS)
    loss = planted_loss()
    task = -((E - 32) ** 2)
    raw = {"loss": loss, "task": task, "stability": np.zeros(n), "gradient": np.zeros(n)}
    modes = {"loss": "min", "task": "max", "stability": "max", "gradient": "max"}
    health = np.ones(n)
    score, normalised = mcda_scores(raw, modes, DEFAULT.mcda_weights, health, 0.5, ALL)
    assert abs(mcda_technique(EPOCHS, score, normalised, DEFAULT.mcda_weights, 0.05).epoch - 32) <= 2
    assert normalised["stability"][0] == 0.5  # a constant criterion cannot rank epochs
    health[EPOCHS.index(32)] = 0.5
    score, normalised = mcda_scores(raw, modes, DEFAULT.mcda_weights, health, 0.5, ALL)
    assert mcda_technique(EPOCHS, score, normalised, DEFAULT.mcda_weights, 0.05).epoch != 32
    only_task = {"loss": 0.0, "task": 1.0, "stability": 0.0, "gradient": 0.0}
    raw["loss"] = -loss  # loss now best at the ends: with zero weight it must not matter
    score, normalised = mcda_scores(raw, modes, only_task, np.ones(n), 0.5, ALL)
    assert mcda_technique(EPOCHS, score, normalised, only_task, 0.05).epoch == 32


def gap_run(seed: int, noise: float, overfit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): both fall together; from `overfit` on, train keeps falling and val rises."""
    rng = np.random.default_rng(seed)
    base = 2 * np.exp(-E / 10) + 0.5
    drift = 0.004 * np.clip(E - overfit, 0, None) if overfit else 0.0
    return base - drift + noise * rng.standard_normal(30), base + 0.05 + drift + noise * rng.standard_normal(30)


@pytest.mark.parametrize("seed", range(5))
def test_overfitting_point_is_the_start_of_the_sustained_gap_rise(seed):
    epoch, evidence = overfitting_point(EPOCHS, *gap_run(seed, 0.003, overfit=40))
    assert abs(epoch - 40) <= 2 and evidence["rising"][0] == epoch


def test_the_overfitting_guards_silence_the_seeds_rule_on_noise():
    seeds = range(40)
    bare = dict(min_rise_sigma=0.0, smoothing=1, sustained=False, val_guard=False)
    assert all(overfitting_point(EPOCHS, *gap_run(s, 0.003, None), 3, **bare)[0] is not None for s in seeds)
    alarms = sum(overfitting_point(EPOCHS, *gap_run(s, 0.003, None))[0] is not None for s in seeds)
    assert alarms <= 3  # a few percent (simulated over 200 runs: 3 %)
    train, val = gap_run(0, 0.003, None)
    fast = 0.01 * np.clip(E - 10, 0, 10)   # epochs 10-20: the train loss falls by 0.1 ...
    slow = 0.002 * np.clip(E - 10, 0, 10)  # ... the val loss by 0.02: the gap grows while val still improves
    assert overfitting_point(EPOCHS, train - fast, val - slow, val_guard=False)[0] is not None
    assert overfitting_point(EPOCHS, train - fast, val - slow)[0] is None


def test_vote_is_a_confidence_weighted_median_and_agreement_sets_the_confidence():
    assert weighted_median([10, 20, 50], [1, 1, 1]) == 20
    assert weighted_median([10, 20, 50], [1, 1, 5]) == 50
    results = {"a": TechniqueResult(30, 0.9), "b": TechniqueResult(32, 0.8), "c": TechniqueResult(50, 0.3),
               "d": TechniqueResult(None, 0.0)}
    weights = {k: 1.0 for k in results}
    eligible = np.array([e != 32 for e in EPOCHS])
    out = vote(results, weights, EPOCHS, eligible, agreement_epochs=8, step=2)
    assert out.epoch == 30  # the median (30 or 32) snapped to an eligible epoch; 50 does not drag it
    assert out.confidence == pytest.approx((0.9 + 0.8) / 4)  # c is 20 epochs away, d has no opinion
    agreeing = vote({k: TechniqueResult(30, 0.9) for k in "abcd"}, weights, EPOCHS, ALL, 8, 2)
    assert agreeing.confidence == pytest.approx(0.9) and agreeing.confidence > out.confidence


def test_scores_and_confidence_helpers():
    values = np.array([3.0, 1.0, 2.0, np.nan])
    assert minmax_score(values, "min", np.array([True, True, True, True])).tolist()[:3] == [0.0, 1.0, 0.5]
    assert np.isnan(minmax_score(values, "min", np.ones(4, bool))[3])
    assert peak_confidence(np.array([1.0, 0.0, 0.0]), 0, 0.05) == 1.0
    assert peak_confidence(np.array([1.0, 0.99, 0.98]), 0, 0.05) == 0.0


def test_plateau_prefers_a_better_level_to_a_longer_pause():
    """A long pause at a worse level (say the end of a warm-restart cycle), then a shorter, better plateau."""
    y = np.r_[np.linspace(2.0, 1.2, 4), np.full(12, 1.2), np.linspace(1.18, 1.0, 6), np.full(8, 1.0)]
    y = y * (1 + 0.002 * np.random.default_rng(7).standard_normal(30))
    result = plateau_technique(EPOCHS, y, "min", ALL, DEFAULT, 0.05)
    first, last = result.evidence["plateau"]
    assert first >= 44 and last == 60 and 48 <= result.epoch <= 54
    short = plateau_technique(EPOCHS, y, "min", ALL, DEFAULT, 0.05, min_length=20)  # none long enough: longest
    assert short.evidence["plateau"][1] <= 34


def gradient_run(n: int = 30) -> RunMetrics:
    """Two groups with steady statistics; `b` gets a spike, a frozen interval, a dead-unit surge, a collapse."""
    rng = np.random.default_rng(8)
    values = {"train_loss": np.ones(n), "val_loss": np.ones(n)}
    for g, scale in (("a", 1.0), ("b", 0.01)):  # b's gradients are 100x smaller by design: that is fine
        values |= {f"groups/{g}/grad_norm_mean": scale * (1 + 0.01 * rng.standard_normal(n)),
                   f"groups/{g}/grad_norm_max": scale * 2 * np.ones(n),
                   f"groups/{g}/update_ratio": 1e-3 * (1 + ((E - 40) / 20) ** 2),  # calmest at 40
                   f"groups/{g}/param_norm": np.ones(n), f"groups/{g}/dead_unit_fraction": np.full(n, 0.1)}
    b = {k.split("/")[-1]: v for k, v in values.items() if k.startswith("groups/b/")}
    b["grad_norm_max"][EPOCHS.index(10)] = 0.01 * 50      # spike: max 50x the mean
    b["update_ratio"][EPOCHS.index(20)] = 0.0             # frozen
    b["dead_unit_fraction"][EPOCHS.index(30):] = 0.5      # +0.4 over its lowest
    b["grad_norm_mean"][EPOCHS.index(38)] = 1e-5          # collapsed 1000x relative to the other group
    return RunMetrics(run_dir=None, modular_dir=None, every_n_epochs=2, groups={"a": ["a"], "b": ["b"]},
                      epochs=EPOCHS, values=values)


def test_gradient_health_flags_each_planted_problem_and_picks_the_calmest_healthy_epoch():
    run = gradient_run()
    limits = {"ratio_band": 10.0, "spike_ratio": 10.0, "update_min": 1e-7, "update_max": 0.5, "dead_max": 0.6,
              "dead_rise_max": 0.25}
    healthy = health_table(run, "a", limits, 5)
    assert (healthy["health"] == 1.0).all()
    table = health_table(run, "b", limits, 5)
    failed = {e for e, h in zip(EPOCHS, table["health"], strict=True) if h < 1}
    assert {10, 20, 38} <= failed and set(range(30, 62, 2)) <= failed and failed <= {10, 20, *range(30, 62, 2)}
    assert table["check_spike"][EPOCHS.index(10)] == 0 and table["check_update"][EPOCHS.index(20)] == 0
    assert table["check_grad_ratio"][EPOCHS.index(38)] == 0 and table["check_dead_units"][EPOCHS.index(30)] == 0
    assert gradient_technique(EPOCHS, healthy, ALL, 0.05).epoch in (38, 40, 42)  # calmest where updates are least
    picked = gradient_technique(EPOCHS, table, ALL, 0.05)
    assert picked.epoch not in failed and picked.epoch <= 28 and picked.evidence["failed_checks"]["10"] == ["spike"]
    early = np.array([e <= 16 for e in EPOCHS])
    assert gradient_technique(EPOCHS, healthy, ALL, 0.05, competitive=early).epoch <= 16
