"""The analysis proper (no file I/O): every technique on every group, the bound, the vote.

`find_sweet_spots(run, settings)` returns the content of module_metrics.json (docs/analysis.md lists its keys;
the crossover reads `recommended`, `groups.<g>.plateau` and `candidates`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from redheart.analysis.common import TechniqueResult
from redheart.analysis.errors import AnalysisError
from redheart.analysis.gradient_health import CHECKS, calm_score, health_table
from redheart.analysis.mcda import mcda_scores, stability_criterion
from redheart.analysis.overfitting import group_overfitting_point, overfitting_point
from redheart.analysis.registry import GroupInputs
from redheart.analysis.registry import techniques as registered_techniques
from redheart.analysis.run_metrics import GROUP_STATS, TOP_LEVEL, RunMetrics
from redheart.analysis.settings import Settings, check_groups
from redheart.analysis.task_metrics import confusion_stability, task_score, task_series
from redheart.analysis.vote import vote
from redheart.run_folder import MANIFEST

FORMAT = "redheart-analysis-v1"


def plain(obj: Any) -> Any:
    """numpy scalars and tuples turned into JSON's types, recursively."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _json_series(epochs: list[int], values: np.ndarray) -> dict[str, float | None]:
    return {str(e): (float(v) if math.isfinite(v) else None) for e, v in zip(epochs, values, strict=True)}


def _non_finite(epochs: list[int], named: dict[str, np.ndarray]) -> dict[int, list[str]]:
    """epoch -> the names of its non-finite (missing, null, NaN, inf) values among `named`."""
    bad: dict[int, list[str]] = {}
    for name, values in named.items():
        for e, v in zip(epochs, values, strict=True):
            if not math.isfinite(v):
                bad.setdefault(e, []).append(name)
    return dict(sorted(bad.items()))


