"""A training run as the analysis sees it: `modular/manifest.json` and its `metrics_epoch_*.json`.

Nothing else is read: the weight files the manifest lists are never opened, so the analysis of a
730M run costs what the analysis of a tiny one costs. Every field the analysis relies on is checked
on load and a problem is an `AnalysisError` naming the file and the field; a value that is null,
NaN or infinite is kept as NaN ("non-finite"), so the epoch can be excluded from recommendations.

Metric references (used by conf/analysis) name one number of a metrics file:
    train_loss, val_loss                top-level losses
    val/<key>                           e.g. val/emotion/f1, val/loss/module/heads.emotion
    modules/<prefix>/<metric>           e.g. modules/heads.emotion/emotion_f1
    groups/<group>/<stat>               e.g. groups/backbone/grad_norm_mean
and may hold shell-style wildcards (`val/loss/module/heads.*`), expanded over the run's names.

`<run>/nan_event.json` (callbacks/nan_guard.py: the step, epoch and cause of a non-finite training
loss) is read too: checkpoints of that epoch and later are never recommended.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from redheart.analysis.errors import AnalysisError
from redheart.run_folder import MANIFEST, METRICS_GLOB, NAN_EVENT, read_manifest, resolve_run_dir

TOP_LEVEL = ("train_loss", "val_loss")
GROUP_STATS = ("grad_norm_mean", "grad_norm_max", "update_ratio", "param_norm", "dead_unit_fraction")


def _number(value: Any, where: str) -> float:
    """A metric value: a number, or null/NaN/inf (kept as NaN: non-finite). Anything else is an error."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnalysisError(f"{where}: expected a number or null, got {type(value).__name__} {value!r}")
    return float(value) if math.isfinite(value) else math.nan


def _read_json(path: Path) -> tuple[Any, bytes]:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise AnalysisError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return json.loads(data.decode("utf-8")), data
    except UnicodeDecodeError:
        raise AnalysisError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise AnalysisError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise AnalysisError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


@dataclass
class RunMetrics:
    """One run's checkpoint epochs and their metrics, as plain floats (NaN = non-finite)."""

    run_dir: Path
    modular_dir: Path
    every_n_epochs: int
    groups: dict[str, list[str]]           # group -> module prefixes (manifest["groups"])
    epochs: list[int]                      # checkpoint epochs of the manifest, ascending
    values: dict[str, np.ndarray]          # reference -> one float per epoch (NaN where absent/non-finite)
    confusion: dict[int, np.ndarray] = field(default_factory=dict)  # epoch -> val confusion matrix, if recorded
    ema: bool = False                      # validation metrics measured with EMA weights
    warnings: list[str] = field(default_factory=list)
    nan_event: dict[str, Any] | None = None  # nan_event.json: training met a non-finite loss in this epoch

    def after_nan_event(self) -> list[int]:
        """Checkpoint epochs at or after the epoch of a non-finite training loss (never recommended)."""
        return [e for e in self.epochs if e >= self.nan_event["epoch"]] if self.nan_event else []

    def expand(self, pattern: str) -> list[str]:
        """The run's references matching `pattern` (itself when it has no wildcard and exists)."""
        if pattern in self.values:
            return [pattern]
        return sorted(fnmatch.filter(self.values, pattern)) if any(c in pattern for c in "*?[") else []

    def series(self, pattern: str) -> np.ndarray:
        """One value per epoch: the reference, or the sum of the references a wildcard matches.

        A sum is NaN at an epoch where any of its parts is missing or non-finite.
        """
        refs = self.expand(pattern)
        if not refs:
            return np.full(len(self.epochs), np.nan)
        return np.sum([self.values[r] for r in refs], axis=0)


def _flatten(record: dict, where: str, groups: dict[str, list[str]]) -> dict[str, float]:
    """Every number of one metrics file under its reference name; checks the fields the analysis reads."""
    out: dict[str, float] = {}
    for key in (*TOP_LEVEL, "val", "modules", "groups"):
        if key not in record:
            raise AnalysisError(f"{where}: field '{key}' is missing")
    for key in TOP_LEVEL:
        out[key] = _number(record[key], f"{where}: field '{key}'")
    for key, value in _object(record["val"], f"{where}: field 'val'").items():
        out[f"val/{key}"] = _number(value, f"{where}: field 'val.{key}'")
    for prefix, metrics in _object(record["modules"], f"{where}: field 'modules'").items():
        for key, value in _object(metrics, f"{where}: field 'modules.{prefix}'").items():
            out[f"modules/{prefix}/{key}"] = _number(value, f"{where}: field 'modules.{prefix}.{key}'")
    stats = _object(record["groups"], f"{where}: field 'groups'")
    for group in groups:
        if group not in stats:
            raise AnalysisError(f"{where}: field 'groups.{group}' is missing (the manifest lists group '{group}')")
        entry = _object(stats[group], f"{where}: field 'groups.{group}'")
        for key in GROUP_STATS:
            if key not in entry:
                raise AnalysisError(f"{where}: field 'groups.{group}.{key}' is missing")
            out[f"groups/{group}/{key}"] = _number(entry[key], f"{where}: field 'groups.{group}.{key}'")
    return out


