"""Which learning rate? Per-job criteria and the two selection scores (configurable, `lr_sweep.score`).

Criteria of one job (its per-epoch records, callbacks/epoch_history.py):
- val_loss:    mean validation loss of the last `last_k` epochs (last 3 by default)         lower is better
- stability:   mean over epochs of 1 / (1 + std of the step gradient norms)                 higher is better
- efficiency:  relative drop of the train loss from the first to the last epoch             higher is better
- overfitting: |train loss − val loss| at the last epoch (the overfit gap)                   lower is better

`seed003` (default): each criterion min–max normalised across the compared jobs to [0, 1] (1 = best;
all 1 when every job ties), then weighted 0.4 / 0.2 / 0.2 / 0.2; the highest score wins. The original
squashed raw values with 1 / (1 + x) instead, which lets the criterion with the largest raw spread
dominate; normalising makes the weights mean what they say.
`seed002`: mean of the last 3 val losses + 0.1 · |train − val| at the last epoch; the lowest wins.

A job that failed, diverged (a non-finite loss) or has no validation loss gets no score and is
listed under `unscored` with the reason; it can never be chosen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from redheart.errors import RedHeartError

LOWER_IS_BETTER = {"val_loss": True, "stability": False, "efficiency": False, "overfitting": True}
DEFAULT_WEIGHTS = {"val_loss": 0.4, "stability": 0.2, "efficiency": 0.2, "overfitting": 0.2}


class ScoreConfigError(RedHeartError, ValueError):
    """lr_sweep.score names an unknown method or criterion."""


@dataclass
class LRSelection:
    best_lr: float | None
    best_score: float | None
    method: str
    higher_is_better: bool
    scores: dict[float, float]
    criteria: dict[float, dict[str, float]]
    unscored: dict[float, str] = field(default_factory=dict)
    reason: str = ""
    last_k: int = 3

    def as_json(self) -> dict[str, Any]:
        return {
            "lr": self.best_lr, "score": self.best_score, "method": self.method,
            "higher_is_better": self.higher_is_better, "reason": self.reason,
            "criteria": criteria_definitions(self.last_k),
            "scores": [{"lr": lr, "score": s, **self.criteria[lr]} for lr, s in sorted(self.scores.items())],
            "unscored": [{"lr": lr, "why": why} for lr, why in sorted(self.unscored.items())],
        }


def criteria_definitions(last_k: int) -> dict[str, str]:
    """What each criterion's number is: a 'val loss' alone reads as the last epoch's, which it is not."""
    return {
        "val_loss": f"mean val loss over the last {last_k} epochs",
        "stability": "mean over epochs of 1 / (1 + std of the step gradient norms)",
        "efficiency": "relative drop of the train loss from the first to the last epoch",
        "overfitting": "|train loss - val loss| at the last epoch",
    }


def job_criteria(entry: dict[str, Any], last_k: int = 3) -> dict[str, float] | str:
    """The four criteria of one job, or why it cannot be scored."""
    if entry.get("status") != "completed":  # failed, or diverged (stopped by the NaN guard)
        return f"job {entry.get('status')}" + (f": {entry['error']}" if entry.get("error") else "")
    epochs = entry.get("epochs") or []
    if not epochs:
        return "no epoch records"
    bad = next((e["epoch"] for e in epochs if not e.get("finite", True)), None)
    if bad is not None:
        return f"non-finite loss at epoch {bad} (diverged)"
    val = [e["val_loss"] for e in epochs if e.get("val_loss") is not None]
    train = [e["train_loss"] for e in epochs if e.get("train_loss") is not None]
    if not val or not train:
        return "no validation or train loss recorded"
    stability = [e["stability"] for e in epochs if e.get("stability") is not None]
    return {
        "val_loss": float(np.mean(val[-last_k:])),
        "stability": float(np.mean(stability)) if stability else 0.0,
        "efficiency": float(epochs[-1].get("efficiency") or 0.0),
        "overfitting": abs(train[-1] - val[-1]),
    }


def _normalised(values: np.ndarray, lower_is_better: bool) -> np.ndarray:
    span = values.max() - values.min()
    if not math.isfinite(span) or span <= 0:
        return np.ones_like(values)
    goodness = (values - values.min()) / span
    return 1.0 - goodness if lower_is_better else goodness


def select(entries: list[dict[str, Any]], method: str = "seed003", weights: dict[str, float] | None = None,
           last_k: int = 3, gap_weight: float = 0.1) -> LRSelection:
    """Score every job (one per LR: a repeated LR keeps its latest entry) and pick the best LR."""
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = set(weights) - set(LOWER_IS_BETTER)
    if unknown:
        raise ScoreConfigError(f"lr_sweep.score.weights: unknown criteria {sorted(unknown)}; "
                               f"known: {sorted(LOWER_IS_BETTER)}")
    if method not in ("seed003", "seed002"):
        raise ScoreConfigError(f"lr_sweep.score.method must be seed003 or seed002, got {method!r}")
    by_lr = {float(e["lr"]): e for e in entries}
    criteria, unscored = {}, {}
    for lr, entry in sorted(by_lr.items()):
        result = job_criteria(entry, last_k)
        if isinstance(result, str):
            unscored[lr] = result
        else:
            criteria[lr] = result
    higher = method == "seed003"
    if not criteria:
        return LRSelection(None, None, method, higher, {}, {}, unscored, "no job could be scored", last_k)
    lrs = sorted(criteria)
    if method == "seed003":
        total = np.zeros(len(lrs))
        for name, weight in weights.items():
            values = np.array([criteria[lr][name] for lr in lrs], dtype=float)
            total += weight * _normalised(values, LOWER_IS_BETTER[name])
        scores = {lr: float(s) for lr, s in zip(lrs, total, strict=True)}
    else:
        scores = {lr: criteria[lr]["val_loss"] + gap_weight * criteria[lr]["overfitting"] for lr in lrs}
    best = (max if higher else min)(scores, key=scores.get)
    return LRSelection(best, scores[best], method, higher, scores, criteria, unscored,
                     _reason(best, scores, criteria, method, higher, last_k), last_k)


def _reason(best: float, scores: dict[float, float], criteria: dict[float, dict[str, float]], method: str,
            higher: bool, last_k: int) -> str:
    c = criteria[best]
    ranked = sorted(scores, key=scores.get, reverse=higher)
    runner = f"; runner-up {ranked[1]:.3g} scored {scores[ranked[1]]:.3f}" if len(ranked) > 1 else ""
    return (f"lr {best:.3g} has the {'highest' if higher else 'lowest'} {method} score {scores[best]:.3f} of "
            f"{len(scores)} ({criteria_definitions(last_k)['val_loss']} {c['val_loss']:.4f}, "
            f"stability {c['stability']:.3f}, efficiency "
            f"{c['efficiency']:.3f}, train-val gap {c['overfitting']:.4f}){runner}")
