"""Calibration of the emotion classifier: ECE, Brier score, and temperature scaling fitted on val.

ECE is torchmetrics' (15 equal-width confidence bins, L1), the same definition the training logs.
Brier score (multiclass, Brier 1950): mean over records of Σ_k (p_k − 1[y = k])², in [0, 2]; no
maintained library computes the multiclass form for torch tensors, so it is the one line below.
Temperature scaling (Guo et al. 2017): one scalar T > 0 dividing the logits, fitted by minimising the
negative log-likelihood on val (scipy's bounded scalar minimiser over log T); accuracy is unchanged.
"""

from __future__ import annotations

import math

import torch
from scipy.optimize import minimize_scalar
from torch.nn import functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    return float(multiclass_calibration_error(probs, labels, num_classes=probs.shape[1], n_bins=bins, norm="l1"))


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    onehot = F.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return float((probs - onehot).pow(2).sum(dim=1).mean())


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return float(F.cross_entropy(logits.double() / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T minimising val NLL of softmax(logits / T), searched over log T in [log 0.05, log 20]."""
    logits = logits.double()
    result = minimize_scalar(lambda log_t: nll(logits, labels, math.exp(log_t)), bounds=LOG_T_BOUNDS,
                             method="bounded", options={"xatol": 1e-5})
    return float(math.exp(result.x))


def calibration_metrics(logits: torch.Tensor, labels: torch.Tensor, temperature: float, bins: int = 15) -> dict:
    """NLL, ECE and Brier before (T = 1) and after dividing the logits by `temperature`."""
    before = logits.float().softmax(-1)
    after = (logits.double() / temperature).softmax(-1).float()
    return {"temperature": temperature,
            "nll": nll(logits, labels), "nll_scaled": nll(logits, labels, temperature),
            "ece": ece(before, labels, bins), "ece_scaled": ece(after, labels, bins),
            "brier": brier(before, labels), "brier_scaled": brier(after, labels)}
