"""The floor every candidate must clear: scikit-learn's LogisticRegression on the same embeddings and split.

The network reads the cached sentence embeddings of the run's own train/val/test split; so does this
baseline (`datamodule.datasets[split].tensors["embedding"]`), so a gap between them is what the 730M
model adds over a linear read-out of the same features. Protocol as for every candidate: the inverse
regularisation C is chosen on val (lowest emotion log-loss over `C`), then test is predicted once.
Only the emotion task is compared: a logistic regression has no multitask loss, so its val/test
`loss` is None (tables print "—") and its emotion log-loss is in `details`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from redheart.crossover.errors import CrossoverError

log = logging.getLogger(__name__)
DEFAULT_C = (0.01, 0.1, 1.0, 10.0)


@dataclass
class BaselineFit:
    """The chosen pipeline and, per split, log-probabilities (N, C) and labels."""

    C: float
    val_log_loss: dict[float, float]
    log_probs: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    converged: bool
    model: Pipeline | None = None  # the chosen fit, to predict other records (evaluate.py)


def _split(datasets: Mapping[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    tensors = datasets[name].tensors
    return tensors["embedding"].numpy(), tensors["label"].numpy()


def _fit(x: np.ndarray, y: np.ndarray, c: float, max_iter: int, seed: int) -> tuple[Pipeline, bool]:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    return model, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def _log_probs(model: Pipeline, x: np.ndarray, num_classes: int) -> torch.Tensor:
    """(N, num_classes) log-probabilities; a class absent from train gets probability 0 (log = -inf → -1e4)."""
    out = np.full((len(x), num_classes), -1e4, dtype=np.float64)
    out[:, model.classes_] = np.log(np.clip(model.predict_proba(x), 1e-12, None))
    return torch.from_numpy(out).float()


def fit_logistic_regression(datasets: Mapping[str, Any], num_classes: int, c_grid: Sequence[float] = DEFAULT_C,
                            max_iter: int = 2000, seed: int = 0) -> BaselineFit:
    """Fit on train for every C, keep the lowest val log-loss, predict val and test with it."""
    if not c_grid:
        raise CrossoverError("evaluation.baseline.C is empty: give at least one inverse regularisation strength")
    x_train, y_train = _split(datasets, "train")
    if len(np.unique(y_train)) < 2:
        raise CrossoverError(f"logistic-regression baseline: the train split has {len(np.unique(y_train))} emotion "
                             "class(es); it needs two or more")
    x_val, y_val = _split(datasets, "val")
    fits, losses = {}, {}
    for c in (float(c) for c in c_grid):
        fits[c] = _fit(x_train, y_train, c, max_iter, seed)
        probs = torch.softmax(_log_probs(fits[c][0], x_val, num_classes), dim=1).numpy()
        losses[c] = float(log_loss(y_val, probs, labels=list(range(num_classes))))
    best = min(losses, key=lambda c: (losses[c], c))
    model, converged = fits[best]
    if not converged:
        log.warning("logistic-regression baseline (C=%g) did not converge in %d iterations", best, max_iter)
    log_probs, labels = {}, {}
    for name in ("val", "test"):
        x, y = _split(datasets, name)
        log_probs[name], labels[name] = _log_probs(model, x, num_classes), torch.from_numpy(y).long()
    log.info("logistic-regression baseline: C=%g chosen on val (log-loss %.4f)", best, losses[best])
    return BaselineFit(best, losses, log_probs, labels, converged, model)


def predict_log_probs(fit: BaselineFit, embeddings: np.ndarray, num_classes: int) -> torch.Tensor:
    """The chosen fit's (N, num_classes) log-probabilities on other records' embeddings."""
    return _log_probs(fit.model, embeddings, num_classes)
