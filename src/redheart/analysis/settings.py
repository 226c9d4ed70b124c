"""conf/analysis as checked, typed settings; the calibratable thresholds and their JSON file.

Everything is validated up front, so a typo in the config or the thresholds file stops the run with
the key's name instead of surfacing as a KeyError halfway through the analysis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from redheart.analysis.errors import AnalysisError
from redheart.analysis.registry import techniques
from redheart.io import read_json

CRITERIA = ("loss", "task", "stability", "gradient")
THRESHOLD_KEYS = ("plateau_variance", "improvement_rate", "stability_window", "mcda_weights", "voting_confidence")


@dataclass(frozen=True)
class MetricSpec:
    name: str       # a metric reference (redheart.analysis.run_metrics), wildcards summed
    mode: str       # "min" or "max": which direction is better


@dataclass(frozen=True)
class GroupSpec:
    metric: MetricSpec               # the validation metric: plateau and CUSUM run on it
    loss: str                        # the MCDA loss criterion (a reference; default: the metric)
    task: tuple[MetricSpec, ...]     # task metrics (task technique, MCDA task criterion)
    confusion: bool                  # add the validation confusion-matrix stability, when recorded


@dataclass(frozen=True)
class Thresholds:
    """The five numbers threshold calibration back-solves; see docs/analysis.md for their units."""

    plateau_variance: float     # max variance of value / median level inside a plateau window
    improvement_rate: float     # max |Sen slope| per epoch, relative to the median level, for "flat"
    stability_window: int       # checkpoints per sliding window (plateau, stability, gradient)
    mcda_weights: dict[str, float]
    voting_confidence: float    # below it a group's vote is flagged for review

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Settings:
    groups: dict[str, GroupSpec]
    couplings: dict[str, tuple[str, ...]]   # name -> groups trained together (bounded by overfitting)
    independent: tuple[str, ...]            # groups analysed without the overfitting bound
    thresholds: Thresholds
    alpha: float
    plateau_min_length: int
    cusum_penalty: float
    cusum_resolution: float
    cusum_min_size: int
    cusum_min_noise: float
    task_smoothing: int
    near_best: float
    gradient: dict[str, float]
    unhealthy_penalty: float
    overfit_consecutive: int
    overfit_min_increase: float
    overfit_min_rise_sigma: float
    overfit_smoothing: int
    overfit_sustained: bool
    overfit_val_guard: bool
    agreement_epochs: float
    vote_weights: dict[str, float]
    verify_sha256: bool
    options: dict[str, Any] = field(default_factory=dict)  # registered techniques' own settings, by name

    def coupling_of(self, group: str) -> str | None:
        return next((name for name, members in self.couplings.items() if group in members), None)

    def with_thresholds(self, thresholds: Thresholds) -> Settings:
        return replace(self, thresholds=thresholds)


def _get(node: Mapping, key: str, where: str) -> Any:
    if key not in node:
        raise AnalysisError(f"{where}: key '{key}' is missing")
    return node[key]


def _positive(value: Any, where: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise AnalysisError(f"{where}: expected a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


def _metric(node: Any, where: str) -> MetricSpec:
    if not isinstance(node, Mapping):
        raise AnalysisError(f"{where}: expected {{name: <reference>, mode: min|max}}, got {node!r}")
    name, mode = _get(node, "name", where), _get(node, "mode", where)
    if not isinstance(name, str) or not name:
        raise AnalysisError(f"{where}.name: expected a metric reference, got {name!r}")
    if mode not in ("min", "max"):
        raise AnalysisError(f"{where}.mode: expected 'min' or 'max', got {mode!r}")
    return MetricSpec(name, mode)


def parse_thresholds(node: Mapping, where: str) -> Thresholds:
    unknown = sorted(set(node) - set(THRESHOLD_KEYS) - {"calibration"})
    if unknown:
        raise AnalysisError(f"{where}: unknown key(s) {unknown}; expected {list(THRESHOLD_KEYS)}")
    window = _get(node, "stability_window", where)
    if isinstance(window, bool) or not isinstance(window, int) or window < 3:
        raise AnalysisError(f"{where}.stability_window: expected an integer >= 3, got {window!r}")
    weights = _get(node, "mcda_weights", where)
    if not isinstance(weights, Mapping) or set(weights) != set(CRITERIA):
        raise AnalysisError(f"{where}.mcda_weights: expected exactly the keys {list(CRITERIA)}, got {weights!r}")
    weights = {k: _positive(weights[k], f"{where}.mcda_weights.{k}", allow_zero=True) for k in CRITERIA}
    if sum(weights.values()) <= 0:
        raise AnalysisError(f"{where}.mcda_weights: the weights sum to 0")
    confidence = _positive(_get(node, "voting_confidence", where), f"{where}.voting_confidence", allow_zero=True)
    if confidence > 1:
        raise AnalysisError(f"{where}.voting_confidence: expected a number in [0, 1], got {confidence}")
    return Thresholds(
        plateau_variance=_positive(_get(node, "plateau_variance", where), f"{where}.plateau_variance"),
        improvement_rate=_positive(_get(node, "improvement_rate", where), f"{where}.improvement_rate"),
        stability_window=window, mcda_weights=weights, voting_confidence=confidence)


def load_thresholds(path: str | Path) -> Thresholds:
    """A thresholds JSON file (e.g. calibrated_thresholds.json from `calibrate=`)."""
    path = Path(path)
    node = read_json(path, AnalysisError, f"thresholds={path}")
    if not isinstance(node, dict):
        raise AnalysisError(f"thresholds={path}: expected a JSON object")
    return parse_thresholds(node, str(path))


def parse_settings(cfg: DictConfig | Mapping) -> Settings:
    """conf/analysis (the `analysis` node of conf/analyze.yaml) → Settings."""
    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    where = "conf/analysis"
    groups: dict[str, GroupSpec] = {}
    for group, spec in _get(node, "groups", where).items():
        at = f"{where}: groups.{group}"
        metric = _metric(_get(spec, "metric", at), f"{at}.metric")
        task = tuple(_metric(t, f"{at}.task[{i}]") for i, t in enumerate(spec.get("task") or []))
        groups[group] = GroupSpec(metric, spec.get("loss") or metric.name, task, bool(spec.get("confusion", False)))
    couplings = {name: tuple(members) for name, members in (_get(node, "couplings", where) or {}).items()}
    independent = tuple(_get(node, "independent", where) or [])
    placed = [g for members in couplings.values() for g in members] + list(independent)
    twice = sorted({g for g in placed if placed.count(g) > 1})
    if twice:
        raise AnalysisError(f"{where}: group(s) {twice} appear in more than one of couplings/independent")
    plateau, cusum, gradient = (_get(node, k, where) for k in ("plateau", "cusum", "gradient"))
    vote, overfit = _get(node, "vote", where), _get(node, "overfitting", where)
    voting = _get(vote, "weights", f"{where}: vote")
    known = techniques()
    weights = {t: _positive(voting.get(t, 1.0), f"{where}: vote.weights.{t}", True) for t in known}
    unknown = sorted(set(voting) - set(known))
    if unknown:
        raise AnalysisError(f"{where}: vote.weights has unknown technique(s) {unknown}; known: {list(known)}")
    options = {name: t.parse_options(_get(node, name, where), f"{where}: {name}")
               for name, t in known.items() if t.parse_options is not None}
    consecutive = _get(overfit, "consecutive", f"{where}: overfitting")
    if isinstance(consecutive, bool) or not isinstance(consecutive, int) or consecutive < 2:
        raise AnalysisError(f"{where}: overfitting.consecutive: expected an integer >= 2, got {consecutive!r}")
    return Settings(
        groups=groups, couplings=couplings, independent=independent,
        thresholds=parse_thresholds(_get(node, "thresholds", where), f"{where}: thresholds"),
        alpha=_positive(_get(plateau, "alpha", f"{where}: plateau"), f"{where}: plateau.alpha"),
        plateau_min_length=int(_positive(_get(plateau, "min_length", f"{where}: plateau"),
                                         f"{where}: plateau.min_length")),
        cusum_penalty=_positive(_get(cusum, "penalty", f"{where}: cusum"), f"{where}: cusum.penalty"),
        cusum_resolution=_positive(_get(cusum, "resolution", f"{where}: cusum"), f"{where}: cusum.resolution",
                                   allow_zero=True),
        cusum_min_size=int(_positive(_get(cusum, "min_size", f"{where}: cusum"), f"{where}: cusum.min_size")),
        cusum_min_noise=_positive(_get(cusum, "min_noise", f"{where}: cusum"), f"{where}: cusum.min_noise"),
        task_smoothing=int(_positive(_get(_get(node, "task", where), "smoothing", f"{where}: task"),
                                     f"{where}: task.smoothing")),
        near_best=_positive(_get(node, "near_best", where), f"{where}: near_best", allow_zero=True),
        gradient={k: _positive(_get(gradient, k, f"{where}: gradient"), f"{where}: gradient.{k}", allow_zero=True)
                  for k in ("ratio_band", "spike_ratio", "update_min", "update_max", "dead_max", "dead_rise_max",
                            "min_metric_score")},
        unhealthy_penalty=_positive(_get(_get(node, "mcda", where), "unhealthy_penalty", f"{where}: mcda"),
                                    f"{where}: mcda.unhealthy_penalty", allow_zero=True),
        overfit_consecutive=consecutive,
        overfit_min_increase=_positive(_get(overfit, "min_increase", f"{where}: overfitting"),
                                       f"{where}: overfitting.min_increase", allow_zero=True),
        overfit_min_rise_sigma=_positive(_get(overfit, "min_rise_sigma", f"{where}: overfitting"),
                                         f"{where}: overfitting.min_rise_sigma", allow_zero=True),
        overfit_smoothing=int(_positive(_get(overfit, "smoothing", f"{where}: overfitting"),
                                        f"{where}: overfitting.smoothing")),
        overfit_sustained=bool(_get(overfit, "sustained", f"{where}: overfitting")),
        overfit_val_guard=bool(_get(overfit, "val_guard", f"{where}: overfitting")),
        agreement_epochs=_positive(_get(vote, "agreement_epochs", f"{where}: vote"), f"{where}: vote.agreement_epochs"),
        vote_weights=weights, verify_sha256=bool(node.get("verify_sha256", True)), options=options)


# groups only some runs have (the fine-tuned encoder): their config entry is unused without a note otherwise
OPTIONAL_GROUPS = frozenset({"encoder"})


def check_groups(settings: Settings, groups: Mapping[str, Any], manifest: Path) -> list[str]:
    """Every group of the run needs a config entry and a place (coupling or independent).

    Returns notes about config groups the run does not have (they are ignored, and said so).
    """
    missing = [g for g in groups if g not in settings.groups]
    if missing:
        raise AnalysisError(f"{manifest}: group(s) {missing} have no entry under conf/analysis groups "
                            "(each group needs a validation metric)")
    placed = set(settings.independent).union(*settings.couplings.values())
    unplaced = [g for g in groups if g not in placed]
    if unplaced:
        raise AnalysisError(f"{manifest}: group(s) {unplaced} are in neither conf/analysis couplings nor independent")
    extra = sorted(set(settings.groups) - set(groups) - OPTIONAL_GROUPS)
    return [f"conf/analysis groups {extra} are not groups of this run: ignored"] if extra else []
