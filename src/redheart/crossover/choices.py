"""Which checkpoint epoch each module group takes, and the epochs around it.

Sources, in order: an explicit `crossover.<group>=<epoch>` override, else the analysis'
`recommended[<group>]` (module_metrics.json, docs/analysis.md). The analysis also gives each group's
plateau (the greedy crossover's candidates) and its excluded epochs (non-finite metrics: never used).
Without an analysis, a group's plateau is its chosen epoch ± `plateau_window` epochs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from redheart.crossover.checkpoints import RunCheckpoints
from redheart.crossover.errors import CrossoverError

WEIGHT_CHOICES = ("raw", "ema", "auto")
RESERVED_KEYS = frozenset({"weights", "output"})  # crossover config keys that are not module groups


def load_analysis(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        analysis = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CrossoverError(f"{path}: analysis file not found; run analyze.py first or give every group's "
                             "epoch (crossover.<group>=<epoch>)") from None
    except json.JSONDecodeError as err:
        raise CrossoverError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    analysis.setdefault("_source", str(path))
    return analysis


def validate_analysis(analysis: Mapping[str, Any], checkpoints: RunCheckpoints) -> None:
    """The fields the crossover reads, checked against this run's manifest (file and field named)."""
    where = analysis.get("_source", "module_metrics.json") if isinstance(analysis, Mapping) else "analysis"
    if not isinstance(analysis, Mapping):
        raise CrossoverError(f"{where}: expected a JSON object")
    recommended, groups = analysis.get("recommended"), analysis.get("groups")
    if not isinstance(recommended, Mapping):
        raise CrossoverError(f"{where}: field 'recommended' must be an object of group -> epoch")
    if not isinstance(groups, Mapping):
        raise CrossoverError(f"{where}: field 'groups' must be an object of group -> details")
    epochs = set(checkpoints.epochs)
    for group, epoch in recommended.items():
        if group not in checkpoints.groups:
            raise CrossoverError(f"{where}: field 'recommended.{group}': not a module group of "
                                 f"{checkpoints.manifest_path} (groups: {list(checkpoints.groups)})")
        if epoch is not None and epoch not in epochs:
            raise CrossoverError(f"{where}: field 'recommended.{group}' is {epoch!r}, not a checkpoint epoch "
                                 f"of this run ({checkpoints.epochs})")
    for group, details in groups.items():
        if group not in checkpoints.groups:
            continue  # extra analysis detail for a group this run does not have: unused, not an error
        if not isinstance(details, Mapping):
            raise CrossoverError(f"{where}: field 'groups.{group}' must be an object")
        plateau = details.get("plateau")
        if plateau is not None and not (isinstance(plateau, list | tuple) and len(plateau) == 2
                                        and all(isinstance(e, int) for e in plateau) and plateau[0] <= plateau[1]):
            raise CrossoverError(f"{where}: field 'groups.{group}.plateau' must be [first, last] epochs, "
                                 f"got {plateau!r}")
        excluded = details.get("excluded_epochs", [])
        if not isinstance(excluded, list | tuple):
            raise CrossoverError(f"{where}: field 'groups.{group}.excluded_epochs' must be a list")


def resolve_weights(weights: str, checkpoints: RunCheckpoints) -> str:
    """`auto`: the weights the run validated with (EMA when every checkpoint has them), else raw."""
    if weights not in WEIGHT_CHOICES:
        raise CrossoverError(f"crossover.weights must be one of {WEIGHT_CHOICES}, got {weights!r}")
    has_ema = all(checkpoints.ema.values())
    if weights == "auto":
        return "ema" if has_ema else "raw"
    if weights == "raw" and not all(checkpoints.raw.values()):
        missing = [e for e, raw in checkpoints.raw.items() if not raw]
        raise CrossoverError(f"crossover.weights=raw, but the checkpoints of epochs {missing} hold only the evaluated "
                             f"(EMA) weights ({checkpoints.manifest_path}); train with "
                             "callbacks.modular_checkpoint.weights=both to keep the raw ones too")
    if weights == "ema" and not has_ema:
        missing = [e for e, ema in checkpoints.ema.items() if not ema]
        raise CrossoverError(f"crossover.weights=ema, but the checkpoints of epochs {missing} hold no EMA weights "
                             f"({checkpoints.manifest_path})")
    return weights


