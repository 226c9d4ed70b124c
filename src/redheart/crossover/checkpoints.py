"""A training run's modular checkpoints, as listed by `modular/manifest.json` (callbacks/modular_checkpoint.py).

Why a class of its own: every weight the crossover touches must come from a file the manifest lists,
whose bytes still hash to the manifest's sha256, in the safetensors format (a header and raw tensor
bytes: nothing is unpickled, so no code can run). Pickle-based formats (`.ckpt`, `.pt`, `.pth`, `.bin`,
`.pkl`) are refused outright; a file named `.safetensors` that is anything else fails to parse and is
refused too. Tensors are read lazily, one at a time, with `pread` (no memory map kept resident).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from redheart.crossover.errors import CrossoverError
from redheart.io import read_json, sha256_file
from redheart.run_folder import read_manifest, resolve_run_dir

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")


@dataclass(frozen=True)
class GroupFile:
    """One module group's file at one epoch, as the manifest lists it."""

    epoch: int
    group: str
    path: Path
    relpath: str  # relative to the run folder, for provenance
    sha256: str
    bytes: int


class RunCheckpoints:
    """The manifest of one run: its groups, epochs and files; verified, lazy access to the tensors."""

    def __init__(self, run_dir: str | Path):
        self.run_dir, self.modular = resolve_run_dir(run_dir, CrossoverError)
        manifest = read_manifest(self.modular, CrossoverError)
        self.manifest_path = manifest.path
        self.groups: dict[str, tuple[str, ...]] = {g: tuple(p) for g, p in manifest.groups.items()}
        self.files: dict[tuple[int, str], GroupFile] = {}
        self.ema: dict[int, bool] = {}  # EMA weights stored
        self.raw: dict[int, bool] = {}  # raw weights stored (a manifest without the field: always)
        self.dtype: dict[int, str] = {}
        self.metrics_files: dict[int, Path] = {}
        for entry in manifest.checkpoints:
            self._add_checkpoint(entry)
        self.epochs: list[int] = sorted(self.ema)
        self._verified: set[Path] = set()

    def _add_checkpoint(self, entry: dict[str, Any]) -> None:
        """One checked manifest entry (redheart.run_folder.read_manifest): its group files and settings."""
        epoch = entry["epoch"]
        for group in self.groups:
            info = entry["files"][group]
            path = (self.modular / info["path"]).resolve()
            self.files[(epoch, group)] = GroupFile(epoch, group, path, str(path.relative_to(self.run_dir)),
                                                   str(info["sha256"]), int(info["bytes"]))
        self.ema[epoch] = bool(entry.get("ema", False))
        self.raw[epoch] = bool(entry.get("raw", True))
        self.dtype[epoch] = str(entry.get("dtype", "float32"))
        self.metrics_files[epoch] = self.modular / entry["metrics"]

    @property
    def last_epoch(self) -> int:
        return self.epochs[-1]

    def file(self, epoch: int, group: str) -> GroupFile:
        if group not in self.groups:
            raise CrossoverError(f"{self.manifest_path}: no module group {group!r} (groups: {list(self.groups)})")
        if epoch not in self.ema:
            raise CrossoverError(f"{self.manifest_path}: no checkpoint at epoch {epoch} for group {group!r} "
                                 f"(epochs: {self.epochs})")
        return self.files[(epoch, group)]

    def verify(self, entry: GroupFile) -> None:
        """Refuse pickle formats, missing files and files whose sha256 is not the manifest's (once per file)."""
        if entry.path in self._verified:
            return
        if entry.path.suffix.lower() in PICKLE_SUFFIXES or entry.path.suffix.lower() != ".safetensors":
            raise CrossoverError(f"{entry.path}: only .safetensors checkpoints are read; pickle-based formats "
                                 f"({', '.join(PICKLE_SUFFIXES)}) can run code when loaded and are refused")
        if not entry.path.is_file():
            raise CrossoverError(f"{entry.path}: listed in {self.manifest_path} (epoch {entry.epoch}, group "
                                 f"{entry.group!r}) but missing")
        actual = sha256_file(entry.path)
        if actual != entry.sha256:
            raise CrossoverError(f"{entry.path}: sha256 {actual} differs from the manifest's {entry.sha256} "
                                 f"(epoch {entry.epoch}, group {entry.group!r}): the file changed after it was saved")
        self._verified.add(entry.path)

    @contextmanager
    def open(self, epoch: int, group: str) -> Iterator[Any]:
        """A verified file opened lazily (safetensors `safe_open`, pread backend); tensors load on demand."""
        entry = self.file(epoch, group)
        self.verify(entry)
        try:
            handle = safe_open(str(entry.path), framework="pt", device="cpu", backend="pread")
        except (SafetensorError, OSError, ValueError) as err:
            raise CrossoverError(f"{entry.path}: not a valid safetensors file ({err}); pickled checkpoints "
                                 "are refused") from None
        with handle as f:
            meta = f.metadata() or {}
            if meta.get("group", group) != group or meta.get("epoch", str(epoch)) != str(epoch):
                raise CrossoverError(f"{entry.path}: header says group {meta.get('group')!r} epoch "
                                     f"{meta.get('epoch')!r}, the manifest says {group!r} epoch {epoch}")
            yield f

    def epoch_metrics(self, epoch: int) -> dict[str, Any] | None:
        """The training's own metrics file of a checkpoint, when listed (informational only)."""
        path = self.metrics_files.get(epoch)
        return _read_json(path) if path is not None and path.is_file() else None


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path, CrossoverError)
    if not isinstance(data, dict):
        raise CrossoverError(f"{path}: expected a JSON object at the top level")
    return data
