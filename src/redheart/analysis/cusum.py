"""Change points of a validation curve (a penalised piecewise-linear fit), and the best-level segment.

The former detector (binary segmentation on CUSUM mean shifts, split while the statistic beat a noise
multiple) treated a slope as a sequence of mean shifts: on a smoothly falling loss it marked a change
point every ~4 epochs. A change of regime is a change of *trend* (the fall flattening, the rise after
overfitting), so each segment here is a straight line a + b·epoch, and the partition minimises

    Σ_segments RSS(segment)  +  penalty · 3 σ² log n   per change point

(the BIC of a Gaussian piecewise-linear model with known σ: each new segment costs an intercept, a slope
and a location). It is solved exactly by optimal partitioning (dynamic programming over every split,
O(n²) least-squares fits: n is a few dozen checkpoints); ruptures' Pelt with the "linear" cost, the same
penalty and `jump=1` returns the same partition (tests/test_analysis_techniques.py cross-checks them).
σ is the noise from second differences (blind to linear trends), floored at `min_noise` × the median
level and at `resolution` × the curve's range: a change smaller than a few percent of the whole curve's
span is not a regime, which is what keeps a smooth exponential decay to one or two change points.
"""

from __future__ import annotations

import numpy as np

from redheart.analysis.common import TechniqueResult, nearest, oriented, relative


def noise_level(x: np.ndarray, floor: float = 0.0) -> float:
    """Robust standard deviation of white noise on x: MAD of second differences / √6.

    Second differences cancel any linear trend (a falling loss is not noise); for white noise of
    deviation σ they have deviation σ·√6, and the median absolute deviation ignores the few kinks.
    """
    if len(x) < 4:
        return floor
    d = np.diff(x, n=2)
    mad = float(np.median(np.abs(d - np.median(d))))
    return max(1.4826 * mad / np.sqrt(6.0), floor)


def line_rss(y: np.ndarray, t: np.ndarray) -> float:
    """Residual sum of squares of the least-squares line through (t, y)."""
    if len(y) <= 2:
        return 0.0
    design = np.column_stack([np.ones(len(t)), t])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(((y - design @ coef) ** 2).sum())


def bic_penalty(n: int, sigma: float, multiplier: float = 1.0) -> float:
    """Cost of one more change point: 3 parameters (intercept, slope, location) × σ² log n."""
    return multiplier * 3.0 * sigma ** 2 * float(np.log(max(n, 2)))


def change_points(x: np.ndarray, t: np.ndarray, min_size: int, penalty: float) -> list[int]:
    """Breakpoints as ruptures returns them: the end index (exclusive) of each segment, n last."""
    n = len(x)
    cost = {}

    def segment(a: int, b: int) -> float:
        if (a, b) not in cost:
            cost[(a, b)] = line_rss(x[a:b], t[a:b])
        return cost[(a, b)]

    best = np.full(n + 1, np.inf)
    best[0] = -penalty
    last = np.zeros(n + 1, dtype=int)
    for b in range(min_size, n + 1):
        for a in range(0, b - min_size + 1):
            if a and a < min_size or not np.isfinite(best[a]):
                continue
            value = best[a] + penalty + segment(a, b)
            if value < best[b] - 1e-12:
                best[b], last[b] = value, a
    ends, b = [], n
    while b > 0:
        ends.append(b)
        b = int(last[b])
    return sorted(ends)


def cusum_technique(epochs: list[int], values: np.ndarray, mode: str, eligible: np.ndarray, penalty: float,
                    min_size: int, min_noise: float, window: int, resolution: float = 0.03) -> TechniqueResult:
    """The centre of the best-level segment between penalised change points (eligible epochs only)."""
    finite = np.flatnonzero(np.isfinite(values))
    rel, scale = relative(values)
    x = rel[finite]
    if len(x) < 2 * min_size:
        return TechniqueResult(None, 0.0, {"reason": f"fewer than {2 * min_size} finite checkpoints"})
    sigma = max(noise_level(x, min_noise), resolution * float(np.ptp(x)))
    fe = [epochs[i] for i in finite]
    pen = bic_penalty(len(x), sigma, penalty)
    ends = change_points(x, np.asarray(fe, dtype=float), min_size, pen)
    segments, start = [], 0
    for end in ends:
        idx = finite[start:end]
        level = float(np.mean(oriented(values[idx], mode)))
        segments.append({"first": fe[start], "last": fe[end - 1], "mean": float(np.mean(values[idx])),
                         "level": level, "eligible": [epochs[i] for i in idx if eligible[i]]})
        start = end
    evidence = {"change_points": [fe[e] for e in ends[:-1]], "noise_sigma": round(sigma, 6),
                "penalty": round(pen, 8), "cost": "piecewise linear, BIC penalty",
                "segments": [{k: v for k, v in s.items() if k != "level"} for s in segments]}
    if len(segments) == 1:
        evidence["reason"] = "no change point: the curve is one regime, the detector cannot place an epoch"
        return TechniqueResult(None, 0.0, evidence)
    usable = [s for s in segments if s["eligible"]]
    if not usable:
        evidence["reason"] = "no segment has an eligible epoch"
        return TechniqueResult(None, 0.0, evidence)
    best = max(usable, key=lambda s: (s["level"], len(s["eligible"])))
    allowed = np.array([e in best["eligible"] for e in epochs])
    centre = nearest(epochs, (best["eligible"][0] + best["eligible"][-1]) / 2, allowed)
    others = [s["level"] for s in usable if s is not best]
    # how far the chosen level stands from the next eligible one, in units of 2σ (1 = clearly apart)
    separation = (best["level"] - max(others)) / (2 * sigma * scale) if others else 1.0
    length = min(1.0, len(best["eligible"]) / window)
    evidence |= {"segment": [best["first"], best["last"]], "centre": centre}
    return TechniqueResult(centre, length * float(np.clip(separation, 0.0, 1.0)), evidence)
