"""Statistical plateau: Mann-Kendall (Hamed–Rao) + Sen's slope over sliding windows.

A validation curve is autocorrelated (each checkpoint continues the previous one, EMA smooths it
further), which makes the plain Mann-Kendall test over-confident; pymannkendall's Hamed–Rao variant
corrects the variance of S for that autocorrelation. Over each window of `stability_window`
checkpoints, in relative units (value / the series' median magnitude):

    flat  ⇔  variance ≤ plateau_variance  and  no significant improving trend at alpha  and
             (no significant trend  or  |Sen slope| per epoch ≤ improvement_rate)

A window whose curve still significantly improves (a loss still falling) by more than
`STILL_LEARNING` × improvement_rate per epoch is never flat: calling it a plateau would stop the search
while the group still learns (a smooth EMA curve falling 0.1 %/epoch is significant and "small" at once).
Below that, a significant fall is a drift well inside the noise of one window (a shallow bowl). A significant but
negligible worsening drift (Sen's slope within `improvement_rate`) still counts as flat: Mann-Kendall
tests direction, not size, and a curve resting on its floor drifts up a little before it overfits.
A checkpoint is on a plateau when the window centred
on it is flat (the first and last windows also speak for the checkpoints before/after their centre);
consecutive such checkpoints form plateaus. Of those with at least `min_length` eligible checkpoints
the one at the best mean level is the plateau (a curve can pause at a worse level, e.g. at the end of
a warm-restart cycle, and improve again: that pause is not the sweet spot); if none is that long, the
longest. Its centre is the technique's epoch.
"""

from __future__ import annotations

import warnings

import numpy as np
import pymannkendall

from redheart.analysis.common import TechniqueResult, nearest, oriented, relative
from redheart.analysis.settings import Thresholds

STILL_LEARNING = 0.1   # of improvement_rate: a significant fall at least this steep is still learning


def window_test(values: np.ndarray, epochs: np.ndarray, alpha: float) -> dict:
    """Hamed–Rao Mann-Kendall and Sen's slope (per epoch) of one window of relative values."""
    span = (epochs[-1] - epochs[0]) / max(1, len(epochs) - 1)  # epochs per step
    if np.ptp(values) == 0:
        return {"trend": "no trend", "significant": False, "p": 1.0, "sen_slope": 0.0, "variance": 0.0}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # tiny windows: pymannkendall divides 0/0 for its lag-1 estimate
        test = pymannkendall.hamed_rao_modification_test(values, alpha=alpha)
        line = test.intercept + test.slope * np.arange(len(values))
        if not np.isfinite(test.p) or np.ptp(values - line) <= 1e-6 * np.ptp(values):
            # Noise-free (a straight line to rounding): Hamed–Rao's autocorrelation of the detrended
            # ranks is then the autocorrelation of rounding errors, i.e. garbage; there is no noise to
            # correct for, so the original test is the right one.
            test = pymannkendall.original_test(values, alpha=alpha)
    p = float(test.p)
    return {"trend": test.trend, "significant": bool(test.h) and p < alpha, "p": p,
            "sen_slope": float(test.slope) / span, "variance": float(np.var(values))}


def sliding_windows(epochs: list[int], values: np.ndarray, thresholds: Thresholds, alpha: float,
                    mode: str = "min") -> list[dict]:
    """One test per window of consecutive finite checkpoints, with its flat/not-flat verdict."""
    finite = np.isfinite(values)
    e, v = np.asarray(epochs)[finite], relative(values)[0][finite]
    w = thresholds.stability_window
    out = []
    for i in range(len(v) - w + 1):
        test = window_test(v[i:i + w], e[i:i + w], alpha)
        small = abs(test["sen_slope"]) <= thresholds.improvement_rate
        improving = (test["significant"] and (test["sen_slope"] < 0) == (mode == "min")
                     and abs(test["sen_slope"]) > STILL_LEARNING * thresholds.improvement_rate)
        test["improving"] = bool(improving)
        test["flat"] = bool(test["variance"] <= thresholds.plateau_variance and not improving
                            and (not test["significant"] or small))
        out.append({"first": int(e[i]), "last": int(e[i + w - 1]), **{k: _round(x) for k, x in test.items()}})
    return out


def _round(x):
    return round(x, 6) if isinstance(x, float) else x


def plateau_runs(windows: list[dict], epochs: list[int], values: np.ndarray, window: int) -> list[list[int]]:
    """Maximal runs of consecutive finite checkpoints (indices into `epochs`) whose centred window is flat."""
    finite = [i for i in range(len(epochs)) if np.isfinite(values[i])]
    half = window // 2
    runs, current = [], []
    for k, i in enumerate(finite):
        if windows[int(np.clip(k - half, 0, len(windows) - 1))]["flat"]:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def plateau_technique(epochs: list[int], values: np.ndarray, mode: str, eligible: np.ndarray,
                      thresholds: Thresholds, alpha: float, min_length: int = 3) -> TechniqueResult:
    """The centre of the best-level eligible plateau of the group's validation metric."""
    windows = sliding_windows(epochs, values, thresholds, alpha, mode)
    evidence: dict = {"windows": windows, "window": thresholds.stability_window}
    if not windows:
        evidence["reason"] = f"fewer finite checkpoints than one window ({thresholds.stability_window})"
        return TechniqueResult(None, 0.0, evidence)
    better = oriented(values, mode)
    best = None
    for run in plateau_runs(windows, epochs, values, thresholds.stability_window):
        inside = [i for i in run if eligible[i]]
        if not inside:
            continue
        long_enough = len(inside) >= min_length
        key = (long_enough, float(np.mean(better[inside])) if long_enough else len(inside),
               len(inside) if long_enough else float(np.mean(better[inside])))
        if best is None or key > best[0]:
            best = (key, inside)
    improving = [w for w in windows if w["significant"] and (w["sen_slope"] < 0) == (mode == "min")]
    evidence["improving_until"] = improving[-1]["last"] if improving else None
    if best is None:
        evidence["reason"] = "no window is flat at these thresholds (inside the eligible epochs)"
        return TechniqueResult(None, 0.0, evidence)
    _, inside = best
    first, last = epochs[inside[0]], epochs[inside[-1]]
    run = [w for w in windows if w["flat"] and first <= (w["first"] + w["last"]) / 2 <= last] or windows
    mask = np.zeros(len(epochs), bool)
    mask[inside] = True
    centre = nearest(epochs, (first + last) / 2, mask & eligible)
    coverage = min(1.0, len(inside) / (2 * thresholds.stability_window))
    flatness = float(np.mean([max(0.0, 1 - w["variance"] / thresholds.plateau_variance) for w in run]))
    evidence |= {"plateau": [first, last], "centre": centre, "eligible_in_plateau": len(inside),
                 "coverage": round(coverage, 4), "flatness": round(flatness, 4),
                 "mean_p": round(float(np.mean([w["p"] for w in run])), 4),
                 "max_abs_slope": round(float(max(abs(w["sen_slope"]) for w in run)), 6)}
    return TechniqueResult(centre, coverage * (0.5 + 0.5 * flatness), evidence)
