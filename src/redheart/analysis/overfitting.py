"""The overfitting point (docs/design.md): the train–val gap rising over `consecutive` checkpoints in a row.

gap = val_loss − train_loss. The original rule: the first checkpoint i with gap[i] < gap[i+1] < …
over `consecutive` checkpoints is the overfitting point, the last epoch before the gap grows; coupled
groups are not recommended after it.

The bare rule fires on noise: three values of pure noise rise in a row one time in six, so over 30
checkpoints it almost always fires in the first few (simulated: every time). Four guards, each a
setting (all off = the original rule), bring false alarms on a flat noisy gap to a few percent while
finding a planted rise within one checkpoint in most runs (tests/test_analysis_techniques.py):
- `smoothing`: the rule runs on the gap's centred moving mean over that many checkpoints;
- `min_rise_sigma`: the rise must exceed that many noise σ (robust σ of the raw gap from its second
  differences, redheart.analysis.cusum.noise_level, divided by √smoothing);
- `sustained`: no later checkpoint's (smoothed) gap falls back to the level the rise started from;
- `val_guard`: the validation loss reaches no new best during the rise. A gap that grows while the
  validation loss still improves is the learning phase (the train loss falls faster, and EMA
  validation weights lag behind the raw ones), not overfitting (Prechelt's "generalisation loss" view).
`min_increase` is an absolute minimum per step (loss units).

With EMA (the default callbacks), val_loss is measured with the EMA weights and train_loss is the
raw weights' mean loss over the epoch under dropout, so the gap is not zero-centred: dropout makes
the train loss larger, and while the model improves quickly the EMA lags behind. Only a sustained
rise of the gap counts, so a constant offset does not matter; the EMA's lag (about 1/(1 − decay)
optimizer steps) delays a real rise by that much.
"""

from __future__ import annotations

import numpy as np

from redheart.analysis.common import rolling
from redheart.analysis.cusum import noise_level


def overfitting_point(epochs: list[int], train_loss: np.ndarray, val_loss: np.ndarray, consecutive: int = 3,
                      min_increase: float = 0.0, min_rise_sigma: float = 3.0, smoothing: int = 3,
                      sustained: bool = True, val_guard: bool = True) -> tuple[int | None, dict]:
    """(first epoch of the first sustained rise of the gap or None, evidence)."""
    raw = val_loss - train_loss
    gap = rolling(raw, smoothing, np.mean) if smoothing > 1 else raw
    val = rolling(val_loss, smoothing, np.mean) if smoothing > 1 else val_loss
    finite = raw[np.isfinite(raw)]
    sigma = noise_level(finite) / np.sqrt(max(1, smoothing)) if finite.size >= 4 else 0.0
    gaps = {str(e): (round(float(g), 6) if np.isfinite(g) else None) for e, g in zip(epochs, raw, strict=True)}
    evidence = {"gap": gaps,
                "settings": {"consecutive": consecutive, "min_increase": min_increase, "min_rise_sigma": min_rise_sigma,
                             "smoothing": smoothing, "sustained": sustained, "val_guard": val_guard},
                "consecutive": consecutive, "gap_noise_sigma": round(float(sigma), 6), "rising": None}
    for i in range(len(gap) - consecutive + 1):
        run = gap[i:i + consecutive]
        if not np.isfinite(run).all() or not (np.diff(run) > min_increase).all():
            continue
        if run[-1] - run[0] <= min_rise_sigma * sigma:
            continue
        later = gap[i + consecutive:]
        if sustained and (later[np.isfinite(later)] <= run[0]).any():
            continue
        before = val[:i + 1][np.isfinite(val[:i + 1])]
        during = val[i + 1:i + consecutive][np.isfinite(val[i + 1:i + consecutive])]
        if val_guard and before.size and during.size and during.min() < before.min():
            continue
        evidence["rising"] = epochs[i:i + consecutive]
        return epochs[i], evidence
    return None, evidence


def group_overfitting_point(epochs: list[int], metric: np.ndarray, mode: str, consecutive: int = 3,
                            min_rise_sigma: float = 3.0, smoothing: int = 3, sustained: bool = True,
                            min_noise: float = 0.0) -> tuple[int | None, dict]:
    """A group's own overfitting point: the last epoch before its own validation metric turns clearly worse.

    A group has no training loss of its own in the metrics files, so the train–val gap cannot be formed
    per group. Its own validation curve (turned so that lower is better, centred moving mean over
    `smoothing` checkpoints) is "clearly worse" at a checkpoint whose value exceeds the best so far by
    more than `min_rise_sigma` noise σ (σ from second differences, as for the gap); the point is the
    checkpoint before the first of `consecutive` such checkpoints in a row, and with `sustained` the curve
    never comes back within that margin of the best later on. σ is floored at `min_noise` × the median
    level. A shallow bowl on a plateau is not
    overfitting; a climb out of it is.
    """
    raw = np.asarray(metric, dtype=float) if mode == "min" else -np.asarray(metric, dtype=float)
    curve = rolling(raw, smoothing, np.mean) if smoothing > 1 else raw
    finite = raw[np.isfinite(raw)]
    sigma = noise_level(finite) / np.sqrt(max(1, smoothing)) if finite.size >= 4 else 0.0
    # floored like CUSUM's noise (relative to the median level): a noise-free EMA curve has σ ≈ 0
    sigma = max(sigma, min_noise * float(np.median(np.abs(finite)))) if finite.size else sigma
    margin = min_rise_sigma * sigma
    evidence = {"curve": "the group's own validation metric" + (" (negated: higher is better)" * (mode == "max")),
                "settings": {"consecutive": consecutive, "min_rise_sigma": min_rise_sigma, "smoothing": smoothing,
                             "sustained": sustained},
                "noise_sigma": round(float(sigma), 6), "margin": round(float(margin), 6), "worse_from": None}
    best = np.inf
    for i in range(1, len(curve) - consecutive + 1):
        if np.isfinite(curve[i - 1]):
            best = min(best, curve[i - 1])
        run = curve[i:i + consecutive]
        if not np.isfinite(best) or not np.isfinite(run).all() or not (run > best + margin).all():
            continue
        later = curve[i + consecutive:]
        if sustained and (later[np.isfinite(later)] <= best + margin).any():
            continue
        evidence |= {"worse_from": epochs[i], "best_before": round(float(best), 6)}
        return epochs[i - 1], evidence
    return None, evidence
