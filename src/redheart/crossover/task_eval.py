"""Every task in the evaluation: per candidate, test metrics per task and paired bootstrap Δ vs best single.

Tasks and metrics (final outputs, test split):
- emotion: accuracy, macro-F1 (their CIs and Δ come from bootstrap.py, as before), ECE (15 bins, L1)
  and the multiclass Brier score;
- intensity, regret, bentham, surd: MAE of sigmoid(output) over the present targets, and Spearman's ρ
  (per target dimension over the records that have it, averaged over dimensions with >= 3 of them),
  over the records that have at least one target of the task.

Paired bootstrap: the same resamples of records score both models, written as a (resamples × records)
count matrix W so every statistic is a weighted sum (one matrix product per statistic). ECE's bins
are fixed per record by its confidence, so resampled ECE is exact. Spearman on a resample uses the
ranks of the full test set (weighted Pearson of fixed ranks), an approximation that avoids re-ranking
1,000 times; the point value is scipy's exact ρ. A candidate whose outputs for a task equal best
single's bit for bit gets exactly 0 and the interval [0, 0] (e.g. emotion, for a candidate that only
changes advanced_bentham, which has no path to the emotion logits).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.stats import rankdata, spearmanr

REGRESSION_TASKS = ("intensity", "regret", "bentham", "surd")
TASKS = ("emotion", *REGRESSION_TASKS)
LOWER_IS_BETTER = {"accuracy": False, "macro_f1": False, "ece": True, "brier": True, "mae": True,
                   "spearman": False}
BINS = 15


@lru_cache(maxsize=16)
def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) counts: how often each record is drawn in each resample (with replacement); cached,
    so every candidate is scored on the same resamples (never modify the returned array)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    counts = np.zeros((resamples, n))
    np.add.at(counts, (np.arange(resamples)[:, None], idx), 1.0)
    return counts


def _ece(probs: np.ndarray, labels: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ECE (equal-width confidence bins, L1) for each row of weights w (torchmetrics' definition)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    bins = np.clip(np.ceil(conf * BINS).astype(int) - 1, 0, BINS - 1)
    onehot = np.eye(BINS)[bins]                                  # (n, bins)
    gap = w @ (onehot * (conf - correct)[:, None])               # (B, bins): Σ (conf − correct) per bin
    return np.abs(gap).sum(axis=1) / w.sum(axis=1)


def _brier(probs: np.ndarray, labels: np.ndarray, w: np.ndarray) -> np.ndarray:
    per_record = ((probs - np.eye(probs.shape[1])[labels]) ** 2).sum(axis=1)
    return (w @ per_record) / w.sum(axis=1)


def _mae(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, w: np.ndarray) -> np.ndarray:
    err = (np.abs(pred - target) * mask).sum(axis=1)
    return (w @ err) / np.maximum(w @ mask.sum(axis=1), 1e-12)


def _ranked(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per column, the ranks of the present values (1..m, ties averaged), 0 where absent."""
    out = np.zeros_like(values, dtype=float)
    for d in range(values.shape[1]):
        present = mask[:, d]
        if present.any():
            out[present, d] = rankdata(values[present, d])
    return out


