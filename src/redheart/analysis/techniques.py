"""The built-in sweet-spot techniques, registered in the order they vote (docs/analysis.md)."""

from __future__ import annotations

from redheart.analysis.common import TechniqueResult, minmax_score
from redheart.analysis.cusum import cusum_technique
from redheart.analysis.gradient_health import gradient_technique
from redheart.analysis.mcda import mcda_technique
from redheart.analysis.plateau import plateau_technique
from redheart.analysis.registry import GroupInputs, Technique, register
from redheart.analysis.task_metrics import task_technique


def _mann_kendall(x: GroupInputs) -> TechniqueResult:
    s = x.settings
    return plateau_technique(x.epochs, x.metric, x.spec.metric.mode, x.eligible, s.thresholds, s.alpha,
                             s.plateau_min_length)


def _cusum(x: GroupInputs) -> TechniqueResult:
    s = x.settings
    return cusum_technique(x.epochs, x.metric, x.spec.metric.mode, x.eligible, s.cusum_penalty, s.cusum_min_size,
                           s.cusum_min_noise, s.thresholds.stability_window, s.cusum_resolution)


def _task(x: GroupInputs) -> TechniqueResult:
    return task_technique(x.epochs, x.tasks, x.spec.task, x.eligible, x.settings.task_smoothing, x.settings.near_best)


def _mcda(x: GroupInputs) -> TechniqueResult:
    return mcda_technique(x.epochs, x.mcda_score, x.mcda_criteria, x.settings.thresholds.mcda_weights,
                          x.settings.near_best)


def _gradient(x: GroupInputs) -> TechniqueResult:
    competitive = minmax_score(x.metric, x.spec.metric.mode, x.eligible) >= x.settings.gradient["min_metric_score"]
    return gradient_technique(x.epochs, x.health, x.eligible, x.settings.near_best, competitive=competitive)


register(Technique("mann_kendall", _mann_kendall, "Mann-Kendall plateau", "o", "tab:blue"))
register(Technique("cusum", _cusum, "change-point segment", "s", "tab:orange"))
register(Technique("task", _task, "task metrics", "^", "tab:green"))
register(Technique("mcda", _mcda, "MCDA", "D", "tab:purple"))
register(Technique("gradient", _gradient, "gradient health", "v", "tab:brown"))
