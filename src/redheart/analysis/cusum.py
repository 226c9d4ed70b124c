"""CUSUM change points of a validation curve, and the best-level segment between them.

Hand-written on purpose: none of the installed libraries ships a CUSUM change-point test (ruptures
has binary segmentation with an L2 cost, which tests/test_analysis_techniques.py uses to cross-check
this code; it has no noise-scaled significance threshold).

For a segment x_1..x_n with mean x̄, the CUSUM is S_k = Σ_{i≤k} (x_i − x̄). Its standardised form

    T_k = |S_k| / sqrt(k (n − k) / n)

is the likelihood-ratio statistic of "one mean shift after k" under Gaussian noise: T_k² is exactly
the drop of the sum of squared errors when the segment is split at k (the L2 cost ruptures uses), so
argmax_k T_k is the L2-optimal single split. The split is kept when max T_k > threshold × σ, σ being
the noise level estimated from second differences (1.4826 · MAD(Δ²x) / √6: blind to linear trends
and robust to the few kinks and shifts), floored at `min_noise` (relative units) so a noise-free EMA
curve is not cut at every bend.
Binary segmentation repeats this inside each part until no split passes or parts would be shorter
than `min_size` checkpoints.
"""

from __future__ import annotations

import numpy as np

from redheart.analysis.common import TechniqueResult, nearest, oriented, relative


def cusum_statistic(x: np.ndarray) -> np.ndarray:
    """T_k for k = 1..n−1 (index k−1): the standardised CUSUM of a split after the k-th value."""
    n = len(x)
    k = np.arange(1, n)
    s = np.cumsum(x - x.mean())[:-1]
    return np.abs(s) / np.sqrt(k * (n - k) / n)


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


def change_points(x: np.ndarray, threshold: float, min_size: int, sigma: float) -> list[int]:
    """Breakpoints as ruptures returns them: the end index (exclusive) of each segment, n last."""
    found: list[int] = []

    def split(a: int, b: int) -> None:
        if b - a < 2 * min_size:
            return
        stat = cusum_statistic(x[a:b])
        ks = np.arange(min_size, b - a - min_size + 1)  # split after k values: both parts ≥ min_size
        k = int(ks[np.argmax(stat[ks - 1])])
        if stat[k - 1] <= threshold * sigma:
            return
        found.append(a + k)
        split(a, a + k)
        split(a + k, b)

    split(0, len(x))
    return sorted(found) + [len(x)]


def cusum_technique(epochs: list[int], values: np.ndarray, mode: str, eligible: np.ndarray, threshold: float,
                    min_size: int, min_noise: float, window: int) -> TechniqueResult:
    """The centre of the best-level segment between CUSUM change points (eligible epochs only)."""
    finite = np.flatnonzero(np.isfinite(values))
    rel, scale = relative(values)
    x = rel[finite]
    if len(x) < 2 * min_size:
        return TechniqueResult(None, 0.0, {"reason": f"fewer than {2 * min_size} finite checkpoints"})
    sigma = noise_level(x, min_noise)
    ends = change_points(x, threshold, min_size, sigma)
    fe = [epochs[i] for i in finite]
    segments, start = [], 0
    for end in ends:
        idx = finite[start:end]
        level = float(np.mean(oriented(values[idx], mode)))
        segments.append({"first": fe[start], "last": fe[end - 1], "mean": float(np.mean(values[idx])),
                         "level": level, "eligible": [epochs[i] for i in idx if eligible[i]]})
        start = end
    evidence = {"change_points": [fe[e] for e in ends[:-1]], "noise_sigma": round(sigma, 6),
                "threshold": threshold, "segments": [{k: v for k, v in s.items() if k != "level"} for s in segments]}
    if len(segments) == 1:
        evidence["reason"] = "no change point: the curve is one level, CUSUM cannot place an epoch"
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
