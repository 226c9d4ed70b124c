"""What every technique shares: its result type, min–max scoring over eligible epochs, and the
"how many epochs are about as good" confidence rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class TechniqueResult:
    """One technique's answer for one group: an epoch (None: no opinion), its confidence, the why."""

    epoch: int | None
    confidence: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "confidence": round(float(self.confidence), 4), "evidence": self.evidence}


def oriented(values: np.ndarray, mode: str) -> np.ndarray:
    """Values turned so that larger is better."""
    return -values if mode == "min" else values.copy()


def minmax_score(values: np.ndarray, mode: str, mask: np.ndarray) -> np.ndarray:
    """Min–max normalised over the epochs in `mask`: 1 = best, 0 = worst, NaN outside the mask.

    A criterion that does not vary over the masked epochs scores 0.5 everywhere: it cannot rank them.
    """
    better = oriented(np.asarray(values, dtype=float), mode)
    out = np.full(len(better), np.nan)
    sel = mask & np.isfinite(better)
    if not sel.any():
        return out
    lo, hi = better[sel].min(), better[sel].max()
    out[sel] = 0.5 if hi - lo <= 1e-12 * max(1.0, abs(hi)) else (better[sel] - lo) / (hi - lo)
    return out


def relative(values: np.ndarray) -> tuple[np.ndarray, float]:
    """values / their median magnitude (the "relative units" of the plateau thresholds), and that scale."""
    finite = values[np.isfinite(values)]
    scale = float(np.median(np.abs(finite))) if finite.size else 1.0
    scale = scale if scale > 1e-12 else 1.0
    return values / scale, scale


def peak_confidence(scores: np.ndarray, best: int, near: float) -> float:
    """1 − the share of other scored epochs within `near` of the best score.

    A sharp, lone optimum gives 1; a long ridge of near-equal epochs gives about 0 (any of them
    would do, so the exact epoch is not well determined).
    """
    finite = np.isfinite(scores)
    n = int(finite.sum())
    if n <= 1:
        return 0.5 if n == 1 else 0.0
    close = int((scores[finite] >= scores[best] - near).sum()) - 1
    return float(1.0 - close / (n - 1))


def argbest(scores: np.ndarray) -> int | None:
    """Index of the highest finite score (the earliest on ties), None when there is none."""
    finite = np.isfinite(scores)
    if not finite.any():
        return None
    return int(np.flatnonzero(finite)[np.argmax(scores[finite])])


def nearest(epochs: list[int], target: float, allowed: np.ndarray) -> int | None:
    """The allowed epoch closest to `target` (the earlier one on a tie)."""
    candidates = [e for e, ok in zip(epochs, allowed, strict=True) if ok]
    return min(candidates, key=lambda e: (abs(e - target), e)) if candidates else None


def rolling(values: np.ndarray, window: int, reduce) -> np.ndarray:
    """`reduce` over a centred window of finite neighbours (shrinking at the ends), NaN kept as NaN."""
    n, half = len(values), window // 2
    out = np.full(n, np.nan)
    for i in range(n):
        if not np.isfinite(values[i]):
            continue
        seg = values[max(0, i - half): i + half + 1]
        seg = seg[np.isfinite(seg)]
        out[i] = reduce(seg)
    return out


def nanmean_rows(rows: np.ndarray) -> np.ndarray:
    """Column means over the finite entries of `rows`; NaN where a column has none (no warning)."""
    finite = np.isfinite(rows)
    count = finite.sum(axis=0)
    total = np.where(finite, rows, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