def resolve_choices(crossover_cfg: Mapping[str, Any], analysis: Mapping[str, Any] | None,
                    checkpoints: RunCheckpoints) -> tuple[dict[str, int], dict[str, str]]:
    """{group: epoch} and {group: "explicit" | "analysis"} for every group of the manifest."""
    unknown = [k for k, v in crossover_cfg.items()
               if k not in RESERVED_KEYS and k not in checkpoints.groups and v is not None]
    if unknown:
        raise CrossoverError(f"crossover.{unknown[0]}: not a module group of {checkpoints.manifest_path} "
                             f"(groups: {list(checkpoints.groups)}; unknown keys: {unknown})")
    choices, sources = {}, {}
    for group in checkpoints.groups:
        epoch = crossover_cfg.get(group)
        if epoch is not None:
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch not in checkpoints.epochs:
                raise CrossoverError(f"crossover.{group}={epoch!r}: not a checkpoint epoch of this run "
                                     f"({checkpoints.epochs})")
            choices[group], sources[group] = epoch, "explicit"
            continue
        if analysis is None:
            raise CrossoverError(f"crossover.{group} is null and there is no analysis to take it from: run analyze.py "
                                 f"or give it explicitly (crossover.{group}=<epoch>, epochs {checkpoints.epochs})")
        epoch = analysis["recommended"].get(group)
        if epoch is None:
            raise CrossoverError(f"{analysis.get('_source', 'module_metrics.json')}: field 'recommended.{group}' is "
                                 f"missing; give it explicitly (crossover.{group}=<epoch>)")
        choices[group], sources[group] = int(epoch), "analysis"
    return choices, sources


def usable_epochs(group: str, analysis: Mapping[str, Any] | None, checkpoints: RunCheckpoints) -> list[int]:
    """Checkpoint epochs of the run minus the analysis' excluded ones for this group."""
    excluded = set()
    if analysis is not None:
        excluded = set(analysis.get("groups", {}).get(group, {}).get("excluded_epochs", []) or [])
    return [e for e in checkpoints.epochs if e not in excluded]


def plateau_epochs(group: str, center: int, analysis: Mapping[str, Any] | None, checkpoints: RunCheckpoints,
                   window: int) -> list[int]:
    """The group's plateau (inclusive) from the analysis, else center ± window; usable checkpoint epochs only."""
    plateau = None
    if analysis is not None:
        plateau = analysis.get("groups", {}).get(group, {}).get("plateau")
    first, last = plateau if plateau else (center - window, center + window)
    epochs = [e for e in usable_epochs(group, analysis, checkpoints) if first <= e <= last]
    return epochs or [center]


def shifted(choices: Mapping[str, int], delta: int, analysis: Mapping[str, Any] | None,
            checkpoints: RunCheckpoints) -> dict[str, int]:
    """Every group moved by `delta` epochs (the ±2/±4 variants of docs/design.md), kept on a usable checkpoint epoch.

    The original clamps to [2, 60]; here an epoch off the run's range or without a checkpoint goes to the
    nearest usable checkpoint epoch (ties: the one nearer the original choice).
    """
    out = {}
    for group, epoch in choices.items():
        usable = usable_epochs(group, analysis, checkpoints) or checkpoints.epochs
        target = epoch + delta
        out[group] = min(usable, key=lambda e, t=target, o=epoch: (abs(e - t), abs(e - o)))
    return out


def group_windows(analysis: Mapping[str, Any] | None, checkpoints: RunCheckpoints,
                  tolerance: float) -> dict[str, list[int]] | None:
    """Each group's SWAD-style window from its own validation metric in the analysis (None without one):
    usable epochs up to the group's bound (its own overfitting point), see soups.swad_window."""
    from redheart.crossover.soups import swad_window

    if analysis is None:
        return None
    out = {}
    for group in checkpoints.groups:
        entry = analysis.get("groups", {}).get(group) or {}
        metric = entry.get("metric") or {}
        series = (entry.get("series") or {}).get(metric.get("name"))
        if not series:
            return None
        bound = entry.get("bound")
        usable = [e for e in usable_epochs(group, analysis, checkpoints) if bound is None or e <= bound]
        values = {int(e): v for e, v in series.items()}
        window = swad_window(values, metric.get("mode", "min"), usable, tolerance)
        out[group] = window or [analysis["recommended"][group]]
    return out
