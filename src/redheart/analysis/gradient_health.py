"""Gradient-flow health of a group per checkpoint, from the callbacks' per-group statistics.

Four checks per epoch (thresholds under `gradient:` in conf/analysis):
- gradient-norm ratio: the group's mean gradient norm / the median over all groups at that epoch.
  Groups differ in scale by design, so the check is against the group's own typical ratio:
  |log10(ratio / its median over epochs)| ≤ log10(ratio_band). Leaving the band means the group's
  gradients vanished or exploded relative to the rest of the model.
- spikes: grad_norm_max / grad_norm_mean over the interval ≤ spike_ratio.
- update/parameter ratio ‖θ_E − θ_prev‖ / ‖θ_prev‖ in [update_min, update_max]: frozen or thrashing.
- dead units: fraction ≤ dead_max, and no rise of more than dead_rise_max over its lowest so far.
health = share of checks passed; an epoch is unhealthy when any fails (MCDA penalises it, the
technique below never picks it).

"Calm" ranks the healthy epochs: a low update/parameter ratio (log scale, min–max scored) means the
weights have settled — the end of a cosine cycle, where snapshot ensembles take their members. (The
gradient norm's coefficient of variation over `stability_window` checkpoints is reported too, but not
scored: min–max scoring would stretch its noise over the whole 0–1 range.) The technique's epoch is
the calmest healthy eligible epoch among the competitive ones: those whose validation metric scores at
least `min_metric_score` (min–max over the eligible epochs, 1 = best). Calm alone would also praise
the quiet end of an early learning-rate cycle, long before the model is good.
"""

from __future__ import annotations

import numpy as np

from redheart.analysis.common import TechniqueResult, argbest, minmax_score, peak_confidence, rolling
from redheart.analysis.run_metrics import RunMetrics

CHECKS = ("grad_ratio", "spike", "update", "dead_units")


def _stat(run: RunMetrics, group: str, key: str) -> np.ndarray:
    return run.values[f"groups/{group}/{key}"]


def health_table(run: RunMetrics, group: str, limits: dict[str, float], window: int) -> dict[str, np.ndarray]:
    """Per-epoch arrays: the raw indicators, each check (1 pass / 0 fail / NaN unknown), health, calm."""
    mean, peak = _stat(run, group, "grad_norm_mean"), _stat(run, group, "grad_norm_max")
    update, dead = _stat(run, group, "update_ratio"), _stat(run, group, "dead_unit_fraction")
    with np.errstate(all="ignore"):
        everyone = np.vstack([_stat(run, g, "grad_norm_mean") for g in run.groups])
        median = np.array([np.median(c[np.isfinite(c)]) if np.isfinite(c).any() else np.nan for c in everyone.T])
        ratio = mean / median
        usual = np.nanmedian(np.where(ratio > 0, ratio, np.nan)) if np.isfinite(ratio).any() else np.nan
        deviation = np.abs(np.log10(np.where(ratio > 0, ratio, np.nan) / usual))
        deviation = np.where(ratio == 0, np.inf, deviation)  # a zero gradient is as far out as it gets
        lowest = np.fmin.accumulate(np.where(np.isfinite(dead), dead, np.inf))
        checks = {
            "grad_ratio": deviation <= np.log10(limits["ratio_band"]),
            "spike": peak / mean <= limits["spike_ratio"],
            "update": (update >= limits["update_min"]) & (update <= limits["update_max"]),
            "dead_units": (dead <= limits["dead_max"]) & (dead - lowest <= limits["dead_rise_max"]),
        }
        inputs = {"grad_ratio": ratio, "spike": peak / mean, "update": update, "dead_units": dead}
        known = {k: np.isfinite(v) for k, v in inputs.items()}
        known["grad_ratio"] |= ratio == 0
        passed = {k: np.where(known[k], checks[k].astype(float), np.nan) for k in checks}
        health = np.mean(np.vstack(list(passed.values())), axis=0)
        cv = rolling(mean, window, lambda s: float(np.std(s) / np.mean(s)) if np.mean(s) > 0 else np.nan)
        log_update = np.log10(np.maximum(update, 1e-12))
    return {"grad_norm_ratio": ratio, "grad_norm_cv": cv, "log10_update_ratio": log_update,
            "health": health, **{f"check_{k}": v for k, v in passed.items()}}


def calm_score(table: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Min–max score of a low log update/parameter ratio over the epochs in `mask` (1 = calmest)."""
    return minmax_score(table["log10_update_ratio"], "min", mask)


def gradient_technique(epochs: list[int], table: dict[str, np.ndarray], eligible: np.ndarray, near: float,
                       competitive: np.ndarray | None = None) -> TechniqueResult:
    """The calmest healthy competitive eligible epoch; confidence × the share of healthy eligible epochs."""
    healthy = eligible & (table["health"] == 1.0)
    unhealthy = [e for e, ok, h in zip(epochs, eligible, table["health"], strict=True) if ok and h < 1.0]
    evidence = {"unhealthy_epochs": unhealthy,
                "failed_checks": {str(e): [c for c in CHECKS if table[f"check_{c}"][i] == 0.0]
                                  for i, e in enumerate(epochs) if e in unhealthy}}
    share = float(healthy.sum() / max(1, eligible.sum()))
    if competitive is not None:
        healthy = healthy & competitive
    if not healthy.any():
        evidence["reason"] = "no (competitive) eligible epoch passes every gradient-health check"
        return TechniqueResult(None, 0.0, evidence)
    calm = calm_score(table, healthy)
    best = argbest(calm)
    evidence |= {"healthy_share": round(share, 4), "calm": round(float(calm[best]), 4),
                 "update_ratio": float(10 ** table["log10_update_ratio"][best]),
                 "grad_norm_cv": _num(table["grad_norm_cv"][best])}
    return TechniqueResult(epochs[best], peak_confidence(calm, best, near) * share, evidence)


def _num(x: float) -> float | None:
    return round(float(x), 6) if np.isfinite(x) else None
