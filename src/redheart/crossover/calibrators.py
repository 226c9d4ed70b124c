"""Calibration methods for the emotion probabilities: fitted on val, chosen on val, compared on test.

- temperature (Guo et al. 2017): softmax(z / T), one scalar (temperature.py);
- vector scaling (Guo et al. 2017): softmax(w ⊙ z + b), a scale and a bias per class, minimum val NLL;
- Platt, one-vs-rest (Platt 1999): per class k, scikit-learn's LogisticRegression on that class's
  logit z_k gives sigmoid(a_k z_k + c_k); the K scores are renormalised to sum to 1;
- isotonic, one-vs-rest (Zadrozny & Elkan 2002): per class k, scikit-learn's IsotonicRegression
  from softmax(z)_k to 1[y = k], clipped outside the val range; renormalised.

Choice on val: each method's mean negative log-likelihood over 5 stratified folds of val (fit on four,
score the fifth; probabilities floored at 1e-6 so isotonic's zeros do not make it infinite), lowest
wins. Fitting and scoring on the same records would favour isotonic, which can memorise val. The
chosen method is then refitted on the whole val split; `to_json` gives its parameters (plain lists and
numbers) and `apply_json` applies them to logits, so a model bundle can carry and use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

METHODS = ("none", "temperature", "vector", "platt", "isotonic")
# method → the `kind` its fitted parameters carry: what `apply_json` reads and a model bundle stores
KINDS = {"none": "none", "temperature": "temperature", "vector": "vector", "platt": "platt_ovr",
         "isotonic": "isotonic_ovr"}
FLOOR = 1e-6


def softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    """scipy.special.softmax's definition in numpy alone: applying a calibrator (what a loaded bundle runs)
    imports neither scipy nor scikit-learn."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _normalise(scores: np.ndarray) -> np.ndarray:
    scores = np.clip(scores, FLOOR, None)
    return scores / scores.sum(axis=1, keepdims=True)