def _spearman(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, w: np.ndarray,
              ranks: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Mean over dimensions (>= 3 present) of the weighted Pearson correlation of the fixed ranks."""
    rp, rt = ranks if ranks is not None else (_ranked(pred, mask), _ranked(target, mask))
    values = []
    for d in range(pred.shape[1]):
        m = mask[:, d].astype(float)
        if m.sum() < 3:
            continue
        wd = w * m                                                  # (B, n)
        total = np.maximum(wd.sum(axis=1), 1e-12)
        mp, mt = (wd @ rp[:, d]) / total, (wd @ rt[:, d]) / total
        cov = (wd @ (rp[:, d] * rt[:, d])) / total - mp * mt
        vp = (wd @ rp[:, d] ** 2) / total - mp ** 2
        vt = (wd @ rt[:, d] ** 2) / total - mt ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            values.append(cov / np.sqrt(vp * vt))
    if not values:
        return np.full(len(w), np.nan)
    stacked = np.vstack(values)
    count = np.isfinite(stacked).sum(axis=0)
    return np.where(count > 0, np.nansum(stacked, axis=0) / np.maximum(count, 1), np.nan)


def spearman_point(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float | None:
    """scipy's exact Spearman ρ per dimension (>= 3 present values), averaged."""
    values = []
    for d in range(pred.shape[1]):
        present = mask[:, d]
        if present.sum() >= 3 and np.ptp(target[present, d]) > 0 and np.ptp(pred[present, d]) > 0:
            values.append(float(spearmanr(pred[present, d], target[present, d]).statistic))
    return float(np.mean(values)) if values else None


def task_arrays(predictions: Any) -> dict[str, dict[str, np.ndarray]]:
    """numpy views of a Predictions' per-record outputs: emotion probs/labels; per regression task
    pred/target/mask (records without any target of the task dropped)."""
    out = {"emotion": {"probs": predictions.logits.double().softmax(-1).numpy(),
                       "labels": predictions.labels.numpy()}}
    for task, (pred, target, mask) in (predictions.regression or {}).items():
        pred, target, mask = (t.double().numpy() if t.dtype != bool else t.numpy() for t in (pred, target, mask))
        mask = mask.astype(bool)
        keep = mask.any(axis=1)
        out[task] = {"pred": pred[keep], "target": target[keep], "mask": mask[keep], "rows": keep}
    return out


def _statistics(arrays: Mapping[str, np.ndarray], task: str, w: np.ndarray) -> dict[str, np.ndarray]:
    if task == "emotion":
        probs, labels = arrays["probs"], arrays["labels"]
        return {"ece": _ece(probs, labels, w), "brier": _brier(probs, labels, w)}
    return {"mae": _mae(arrays["pred"], arrays["target"], arrays["mask"], w),
            "spearman": _spearman(arrays["pred"], arrays["target"], arrays["mask"], w)}


def task_metrics(arrays: Mapping[str, Mapping[str, np.ndarray]], emotion: Mapping[str, float]) -> dict[str, dict]:
    """{task: {metric: value, "records": n}} for one candidate (emotion accuracy/F1 passed in)."""
    out: dict[str, dict] = {}
    for task, a in arrays.items():
        if task == "emotion":
            one = np.ones((1, len(a["labels"])))
            out[task] = {"records": len(a["labels"]), "accuracy": emotion["accuracy"],
                         "macro_f1": emotion["macro_f1"],
                         **{k: float(v[0]) for k, v in _statistics(a, task, one).items()}}
        else:
            n = len(a["pred"])
            if n == 0:
                out[task] = {"records": 0, "mae": None, "spearman": None}
                continue
            one = np.ones((1, n))
            out[task] = {"records": n, "mae": float(_mae(a["pred"], a["target"], a["mask"], one)[0]),
                         "spearman": spearman_point(a["pred"], a["target"], a["mask"])}
    return out


def _difference(values: np.ndarray, base: np.ndarray, point: float, metric: str, confidence: float,
                resamples: int, seed: int) -> dict[str, Any]:
    with np.errstate(invalid="ignore"):
        diff = values - base
    finite = diff[np.isfinite(diff)]
    if finite.size == 0:
        return {"metric": metric, "difference": point, "ci_low": None, "ci_high": None, "confidence": confidence,
                "resamples": resamples, "seed": seed, "better_beyond_ci": False, "worse_beyond_ci": False,
                "lower_is_better": LOWER_IS_BETTER[metric]}
    if np.all(finite == 0):
        low = high = 0.0
    else:
        low, high = (float(q) for q in np.quantile(finite, [(1 - confidence) / 2, (1 + confidence) / 2]))
    lower = LOWER_IS_BETTER[metric]
    return {"metric": metric, "difference": point, "ci_low": low, "ci_high": high, "confidence": confidence,
            "resamples": resamples, "seed": seed, "lower_is_better": lower,
            "better_beyond_ci": (high < 0) if lower else (low > 0),
            "worse_beyond_ci": (low > 0) if lower else (high < 0)}


def task_deltas(base: Mapping[str, Mapping[str, np.ndarray]], candidate: Mapping[str, Mapping[str, np.ndarray]],
                base_metrics: Mapping[str, Mapping[str, Any]], cand_metrics: Mapping[str, Mapping[str, Any]],
                emotion_cis: Mapping[str, Mapping[str, Any]] | None, boot: Mapping[str, Any]) -> dict[str, dict]:
    """{task: {metric: Δ dict}}: candidate − best single on the same resamples of the same records.

    `emotion_cis`: accuracy and macro-F1 Δ already computed by bootstrap.paired_difference_ci (None for
    best single itself)."""
    resamples, confidence, seed = int(boot["resamples"]), float(boot["confidence"]), int(boot["seed"])
    out: dict[str, dict] = {}
    for task, a in candidate.items():
        if task not in base:
            continue
        b = base[task]
        n = len(a["labels"]) if task == "emotion" else len(a["pred"])
        if n == 0:
            continue
        w = resample_counts(n, resamples, seed + TASKS.index(task))
        ours, theirs = _statistics(a, task, w), _statistics(b, task, w)
        entry = {}
        if task == "emotion" and emotion_cis:
            entry |= {m: {**emotion_cis[m], "lower_is_better": False} for m in ("accuracy", "macro_f1")}
        for metric in ours:
            p_c, p_b = cand_metrics[task][metric], base_metrics[task][metric]
            point = (p_c - p_b) if p_c is not None and p_b is not None else None
            entry[metric] = _difference(ours[metric], theirs[metric], point, metric, confidence, resamples, seed)
        out[task] = entry
    return out
