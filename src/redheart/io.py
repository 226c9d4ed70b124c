"""Small file helpers shared by every stage: atomic writes and content hashes.

Every file the pipeline writes goes through `atomic_write_*`: the bytes land in a temporary file in
the same directory, are flushed to disk, then renamed over the target. A crash leaves either the old
file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _file_mode() -> int:
    """What open() would give a new file under the current umask (mkstemp makes them 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` to produce the file, then rename it to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented UTF-8 JSON; NaN/inf are refused (they are not JSON)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: list[dict]) -> Path:
    lines = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
    return atomic_write_text(path, lines)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def read_json(path: str | os.PathLike, error: type[Exception] = ValueError, label: str | None = None) -> Any:
    """A JSON file's content; a missing, unreadable or malformed file raises `error` with one line naming
    it (`label`, e.g. "thresholds=x.json", defaults to the path) and what is wrong, never a decoder traceback."""
    label = label or str(path)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{label}: file not found") from None
    except OSError as err:
        raise error(f"{label}: cannot read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise error(f"{label}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise error(f"{label}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None


def nulls_for_non_finite(obj: Any) -> Any:
    """`obj` with every NaN/inf float (at any depth of dicts and lists) replaced by None: JSON has no NaN,
    and a diverged run's metrics must still be written (readers treat null as non-finite)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: nulls_for_non_finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nulls_for_non_finite(v) for v in obj]
    return obj