def fit(method: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The JSON-serialisable parameters of `method` fitted on (logits, labels)."""
    k = logits.shape[1]
    # fitting needs scipy.optimize and scikit-learn; applying (`apply_json`, what a loaded bundle runs) does not
    from scipy.optimize import minimize
    from scipy.special import log_softmax
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    if method == "none":
        return {"kind": "none"}
    if method == "temperature":
        from redheart.crossover.temperature import fit_temperature

        t = fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels))
        return {"kind": "temperature", "temperature": t}
    if method == "vector":
        def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:k], theta[k:]
            logp = log_softmax(logits * w + b, axis=1)
            grad_z = softmax(logits * w + b, axis=1)
            grad_z[np.arange(len(labels)), labels] -= 1.0
            grad_z /= len(labels)
            return float(-logp[np.arange(len(labels)), labels].mean()), np.r_[(grad_z * logits).sum(0), grad_z.sum(0)]

        result = minimize(nll, np.r_[np.ones(k), np.zeros(k)], jac=True, method="L-BFGS-B")
        return {"kind": "vector", "scale": result.x[:k].tolist(), "bias": result.x[k:].tolist()}
    if method == "platt":
        coef, intercept = [], []
        for c in range(k):
            target = (labels == c).astype(int)
            if target.min() == target.max():  # a class absent (or alone) in val: keep its raw sigmoid
                coef.append(1.0)
                intercept.append(0.0)
                continue
            model = LogisticRegression(C=1e4).fit(logits[:, [c]], target)
            coef.append(float(model.coef_[0, 0]))
            intercept.append(float(model.intercept_[0]))
        return {"kind": "platt_ovr", "coef": coef, "intercept": intercept}
    if method == "isotonic":
        probs = softmax(logits, axis=1)
        x, y = [], []
        for c in range(k):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probs[:, c],
                                                                                          (labels == c).astype(float))
            x.append(model.X_thresholds_.tolist())
            y.append(model.y_thresholds_.tolist())
        return {"kind": "isotonic_ovr", "x": x, "y": y}
    raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")


def apply_json(params: Mapping[str, Any], logits: np.ndarray) -> np.ndarray:
    """Calibrated probabilities (N, K) from raw logits with the parameters `fit` returned."""
    logits = np.asarray(logits, dtype=np.float64)
    kind = params["kind"]
    if kind == "none":
        return softmax(logits, axis=1)
    if kind == "temperature":
        return softmax(logits / params["temperature"], axis=1)
    if kind == "vector":
        return softmax(logits * np.asarray(params["scale"]) + np.asarray(params["bias"]), axis=1)
    if kind == "platt_ovr":
        z = logits * np.asarray(params["coef"]) + np.asarray(params["intercept"])
        return _normalise(1.0 / (1.0 + np.exp(-z)))
    if kind == "isotonic_ovr":
        probs = softmax(logits, axis=1)
        out = np.column_stack([np.interp(probs[:, c], params["x"][c], params["y"][c])
                               for c in range(logits.shape[1])])
        return _normalise(out)
    raise ValueError(f"unknown calibrator kind {kind!r}")


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], FLOOR, None)).mean())


def scores(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, float]:
    from redheart.crossover.temperature import brier, ece

    p, y = torch.from_numpy(probs).float(), torch.from_numpy(labels).long()
    return {"nll": nll(probs, labels), "ece": ece(p, y, bins), "brier": brier(p, y)}


def scaled_scores(params: Mapping[str, Any], logits: torch.Tensor, labels: torch.Tensor, bins: int = 15,
                  method: str | None = None) -> dict[str, Any]:
    """`summarize`'s after-calibration fields (ece_scaled, brier_scaled, nll_scaled) with the calibrator
    `params` instead of a temperature: what a model bundle reports for the probabilities it gives."""
    after = scores(apply_json(params, logits.double().numpy()), labels.numpy().astype(int), bins)
    return {"calibration_method": method or params["kind"], "ece_scaled": after["ece"],
            "brier_scaled": after["brier"], "nll_scaled": after["nll"]}


def cross_validated_nll(method: str, logits: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Mean held-out NLL over stratified folds of val (fewer folds when a class has fewer records)."""
    from sklearn.model_selection import StratifiedKFold

    _, counts = np.unique(labels, return_counts=True)
    n_splits = int(min(folds, counts.min())) if counts.min() >= 2 else 0
    if n_splits < 2:
        return nll(apply_json(fit(method, logits, labels), logits), labels)  # too small to hold out
    losses = []
    for train, held in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(logits, labels):
        params = fit(method, logits[train], labels[train])
        losses.append(nll(apply_json(params, logits[held]), labels[held]))
    return float(np.mean(losses))


def calibrate_and_compare(val_logits: torch.Tensor, val_labels: torch.Tensor, test_logits: torch.Tensor,
                          test_labels: torch.Tensor, bins: int = 15,
                          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every method fitted on val, chosen by val cross-validated NLL, every method's test ECE/Brier/NLL."""
    vz, vy = val_logits.double().numpy(), val_labels.numpy().astype(int)
    tz, ty = test_logits.double().numpy(), test_labels.numpy().astype(int)
    cv = {m: cross_validated_nll(m, vz, vy) for m in METHODS}
    chosen = min(METHODS, key=lambda m: (cv[m], METHODS.index(m)))
    fitted = {m: fit(m, vz, vy) for m in METHODS}
    test = {m: scores(apply_json(fitted[m], tz), ty, bins) for m in METHODS}
    if log:
        log(f"calibrator chosen on val: {chosen} (cross-validated NLL {cv[chosen]:.4f})")
    return {"methods": list(METHODS), "chosen": chosen, "chosen_by": "val 5-fold cross-validated NLL",
            "val_cv_nll": cv, "test": test, "params": fitted[chosen]}


def chosen_calibrator(evaluation: Mapping[str, Any], candidate: str | None = None) -> dict[str, Any] | None:
    """The calibrator chosen on val for one model of the evaluation (JSON-serialisable), for a model bundle.

    `candidate`: the candidate whose weights the bundle carries (a calibrator fitted on other weights' logits
    would miscalibrate them, so there is no fallback to another candidate's); default the recommended model,
    else best single. Returns {"candidate", "method", "chosen_by", "params"} (`apply_json(params, logits)`
    applies it) or None when the evaluation calibrated no such model."""
    calibration = evaluation.get("calibration") or {}
    if candidate is None:
        name = (evaluation.get("recommendation") or {}).get("recommended", "best_single")
        name = name if name in calibration else "best_single"
    else:
        name = candidate
    entry = calibration.get(name)
    if not entry:
        return None
    return {"candidate": name, "method": entry["chosen"], "chosen_by": entry.get("chosen_by"),
            "params": entry["params"]}
