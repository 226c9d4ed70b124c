"""Threshold calibration (docs/design.md): back-solve the five thresholds from accepted sweet spots.

Given epochs a person (or the crossover evaluation) accepted for some groups:
1. plateau_variance, improvement_rate — for every stability_window w in 4..9: the window of w
   checkpoints centred on each accepted epoch is measured exactly as the plateau technique measures
   a window (variance and |Sen slope| per epoch of value / median level); each threshold is the
   largest value over the accepted groups × MARGIN, so every accepted epoch sits in a flat window.
2. stability_window — the w whose thresholds from step 1 make the vote land closest to the accepted
   epochs (mean |vote − accepted|; ties: the Mann-Kendall technique's error, then the w closest to the
   configured one). The configured thresholds compete too: if no back-solved set brings the vote
   closer, the plateau thresholds stay as configured (`plateau_thresholds_from` says which won).
3. mcda_weights — a grid over the simplex (steps of 0.05, plus the configured weights), ranked by the
   vote's mean error when MCDA uses them (MCDA is one voter), then by the total regret
   Σ_g [max_e score_g(e) − score_g(accepted_g)] (0 when every accepted epoch is its group's MCDA best),
   then closeness to the configured weights. So calibration never moves the vote farther from the
   accepted epochs than the configured thresholds do.
4. voting_confidence — with the calibrated values above, each group's vote either agrees with the
   accepted epoch (within one checkpoint) or not; the threshold is the value that best separates the
   two by vote confidence (agreeing ones at or above, the others below; ties: the highest), so
   "needs review" marks the groups where the automatic choice would have been wrong.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from redheart.analysis.common import TechniqueResult, relative
from redheart.analysis.errors import AnalysisError
from redheart.analysis.plateau import window_test
from redheart.analysis.registry import techniques
from redheart.analysis.run_metrics import RunMetrics
from redheart.analysis.settings import CRITERIA, Settings, Thresholds
from redheart.analysis.sweet_spot import find_sweet_spots
from redheart.analysis.vote import vote
from redheart.io import read_json

MARGIN = 1.25          # headroom over the largest accepted window's variance and slope
WINDOWS = range(4, 10)
GRID_STEP = 0.05
ACCEPTED_KEYS = ("recommended", "best_combination", "combination", "sweet_spots")


def load_accepted(path: str | Path, run: RunMetrics) -> dict[str, int]:
    """{group: epoch} from a JSON file: the mapping itself or under one of ACCEPTED_KEYS (so an edited
    module_metrics.json works as is)."""
    path = Path(path)
    node = read_json(path, AnalysisError, f"calibrate={path}")
    if isinstance(node, dict):
        node = next((node[k] for k in ACCEPTED_KEYS if isinstance(node.get(k), dict)), node)
    if not isinstance(node, dict) or not node:
        raise AnalysisError(f"calibrate={path}: expected {{\"<group>\": <epoch>, ...}} (or under one of "
                            f"{list(ACCEPTED_KEYS)})")
    accepted = {}
    for group, epoch in node.items():
        if group not in run.groups:
            raise AnalysisError(f"calibrate={path}: field '{group}' is not a module group of this run "
                                f"({', '.join(run.groups)})")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch not in run.epochs:
            raise AnalysisError(f"calibrate={path}: field '{group}': {epoch!r} is not a checkpoint epoch of this run")
        accepted[group] = epoch
    return accepted


def accepted_windows(run: RunMetrics, settings: Settings, accepted: dict[str, int], window: int) -> dict[str, dict]:
    """The plateau measurements of the window of `window` checkpoints centred on each accepted epoch."""
    out = {}
    for group, epoch in accepted.items():
        values = run.series(settings.groups[group].metric.name)
        rel = relative(values)[0]
        finite = [i for i in range(len(run.epochs)) if np.isfinite(rel[i])]
        if len(finite) < window:
            continue
        at = min(range(len(finite)), key=lambda k: abs(run.epochs[finite[k]] - epoch))
        start = int(np.clip(at - window // 2, 0, len(finite) - window))
        idx = finite[start:start + window]
        test = window_test(rel[idx], np.asarray(run.epochs)[idx], settings.alpha)
        out[group] = {"first": run.epochs[idx[0]], "last": run.epochs[idx[-1]], "variance": test["variance"],
                      "sen_slope": test["sen_slope"], "p": test["p"]}
    return out


def _errors(result: dict[str, Any], accepted: dict[str, int], technique: str = "vote") -> list[float]:
    errors = []
    for group, epoch in accepted.items():
        found = result["groups"][group]["techniques"][technique]["epoch"]
        errors.append(abs(found - epoch) if found is not None else float(max(result["epochs"])))
    return errors


def _technique_errors(result: dict[str, Any], accepted: dict[str, int]) -> dict[str, float]:
    """Mean |technique epoch − accepted epoch| per technique (a technique without an epoch counts the span)."""
    names = next(iter(result["groups"].values()))["techniques"]
    return {t: round(float(np.mean(_errors(result, accepted, t))), 4) for t in names}


def _weight_grid() -> np.ndarray:
    steps = round(1 / GRID_STEP)
    return np.array([[a, b, c, steps - a - b - c] for a, b, c in itertools.product(range(steps + 1), repeat=3)
                     if a + b + c <= steps], dtype=float) / steps


def _mcda_matrix(entry: dict, epochs: list[int], grid: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """(MCDA score per weight row × epoch, −inf where not eligible; the eligible mask), from the stored criteria."""
    series = entry["series"]
    crit = np.array([[np.nan if series.get(f"mcda/{c}", {}).get(str(e)) is None else series[f"mcda/{c}"][str(e)]
                      for e in epochs] for c in CRITERIA])                                # criteria × epochs
    eligible = np.array([series["mcda_score"].get(str(e)) is not None for e in epochs])
    health = np.array([series["health"].get(str(e)) or 0.0 for e in epochs])
    present = np.isfinite(crit)
    weighted = np.einsum("wc,ce->we", grid, np.nan_to_num(crit))
    total = np.einsum("wc,ce->we", grid, present.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(eligible & (total > 0), weighted / total, np.nan) - penalty * (1 - health)
    return np.where(np.isfinite(score), score, -np.inf), eligible


def solve_weights(result: dict[str, Any], accepted: dict[str, int], settings: Settings,
                  step: int) -> tuple[dict[str, float], float, float]:
    """MCDA weights for the accepted epochs: (weights, their MCDA regret, the vote's mean error with them).

    Ranked by the vote's mean |epoch − accepted| (MCDA is one voter: weights that please MCDA but move the
    vote away are worse), then the total regret (see the module docstring), then closeness to the configured
    weights, which are always a candidate — so the vote never ends farther off than with them.
    """
    epochs = result["epochs"]
    current = settings.thresholds.mcda_weights
    configured = np.array([current[c] / sum(current.values()) for c in CRITERIA])
    grid = np.vstack([_weight_grid(), configured])
    regret, vote_error = np.zeros(len(grid)), np.zeros(len(grid))
    for group, epoch in accepted.items():
        entry = result["groups"][group]
        score, eligible = _mcda_matrix(entry, epochs, grid, settings.unhealthy_penalty)
        if eligible[epochs.index(epoch)]:  # else no weights can make MCDA pick it
            regret += score.max(axis=1) - score[:, epochs.index(epoch)]
        best = score.argmax(axis=1)
        near = (score >= score.max(axis=1, keepdims=True) - settings.near_best).sum(axis=1)
        n = int(eligible.sum())
        confidence = 1.0 - (near - 1) / (n - 1) if n > 1 else np.full(len(grid), 0.5)
        others = {t: TechniqueResult(entry["techniques"][t]["epoch"], entry["techniques"][t]["confidence"])
                  for t in techniques() if t != "mcda"}  # MCDA's vote is recomputed per weight row
        cache: dict[tuple[int, float], int] = {}
        for row in range(len(grid)):
            key = (int(best[row]), round(float(confidence[row]), 9))
            if key not in cache:
                mcda = TechniqueResult(epochs[key[0]], key[1])
                cache[key] = vote({**others, "mcda": mcda}, settings.vote_weights, epochs, eligible,
                                  settings.agreement_epochs, step=step).epoch
            vote_error[row] += abs(cache[key] - epoch) / len(accepted)
    distance = np.abs(grid - configured).sum(1)
    chosen = int(np.lexsort((distance, np.round(regret, 9), np.round(vote_error, 9)))[0])
    return ({c: round(float(w), 4) for c, w in zip(CRITERIA, grid[chosen], strict=True)}, float(regret[chosen]),
            float(vote_error[chosen]))


def best_threshold(confidences: list[float], agree: list[bool]) -> float:
    """The voting_confidence that best separates agreeing votes (≥) from the others (<); ties: the highest."""
    candidates = sorted(set(confidences) | {min(1.0, max(confidences) + 1e-4)})
    scores = [sum((c >= t) == a for c, a in zip(confidences, agree, strict=True)) for t in candidates]
    best = max(scores)
    return round(max(t for t, s in zip(candidates, scores, strict=True) if s == best), 4)


def calibrate(run: RunMetrics, settings: Settings, accepted: dict[str, int], source: str = "") -> dict[str, Any]:
    """calibrated_thresholds.json: the five thresholds plus how they were obtained."""
    base = settings.thresholds
    before = find_sweet_spots(run, settings)
    trials = [{"thresholds": base, "result": before, "measured": accepted_windows(run, settings, accepted,
                                                                                  base.stability_window),
               "label": "configured", "key": (float(np.mean(_errors(before, accepted))),
                                              float(np.mean(_errors(before, accepted, "mann_kendall"))), 0)}]
    for window in WINDOWS:
        measured = accepted_windows(run, settings, accepted, window)
        if not measured:
            continue
        variance = max(MARGIN * m["variance"] for m in measured.values())
        slope = max(MARGIN * abs(m["sen_slope"]) for m in measured.values())
        t = Thresholds(max(variance, 1e-9), max(slope, 1e-9), window, base.mcda_weights, base.voting_confidence)
        result = find_sweet_spots(run, settings.with_thresholds(t))
        trials.append({"thresholds": t, "result": result, "measured": measured, "label": str(window),
                       "key": (float(np.mean(_errors(result, accepted))),
                               float(np.mean(_errors(result, accepted, "mann_kendall"))),
                               abs(window - base.stability_window))})
    if len(trials) == 1:
        raise AnalysisError(f"calibration: the run has too few finite checkpoints for a window of {WINDOWS[0]}")
    chosen = min(trials, key=lambda trial: trial["key"])
    weights, regret, _ = solve_weights(chosen["result"], accepted, settings.with_thresholds(chosen["thresholds"]),
                                       run.every_n_epochs)
    t = chosen["thresholds"]
    t = Thresholds(t.plateau_variance, t.improvement_rate, t.stability_window, weights, base.voting_confidence)
    after = find_sweet_spots(run, settings.with_thresholds(t))
    step = run.every_n_epochs
    agree = [abs(after["groups"][g]["recommended_epoch"] - e) <= step for g, e in accepted.items()]
    confidences = [after["groups"][g]["confidence"] for g in accepted]
    t = Thresholds(t.plateau_variance, t.improvement_rate, t.stability_window, weights,
                   best_threshold(confidences, agree))
    final = find_sweet_spots(run, settings.with_thresholds(t))
    per_group = {g: {"accepted": e, "before": before["groups"][g]["recommended_epoch"],
                     "after": final["groups"][g]["recommended_epoch"],
                     "confidence_after": final["groups"][g]["confidence"],
                     "needs_review_after": final["groups"][g]["needs_review"],
                     "accepted_window": chosen["measured"].get(g)} for g, e in accepted.items()}
    return {**{k: (round(v, 8) if isinstance(v, float) else v) for k, v in t.to_json().items()},
            "calibration": {
                "source": source, "run_dir": str(run.run_dir), "accepted": accepted, "margin": MARGIN,
                "mean_abs_error_before": round(float(np.mean(_errors(before, accepted))), 4),
                "mean_abs_error_after": round(float(np.mean(_errors(final, accepted))), 4),
                "technique_errors_before": _technique_errors(before, accepted),
                "technique_errors_after": _technique_errors(final, accepted),
                "mcda_regret": round(regret, 6),
                "windows_tried": {tr["label"]: round(tr["key"][0], 4) for tr in trials},
                "plateau_thresholds_from": chosen["label"],
                "groups": per_group,
                "method": "docs/analysis.md#threshold-calibration"}}
