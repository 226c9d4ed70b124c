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
