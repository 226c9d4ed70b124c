"""`lr_sweep_cumulative.json`: every LR job's record, shared by parallel jobs and by later sweeps.

Writers take a file lock (filelock: works across processes and on NFS-free local disks), read the
file, replace or add their entry and rewrite it atomically (temp file + rename), so readers never see
a half-written file and concurrent writers never lose an entry. Entries are keyed by their job
folder: recording the same job twice (the Hydra callback in a worker, then the sweeper) keeps one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filelock import FileLock

from redheart.errors import RedHeartError
from redheart.io import atomic_write_json, read_json

FORMAT = "redheart-lr-sweep-v1"


class SweepFileError(RedHeartError, ValueError):
    """The cumulative file exists but is not one of ours."""


class CumulativeResults:
    def __init__(self, path: str | Path, timeout_s: float = 600):
        self.path = Path(path)
        self.lock = FileLock(str(self.path) + ".lock", timeout=timeout_s)

    def read(self) -> list[dict[str, Any]]:
        """All entries (an absent file is an empty sweep)."""
        if not self.path.is_file():
            return []
        data = read_json(self.path, SweepFileError)
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), list):
            raise SweepFileError(f"{self.path}: field 'format' must be {FORMAT!r} with a list 'entries'")
        return data["entries"]

    def append(self, entry: dict[str, Any]) -> int:
        """Add (or replace, by `key`) one entry under the lock; returns the number of entries."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            entries = [e for e in self.read() if e.get("key") != entry["key"]] + [entry]
            atomic_write_json(self.path, {"format": FORMAT, "entries": entries})
        return len(entries)