def _plateau_range(epochs: list[int], techniques: dict[str, TechniqueResult], epoch: int, eligible: np.ndarray,
                   window: int) -> tuple[list[int], str]:
    """The plateau to report: Mann-Kendall's, else CUSUM's best segment, else a window around `epoch`."""
    for name in ("mann_kendall", "cusum"):
        found = techniques[name].evidence.get("plateau" if name == "mann_kendall" else "segment")
        if techniques[name].epoch is not None and found:
            inside = [e for e, ok in zip(epochs, eligible, strict=True) if ok and found[0] <= e <= found[1]]
            if inside:
                return [inside[0], inside[-1]], name
    allowed = [e for e, ok in zip(epochs, eligible, strict=True) if ok]
    i = allowed.index(epoch)
    part = allowed[max(0, i - window // 2): i + window // 2 + 1]
    return [part[0], part[-1]], "fallback"


def own_overfitting(run: RunMetrics, group: str, settings: Settings) -> tuple[int | None, dict]:
    """The group's own overfitting point (redheart.analysis.overfitting.group_overfitting_point)."""
    spec = settings.groups[group]
    for key, ref in (("metric.name", spec.metric.name), ("loss", spec.loss)):
        if not run.expand(ref):
            raise AnalysisError(f"conf/analysis: groups.{group}.{key} {ref!r} matches no metric of the run in "
                                f"{run.modular_dir}")
    return group_overfitting_point(run.epochs, run.series(spec.metric.name), spec.metric.mode,
                                   settings.overfit_consecutive, settings.overfit_min_rise_sigma,
                                   settings.overfit_smoothing, settings.overfit_sustained, settings.cusum_min_noise)


def group_bounds(run: RunMetrics, settings: Settings) -> tuple[dict[str, int | None], dict[str, dict]]:
    """Per group, the epoch it may not be recommended after, and each group's own overfitting evidence.

    A group is bounded by its own overfitting point; the members of a configured coupling share the
    earliest of their own points (conf/analysis `couplings`: only where the data flow makes one group's
    overfitting another's, docs/analysis.md).
    """
    own = {g: own_overfitting(run, g, settings) for g in run.groups}
    bounds = {g: own[g][0] for g in run.groups}
    for members in settings.couplings.values():
        points = [own[g][0] for g in members if g in own and own[g][0] is not None]
        for g in members:
            if g in bounds and points:
                bounds[g] = min(points)
    return bounds, {g: {"epoch": e, **evidence} for g, (e, evidence) in own.items()}


def group_sweet_spot(run: RunMetrics, group: str, settings: Settings, bound: int | None,
                     own: dict | None = None) -> dict[str, Any]:
    spec, epochs, t = settings.groups[group], run.epochs, settings.thresholds
    for key, ref in (("metric.name", spec.metric.name), ("loss", spec.loss)):
        if not run.expand(ref):
            raise AnalysisError(f"conf/analysis: groups.{group}.{key} {ref!r} matches no metric of the run in "
                                f"{run.modular_dir}")
    metric, loss = run.series(spec.metric.name), run.series(spec.loss)
    tasks, notes = task_series(run, spec.task)
    health = health_table(run, group, settings.gradient, t.stability_window)
    checked = {spec.metric.name: metric, spec.loss: loss, **tasks,
               **{k: run.values[k] for k in TOP_LEVEL},
               **{f"groups/{group}/{k}": run.values[f"groups/{group}/{k}"] for k in GROUP_STATS}}
    reasons = _non_finite(epochs, checked)
    for e in run.after_nan_event():  # saved at or after a non-finite training loss (callbacks/nan_guard.py)
        reasons.setdefault(e, []).append(f"nan_event.json: non-finite training loss at step {run.nan_event['step']}")
    reasons = dict(sorted(reasons.items()))
    finite = np.array([e not in reasons for e in epochs])
    if not finite.any():
        first = next(iter(reasons.items()))
        raise AnalysisError(f"{run.modular_dir}: group {group}: every checkpoint has a non-finite metric "
                            f"(epoch {first[0]}: {', '.join(first[1])}); nothing can be recommended")
    coupling = settings.coupling_of(group)
    eligible = finite & (np.array(epochs) <= bound) if bound is not None else finite
    if not eligible.any():
        notes.append(f"every finite epoch is after the overfitting point {bound}: the bound is not applied")
        bound, eligible = None, finite

    confusion = confusion_stability(epochs, run.confusion) if spec.confusion and run.confusion else None
    raw = {"loss": loss, "stability": stability_criterion(metric, t.stability_window, confusion),
           "gradient": calm_score(health, eligible)}
    if tasks:
        raw["task"] = task_score(tasks, spec.task, eligible)
    modes = {"loss": "min", "task": "max", "stability": "max", "gradient": "max"}
    score, normalised = mcda_scores(raw, modes, t.mcda_weights, health["health"], settings.unhealthy_penalty, eligible)
    inputs = GroupInputs(epochs, eligible, spec, metric, loss, tasks, health, score, normalised, settings)
    techniques: dict[str, TechniqueResult] = {
        name: technique.run(replace(inputs, options=settings.options.get(name)))
        for name, technique in registered_techniques().items()}
    techniques["vote"] = vote(dict(techniques), settings.vote_weights, epochs, eligible, settings.agreement_epochs,
                              step=run.every_n_epochs, fallback=techniques["mcda"].epoch)
    epoch, confidence = techniques["vote"].epoch, round(float(techniques["vote"].confidence), 4)
    plateau, source = _plateau_range(epochs, techniques, epoch, eligible, t.stability_window)
    inside = {e for e, ok in zip(epochs, eligible, strict=True) if ok and plateau[0] <= e <= plateau[1]}
    candidates = sorted(inside | {epoch})

    series = {spec.metric.name: metric, **({spec.loss: loss} if spec.loss != spec.metric.name else {}), **tasks}
    for prefix in run.groups[group]:
        for ref in run.expand(f"modules/{prefix}/*") + run.expand(f"val/loss/module/{prefix}"):
            series.setdefault(ref, run.values[ref])
    series |= {f"groups/{group}/{k}": run.values[f"groups/{group}/{k}"] for k in GROUP_STATS}
    series |= {"health": health["health"], "grad_norm_ratio": health["grad_norm_ratio"],
               **{f"health/{c}": health[f"check_{c}"] for c in CHECKS},
               "mcda_score": score, **{f"mcda/{c}": v for c, v in normalised.items()}}
    if confusion is not None:
        series["confusion_stability"] = confusion
    return {
        "recommended_epoch": int(epoch), "confidence": confidence,
        "needs_review": bool(confidence < t.voting_confidence),
        "plateau": plateau, "plateau_source": source, "candidates": candidates,
        "excluded_epochs": list(reasons), "excluded_reasons": {str(e): r for e, r in reasons.items()},
        "metric": {"name": spec.metric.name, "mode": spec.metric.mode},
        "loss": spec.loss, "task_metrics": [{"name": s.name, "mode": s.mode} for s in spec.task],
        "modules": run.groups[group], "coupling": coupling,
        "coupled_with": [g for g in settings.couplings.get(coupling, ()) if g != group and g in run.groups],
        "bound": bound, "own_overfitting_epoch": (own or {}).get("epoch"), "overfitting": own, "notes": notes,
        "techniques": {k: r.to_json() for k, r in techniques.items()},
        "series": {name: _json_series(epochs, v) for name, v in series.items()},
    }


def find_sweet_spots(run: RunMetrics, settings: Settings) -> dict[str, Any]:
    """module_metrics.json for `run` (every group of its manifest)."""
    warnings = list(run.warnings) + check_groups(settings, run.groups, run.modular_dir / MANIFEST)
    overfit, evidence = overfitting_point(run.epochs, run.values["train_loss"], run.values["val_loss"],
                                          settings.overfit_consecutive, settings.overfit_min_increase,
                                          settings.overfit_min_rise_sigma, settings.overfit_smoothing,
                                          settings.overfit_sustained, settings.overfit_val_guard)
    bounds, own = group_bounds(run, settings)
    groups = {g: group_sweet_spot(run, g, settings, bounds[g], own[g]) for g in run.groups}
    for g, entry in groups.items():
        warnings += [f"group {g}: {n}" for n in entry["notes"]]
    run_series = {name: _json_series(run.epochs, v) for name, v in run.values.items()
                  if name in TOP_LEVEL or name.startswith("val/")}
    run_series["gap"] = _json_series(run.epochs, run.values["val_loss"] - run.values["train_loss"])
    return plain({
        "format": FORMAT, "run_dir": str(run.run_dir), "modular_dir": str(run.modular_dir),
        "epochs": run.epochs, "every_n_epochs": run.every_n_epochs,
        "weights_evaluated": "ema" if run.ema else "raw",
        "overfitting_epoch": overfit, "overfitting": evidence,
        "group_overfitting_epochs": {g: own[g]["epoch"] for g in run.groups},
        "recommended": {g: e["recommended_epoch"] for g, e in groups.items()},
        "couplings": {k: list(v) for k, v in settings.couplings.items()},
        "independent": list(settings.independent),
        "thresholds": settings.thresholds.to_json(),
        "groups": groups, "run_series": run_series, "warnings": warnings,
    })


def check_recommendations(result: dict[str, Any]) -> None:
    """The contract with the crossover: every recommended epoch is a checkpoint with finite metrics."""
    for group, entry in result["groups"].items():
        epoch = entry["recommended_epoch"]
        if epoch not in result["epochs"] or epoch in entry["excluded_epochs"]:
            raise AssertionError(f"group {group}: recommended epoch {epoch} is not an eligible checkpoint")
