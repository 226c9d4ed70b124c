"""The run-folder contract: what the training writes and the analysis, crossover and sweeps read.

One module for both sides, so a file name or the format tag cannot drift between writer and reader:
    <run>/run.json                          resolved config, git commit, parameter table (train.py)
    <run>/epoch_history.json                one record per epoch (callbacks/epoch_history.py)
    <run>/nan_event.json                    step, epoch and cause of a non-finite loss (callbacks/nan_guard.py)
    <run>/modular/manifest.json             every saved checkpoint epoch: files, sizes, sha256 (written last)
    <run>/modular/epoch_EEE/<group>.safetensors   one file per module group (callbacks/modular_checkpoint.py)
    <run>/modular/metrics_epoch_EEE.json    what the sweet-spot analysis reads for that epoch
    <run>/analysis_results/                 analyze.py and combine.py outputs
Epochs are 1-based counts of completed epochs, written with three digits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redheart.errors import RedHeartError, RunFolderError
from redheart.io import read_json

FORMAT = "redheart-modular-v1"
RUN_INFO = "run.json"
EPOCH_HISTORY = "epoch_history.json"
NAN_EVENT = "nan_event.json"
MODULAR_DIR = "modular"
MANIFEST = "manifest.json"
METRICS_GLOB = "metrics_epoch_*.json"
ANALYSIS_DIR = "analysis_results"


def epoch_dir(modular: Path, epoch: int) -> Path:
    """The folder of one checkpoint epoch's group files."""
    return Path(modular) / f"epoch_{epoch:03d}"


def group_file(modular: Path, epoch: int, group: str) -> Path:
    """One module group's safetensors file at one epoch."""
    return epoch_dir(modular, epoch) / f"{group}.safetensors"


def metrics_file(modular: Path, epoch: int) -> Path:
    """The metrics file of one checkpoint epoch."""
    return Path(modular) / f"metrics_epoch_{epoch:03d}.json"


def group_of(name: str, groups: Mapping[str, Sequence[str]]) -> str | None:
    """The group whose prefix claims parameter `name`: `name == prefix` or `name` starts with `prefix.`."""
    for group, prefixes in groups.items():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return group
    return None


def resolve_run_dir(ckpt_dir: str | Path, error: type[RedHeartError] = RunFolderError) -> tuple[Path, Path]:
    """(run folder, modular folder) for `ckpt_dir` given as the run folder or its modular/ folder."""
    path = Path(ckpt_dir).expanduser().resolve()
    if not path.is_dir():
        raise error(f"ckpt_dir={ckpt_dir}: {'not a folder' if path.exists() else 'no such folder'}")
    if (path / MODULAR_DIR / MANIFEST).is_file():
        return path, path / MODULAR_DIR
    if (path / MANIFEST).is_file():
        return path.parent, path
    raise error(f"ckpt_dir={ckpt_dir}: no {MODULAR_DIR}/{MANIFEST} here (neither {path / MODULAR_DIR / MANIFEST} "
                f"nor {path / MANIFEST} exists); pass a training run folder (outputs/train/runs/<name>) or its "
                f"{MODULAR_DIR}/ folder")


def new_manifest(every_n_epochs: int, groups: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The manifest of a run that has saved no checkpoint yet."""
    return {"format": FORMAT, "every_n_epochs": every_n_epochs, "groups": {g: list(p) for g, p in groups.items()},
            "checkpoints": []}


@dataclass(frozen=True)
class Manifest:
    """A checked manifest: its groups, checkpoint entries (ascending epochs) and the raw JSON object."""

    path: Path
    every_n_epochs: int
    groups: dict[str, list[str]]
    checkpoints: list[dict[str, Any]]
    data: dict[str, Any]

    @property
    def epochs(self) -> list[int]:
        return [c["epoch"] for c in self.checkpoints]


def _integer(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_files(entry: dict, where: str, groups: Mapping[str, Any], modular: Path,
                 error: type[RedHeartError]) -> None:
    files = entry.get("files")
    if not isinstance(files, dict):
        raise error(f"{where}.files' must be an object of group -> file")
    missing, unknown = [g for g in groups if g not in files], [g for g in files if g not in groups]
    if missing or unknown:
        raise error(f"{where}.files' must hold one file per group; missing {missing}, not a group {unknown}")
    for group in groups:
        info = files[group]
        if not isinstance(info, dict) or not all(k in info for k in ("path", "sha256", "bytes")):
            raise error(f"{where}.files.{group}' needs 'path', 'sha256' and 'bytes'")
        if modular.resolve() not in (modular / str(info["path"])).resolve().parents:
            raise error(f"{where}.files.{group}.path' {info['path']!r} points outside {modular}")


def read_manifest(modular: str | Path, error: type[RedHeartError] = RunFolderError) -> Manifest:
    """Read and check `<modular>/manifest.json`; a problem raises `error` naming the file and the field."""
    modular = Path(modular)
    path = modular / MANIFEST
    manifest = read_json(path, error)
    if not isinstance(manifest, dict):
        raise error(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise error(f"{path}: field 'format' is {manifest.get('format')!r}, expected {FORMAT!r}")
    groups = manifest.get("groups")
    if not isinstance(groups, dict) or not groups:
        raise error(f"{path}: field 'groups' must be a non-empty object of group -> module prefixes")
    for group, prefixes in groups.items():
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise error(f"{path}: field 'groups.{group}' must be a list of module prefixes")
    every = manifest.get("every_n_epochs")
    if not _integer(every, 1):
        raise error(f"{path}: field 'every_n_epochs' must be an integer >= 1, got {every!r}")
    checkpoints = manifest.get("checkpoints")
    if not isinstance(checkpoints, list) or not checkpoints:
        raise error(f"{path}: field 'checkpoints' must be a non-empty list (no checkpoint saved yet?)")
    seen: set[int] = set()
    for i, entry in enumerate(checkpoints):
        where = f"{path}: field 'checkpoints[{i}]"
        if not isinstance(entry, dict):
            raise error(f"{where}': expected a JSON object, got {type(entry).__name__}")
        epoch = entry.get("epoch")
        if not _integer(epoch, 1):
            raise error(f"{where}.epoch' must be an integer >= 1, got {epoch!r}")
        if epoch in seen:
            raise error(f"{where}.epoch': epoch {epoch} is listed twice")
        seen.add(epoch)
        name = entry.get("metrics")
        if not isinstance(name, str) or "/" in name or "\\" in name or not name:
            raise error(f"{where}.metrics' must be a file name, got {name!r}")
        _check_files(entry, where, groups, modular, error)
    return Manifest(path=path, every_n_epochs=every, groups={g: list(p) for g, p in groups.items()},
                    checkpoints=sorted(checkpoints, key=lambda c: c["epoch"]), data=manifest)
