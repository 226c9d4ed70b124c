"""Ensemble vote: the techniques' epochs, weighted by confidence, make the group's epoch.

epoch = the weighted median of the techniques' epochs (weight = technique weight × confidence),
snapped to the nearest eligible epoch. A median, not a mean: two techniques that disagree (say 20
and 50) must not produce an epoch neither chose (35).

confidence = Σ w_t · c_t · a_t / Σ w_t, where a_t is how close technique t landed: 1 within one
checkpoint of the vote, falling linearly to 0 at `agreement_epochs` away. It is high only when
confident techniques agree; a technique with no opinion (epoch None) counts with c_t = 0, so silence
lowers it too. Below `thresholds.voting_confidence` the group is flagged for review in the report.
"""

from __future__ import annotations

import numpy as np

from redheart.analysis.common import TechniqueResult, nearest


def weighted_median(epochs: list[int], weights: list[float]) -> float:
    """The smallest epoch at which the cumulative weight reaches half of the total."""
    order = np.argsort(epochs, kind="stable")
    e, w = np.asarray(epochs, float)[order], np.asarray(weights, float)[order]
    cumulative = np.cumsum(w)
    return float(e[np.searchsorted(cumulative, cumulative[-1] / 2.0)])


def agreement(distance: float, step: float, agreement_epochs: float) -> float:
    """1 within `step` epochs (one checkpoint), then linearly down to 0 at `agreement_epochs`."""
    if distance <= step:
        return 1.0
    return float(max(0.0, 1.0 - (distance - step) / max(agreement_epochs - step, 1e-9)))


def vote(results: dict[str, TechniqueResult], weights: dict[str, float], epochs: list[int], eligible: np.ndarray,
         agreement_epochs: float, step: float, fallback: int | None = None) -> TechniqueResult:
    """The group's epoch and overall confidence from each technique's (epoch, confidence)."""
    voters = {t: r for t, r in results.items() if r.epoch is not None and weights.get(t, 1.0) * r.confidence > 0}
    if voters:
        centre = weighted_median([r.epoch for r in voters.values()],
                                 [weights.get(t, 1.0) * r.confidence for t, r in voters.items()])
    else:
        centre = fallback if fallback is not None else epochs[int(np.flatnonzero(eligible)[-1])]
    epoch = nearest(epochs, centre, eligible)
    total = sum(weights.get(t, 1.0) for t in results) or 1.0
    agree = {t: agreement(abs(r.epoch - epoch), step, agreement_epochs) if r.epoch is not None else 0.0
             for t, r in results.items()}
    confidence = sum(weights.get(t, 1.0) * r.confidence * agree[t] for t, r in results.items()) / total
    evidence = {"weighted_median": centre, "voters": sorted(voters),
                "agreement": {t: round(a, 4) for t, a in agree.items()}, "agreement_epochs": agreement_epochs}
    if not voters:
        evidence["reason"] = "no technique had an opinion: fell back to the best MCDA (or last eligible) epoch"
    return TechniqueResult(epoch, confidence, evidence)
