"""The registry of sweet-spot techniques: one entry each, read by the analysis, the vote, the threshold
calibration, the report and the plots, so adding a technique touches one module and its YAML.

A technique is a function of one module group's inputs (`GroupInputs`) returning a `TechniqueResult`
(an epoch or None, a confidence in [0, 1], the evidence). Its entry also gives the label the report
prints, the marker and colour the vote plot draws, and, when it has settings of its own, the function
that checks its node of conf/analysis (the node named as the technique). docs/analysis.md shows an example.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from redheart.analysis.common import TechniqueResult

if TYPE_CHECKING:
    from redheart.analysis.settings import GroupSpec, Settings


@dataclass(frozen=True)
class GroupInputs:
    """What every technique sees for one module group: series aligned with `epochs` (NaN = non-finite)."""

    epochs: list[int]
    eligible: np.ndarray                # epochs a technique may choose (finite, within the overfitting bound)
    spec: GroupSpec                     # the group's metric, loss and task metrics (conf/analysis groups)
    metric: np.ndarray                  # the validation metric of the group
    loss: np.ndarray                    # the MCDA loss criterion
    tasks: dict[str, np.ndarray]        # task metric reference -> series
    health: dict[str, np.ndarray]       # gradient-health table (redheart.analysis.gradient_health)
    mcda_score: np.ndarray              # MCDA score per epoch
    mcda_criteria: dict[str, np.ndarray]  # the normalised MCDA criteria
    settings: Settings
    options: Any = None                 # the technique's own checked settings (Technique.parse_options)


@dataclass(frozen=True)
class Technique:
    """One sweet-spot technique: what it computes and how the report and the plots show it."""

    name: str                                        # key in module_metrics.json and vote.weights
    run: Callable[[GroupInputs], TechniqueResult]
    label: str                                       # the report's name for it
    marker: str                                      # matplotlib marker of the vote plot
    color: str
    parse_options: Callable[[Mapping[str, Any], str], Any] | None = None  # checks conf/analysis `<name>:`


REGISTRY: dict[str, Technique] = {}


def register(technique: Technique) -> Technique:
    """Add a technique; it votes, and is reported and plotted, after the ones registered before it."""
    if technique.name in REGISTRY or technique.name == "vote":
        raise ValueError(f"a sweet-spot technique named {technique.name!r} is already registered")
    REGISTRY[technique.name] = technique
    return technique


def techniques() -> dict[str, Technique]:
    """Every registered technique, the built-in ones (redheart.analysis.techniques) first."""
    importlib.import_module("redheart.analysis.techniques")  # registers the built-ins once
    return REGISTRY


def label(name: str) -> str:
    """The report's name of a technique (of a result file written with techniques not registered now: its key)."""
    return "vote" if name == "vote" else techniques()[name].label if name in techniques() else name
