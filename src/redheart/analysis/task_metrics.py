"""Task-specific metrics of a group, and the epoch where together they are best.

Definitions (all on the validation split, docs/analysis.md has the details):
- emotion macro-F1: torchmetrics MulticlassF1Score(average="macro"), per module (`emotion_f1`) and for
  the final output (`val/emotion/f1`).
- confusion-matrix stability: 1 − mean over true classes of the total-variation distance between the
  row-normalised validation confusion matrices of this and the previous checkpoint (1 = the model
  confuses the same classes in the same proportions). Needs `val_confusion` in the metrics files.
- Bentham RMSE: root mean squared error of sigmoid(output) over the present scores of the 10
  dimensions; Bentham Pearson: Pearson r per dimension over records with all 10 scores, averaged
  (final output only).
- regret error, SURD error: mean absolute error of sigmoid(output) over the present targets.

Each metric is min–max scored over the eligible epochs (1 = best), the task score is their mean,
smoothed over `task.smoothing` checkpoints so one lucky validation pass does not win alone.
"""

from __future__ import annotations

import numpy as np

from redheart.analysis.common import TechniqueResult, argbest, minmax_score, peak_confidence, rolling
from redheart.analysis.run_metrics import RunMetrics
from redheart.analysis.settings import MetricSpec


def confusion_stability(epochs: list[int], confusion: dict[int, np.ndarray]) -> np.ndarray:
    """Per epoch, the stability against the previous checkpoint's confusion matrix (NaN if either is absent)."""
    out = np.full(len(epochs), np.nan)
    for i in range(1, len(epochs)):
        a, b = confusion.get(epochs[i - 1]), confusion.get(epochs[i])
        if a is None or b is None or a.shape != b.shape:
            continue
        rows = (a.sum(1) > 0) & (b.sum(1) > 0)
        if not rows.any():
            continue
        pa = a[rows] / a[rows].sum(1, keepdims=True)
        pb = b[rows] / b[rows].sum(1, keepdims=True)
        out[i] = 1.0 - float(np.mean(0.5 * np.abs(pa - pb).sum(1)))
    return out


def task_series(run: RunMetrics, specs: tuple[MetricSpec, ...]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The task metrics this run has ({name: values}), and notes for those it does not have."""
    series, notes = {}, []
    for spec in specs:
        if run.expand(spec.name):
            series[spec.name] = run.series(spec.name)
        else:
            notes.append(f"task metric {spec.name} is not in this run's metrics files: left out")
    return series, notes


def task_score(series: dict[str, np.ndarray], specs: tuple[MetricSpec, ...], mask: np.ndarray) -> np.ndarray:
    """Mean of the min–max scored task metrics over the epochs in `mask` (NaN elsewhere)."""
    scored = [minmax_score(series[s.name], s.mode, mask) for s in specs if s.name in series]
    if not scored:
        return np.full(len(mask), np.nan)
    return np.mean(scored, axis=0)


def task_technique(epochs: list[int], series: dict[str, np.ndarray], specs: tuple[MetricSpec, ...],
                   eligible: np.ndarray, smoothing: int, near: float) -> TechniqueResult:
    """The eligible epoch with the best smoothed task score."""
    if not series:
        return TechniqueResult(None, 0.0, {"reason": "the run has none of the group's task metrics"})
    score = rolling(task_score(series, specs, eligible), smoothing, np.mean)
    best = argbest(score)
    if best is None:
        return TechniqueResult(None, 0.0, {"reason": "no eligible epoch"})
    metrics = {}
    for spec in specs:
        if spec.name not in series:
            continue
        values = np.where(eligible, series[spec.name], np.nan)
        top = argbest(-values if spec.mode == "min" else values)
        metrics[spec.name] = {"mode": spec.mode, "at_epoch": _num(series[spec.name][best]),
                              "best": _num(values[top]) if top is not None else None,
                              "best_epoch": epochs[top] if top is not None else None}
    evidence = {"score": _num(score[best]), "smoothing": smoothing, "metrics": metrics}
    return TechniqueResult(epochs[best], peak_confidence(score, best, near), evidence)


def _num(x: float) -> float | None:
    return round(float(x), 6) if np.isfinite(x) else None
