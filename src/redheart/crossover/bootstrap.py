"""Paired bootstrap confidence intervals of a metric difference between two models on the same records.

Resampling is scipy's (`scipy.stats.bootstrap`, paired=True, percentile intervals): each resample draws
record indices with replacement and both models are scored on the same draw, so the interval reflects
the difference, not each model's own noise. The statistics are written vectorised over resamples
(accuracy, and macro-F1 with torchmetrics'/sklearn's convention: the mean over classes that occur in
the labels or the predictions of that resample); tests check them against sklearn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import bootstrap


def accuracy(labels: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(labels == predicted, axis=axis)


def macro_f1(labels: np.ndarray, predicted: np.ndarray, axis: int = -1, num_classes: int | None = None) -> np.ndarray:
    """Macro-F1 over the last axis; F1 of a class = 2 TP / (2 TP + FP + FN), classes with no TP+FP+FN skipped."""
    labels, predicted = np.moveaxis(labels, axis, -1), np.moveaxis(predicted, axis, -1)
    k = int(num_classes if num_classes is not None else max(labels.max(), predicted.max()) + 1)
    classes = np.arange(k).reshape((k,) + (1,) * labels.ndim)
    is_label, is_pred = labels == classes, predicted == classes
    tp = np.sum(is_label & is_pred, axis=-1)
    fp = np.sum(~is_label & is_pred, axis=-1)
    fn = np.sum(is_label & ~is_pred, axis=-1)
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    f1 = np.divide(2 * tp, denominator, out=np.zeros(denominator.shape, dtype=float), where=present)
    return f1.sum(axis=0) / np.maximum(present.sum(axis=0), 1)


METRICS: dict[str, Callable[..., np.ndarray]] = {"accuracy": accuracy, "macro_f1": macro_f1}


def paired_difference_ci(labels: np.ndarray, candidate: np.ndarray, baseline: np.ndarray, metric: str,
                         resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """metric(candidate) − metric(baseline): the point value, its percentile CI and P(difference ≤ 0)."""
    labels, candidate, baseline = (np.asarray(a) for a in (labels, candidate, baseline))
    if not (labels.shape == candidate.shape == baseline.shape) or labels.ndim != 1 or len(labels) < 2:
        raise ValueError(f"paired bootstrap needs three equal 1-D arrays of >= 2 records, got "
                         f"{labels.shape}, {candidate.shape}, {baseline.shape}")
    score = METRICS[metric]
    k = int(max(labels.max(), candidate.max(), baseline.max()) + 1)
    kwargs = {"num_classes": k} if metric == "macro_f1" else {}

    def difference(y: np.ndarray, a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return score(y, a, axis=axis, **kwargs) - score(y, b, axis=axis, **kwargs)

    point = float(difference(labels, candidate, baseline))
    if np.array_equal(candidate, baseline):  # identical predictions: every resample differs by exactly 0
        low = high = 0.0
        p_not_better = 1.0
    else:
        result = bootstrap((labels, candidate, baseline), difference, paired=True, vectorized=True,
                           n_resamples=resamples, confidence_level=confidence, method="percentile",
                           rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        p_not_better = float(np.mean(result.bootstrap_distribution <= 0))
    return {"metric": metric, "difference": point, "ci_low": low, "ci_high": high, "confidence": confidence,
            "resamples": resamples, "seed": seed, "p_not_better": p_not_better,
            "better_beyond_ci": low > 0, "worse_beyond_ci": high < 0}


def metric_ci(labels: np.ndarray, predicted: np.ndarray, metric: str, resamples: int = 1000,
              confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """One model's metric on the records with its percentile bootstrap CI (records resampled, labels and
    predictions together)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if labels.shape != predicted.shape or labels.ndim != 1 or len(labels) < 2:
        raise ValueError(f"bootstrap needs two equal 1-D arrays of >= 2 records, got {labels.shape}, {predicted.shape}")
    score = METRICS[metric]
    kwargs = {"num_classes": int(max(labels.max(), predicted.max()) + 1)} if metric == "macro_f1" else {}

    def statistic(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
        return score(y, p, axis=axis, **kwargs)

    result = bootstrap((labels, predicted), statistic, paired=True, vectorized=True, n_resamples=resamples,
                       confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return {"value": float(statistic(labels, predicted)), "ci_low": float(result.confidence_interval.low),
            "ci_high": float(result.confidence_interval.high), "confidence": confidence, "resamples": resamples}
