"""Multi-criteria decision analysis: one weighted score per epoch from four criteria.

Each criterion is min–max normalised over the group's eligible epochs (1 = best there):
- loss: the group's validation loss (lower is better);
- task: the task score (redheart.analysis.task_metrics);
- stability: a steady validation metric (low standard deviation over `stability_window` checkpoints,
  in relative units), averaged with the confusion-matrix stability where the run records it;
- gradient: the gradient "calm" score (redheart.analysis.gradient_health).
score = Σ w_c · criterion_c / Σ w_c (weights 30/40/15/15 by default, `thresholds.mcda_weights`), minus
`unhealthy_penalty` × (1 − health) for epochs failing gradient-health checks. A criterion the group has
no data for (e.g. no task metric in the run) drops out and the others are re-weighted.
"""

from __future__ import annotations

import numpy as np

from redheart.analysis.common import (
    TechniqueResult,
    argbest,
    minmax_score,
    nanmean_rows,
    peak_confidence,
    relative,
    rolling,
)
from redheart.analysis.settings import CRITERIA


def stability_criterion(metric: np.ndarray, window: int, confusion: np.ndarray | None = None) -> np.ndarray:
    """Raw stability per epoch (higher = steadier), before normalisation: −rolling std (+ confusion)."""
    steadiness = -rolling(relative(metric)[0], window, np.std)
    if confusion is None or not np.isfinite(confusion).any():
        return steadiness
    # put the confusion stability (0..1) on the same footing: both min–max scored, then averaged
    mask = np.isfinite(steadiness)
    return nanmean_rows(np.vstack([minmax_score(steadiness, "max", mask), minmax_score(confusion, "max", mask)]))


def mcda_scores(raw: dict[str, np.ndarray], modes: dict[str, str], weights: dict[str, float], health: np.ndarray,
                penalty: float, eligible: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(score per epoch, NaN where not eligible; the normalised criteria)."""
    normalised = {c: minmax_score(raw[c], modes[c], eligible) for c in CRITERIA if c in raw}
    normalised = {c: v for c, v in normalised.items() if np.isfinite(v).any()}
    total = np.zeros(len(eligible))
    weight = np.zeros(len(eligible))
    for c, values in normalised.items():
        ok = np.isfinite(values)
        total[ok] += weights[c] * values[ok]
        weight[ok] += weights[c]
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(eligible & (weight > 0), total / weight, np.nan)
    score = score - penalty * (1.0 - np.nan_to_num(health, nan=0.0))
    return score, normalised


def mcda_technique(epochs: list[int], score: np.ndarray, normalised: dict[str, np.ndarray],
                   weights: dict[str, float], near: float) -> TechniqueResult:
    best = argbest(score)
    if best is None:
        return TechniqueResult(None, 0.0, {"reason": "no eligible epoch has a score"})
    evidence = {"score": round(float(score[best]), 4), "weights": weights,
                "criteria": {c: round(float(v[best]), 4) if np.isfinite(v[best]) else None
                             for c, v in normalised.items()},
                "criteria_used": sorted(normalised)}
    return TechniqueResult(epochs[best], peak_confidence(score, best, near), evidence)