def _confusion(record: dict, where: str) -> np.ndarray | None:
    """The validation confusion matrix when the metrics file has one (`val_confusion`: rows = true class)."""
    matrix = record.get("val_confusion")
    if matrix is None:
        return None
    try:
        array = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        raise AnalysisError(f"{where}: field 'val_confusion' is not a matrix of numbers") from None
    if array.ndim != 2 or array.shape[0] != array.shape[1] or not np.isfinite(array).all() or (array < 0).any():
        raise AnalysisError(f"{where}: field 'val_confusion' must be a square matrix of counts >= 0, "
                            f"got shape {array.shape}")
    return array


def read_nan_event(run_dir: Path) -> dict[str, Any] | None:
    """The run's nan_event.json when there is one, its `step` and `epoch` checked."""
    path = run_dir / NAN_EVENT
    if not path.is_file():
        return None
    event = _object(_read_json(path)[0], str(path))
    for key, low in (("step", 0), ("epoch", 1)):
        value = event.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise AnalysisError(f"{path}: field '{key}' must be an integer >= {low}, got {value!r}")
    return event


def load_run(ckpt_dir: str | Path, verify_sha256: bool = True) -> RunMetrics:
    """Read and check the manifest and every metrics file it lists (no weight file is touched)."""
    run_dir, modular = resolve_run_dir(ckpt_dir, AnalysisError)
    manifest = read_manifest(modular, AnalysisError)
    groups, checkpoints, every = manifest.groups, manifest.checkpoints, manifest.every_n_epochs
    rows: list[dict[str, float]] = []
    confusion: dict[int, np.ndarray] = {}
    ema: set[bool] = set()
    warnings: list[str] = []
    for entry in checkpoints:
        path = modular / entry["metrics"]
        if not path.is_file():
            raise AnalysisError(f"{modular / MANIFEST}: epoch {entry['epoch']} lists metrics file {path.name}, "
                                "which does not exist")
        record, raw = _read_json(path)
        record = _object(record, str(path))
        if record.get("epoch") != entry["epoch"]:
            raise AnalysisError(f"{path}: field 'epoch' is {record.get('epoch')!r}, but the manifest lists this "
                                f"file for epoch {entry['epoch']}")
        expected = entry.get("metrics_sha256")
        if verify_sha256 and expected and hashlib.sha256(raw).hexdigest() != expected:
            raise AnalysisError(f"{path}: its sha256 differs from the manifest's metrics_sha256 for epoch "
                                f"{entry['epoch']} (edited after the checkpoint was saved?); "
                                "analysis.verify_sha256=false reads it anyway")
        rows.append(_flatten(record, str(path), groups))
        matrix = _confusion(record, str(path))
        if matrix is not None:
            confusion[entry["epoch"]] = matrix
        ema.add(bool(record.get("ema", entry.get("ema", False))))
    listed = {entry["metrics"] for entry in checkpoints}
    stray = sorted(p.name for p in modular.glob(METRICS_GLOB) if p.name not in listed)
    if stray:
        warnings.append(f"{modular}: {', '.join(stray)} not in {MANIFEST} (a checkpoint that did not complete): "
                        "ignored")
    names = sorted({name for row in rows for name in row})
    values = {name: np.array([row.get(name, math.nan) for row in rows], dtype=float) for name in names}
    if len(ema) > 1:
        warnings.append("some checkpoints were validated with EMA weights and some with raw weights")
    event = read_nan_event(run_dir)
    if event is not None:
        warnings.append(f"{run_dir / NAN_EVENT}: training stopped at a non-finite loss at global step "
                        f"{event['step']}, epoch {event['epoch']} ({event.get('cause', 'no cause recorded')}); "
                        f"checkpoints of epoch {event['epoch']} and later are never recommended")
    return RunMetrics(run_dir=run_dir, modular_dir=modular, every_n_epochs=every, groups=groups,
                      epochs=[c["epoch"] for c in checkpoints], values=values, confusion=confusion,
                      ema=True in ema, warnings=warnings, nan_event=event)
