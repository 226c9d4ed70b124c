"""Reading raw records from JSON, JSON Lines and tabular files.

A *raw record* is whatever one record of the file holds, before validation: a dict, or a
description of why the record could not even be parsed (a JSON Lines line with a syntax error or
invalid UTF-8). File-level failures (missing file, a directory, an empty file, a JSON array with a
syntax error) raise `DataFileError` at once: there are no records to count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redheart.data.errors import DataFileError

TABLE_SUFFIXES = {".csv", ".tsv", ".psv", ".txt", ".tab"}


@dataclass
class RawRecord:
    index: int  # 0-based record index in the source
    line: int | None  # 1-based line number where the record starts, when known
    data: Any  # the parsed record (a dict expected); None when it could not be parsed
    problems: list[tuple[str, str]] = field(default_factory=list)  # (field, rule) found while reading


def check_readable_file(path: Path) -> None:
    if not path.exists():
        raise DataFileError(path, "file not found (set data.path to your dataset)")
    if path.is_dir():
        raise DataFileError(path, "is a directory; data.path must name a file")
    if path.stat().st_size == 0:
        raise DataFileError(path, "file is empty")


def detect_format(path: Path, fmt: str = "auto") -> str:
    """Return 'json', 'jsonl' or 'table'."""
    if fmt != "auto":
        if fmt not in {"json", "jsonl", "table"}:
            raise DataFileError(path, f"unknown data.format '{fmt}' (use auto, json, jsonl or table)")
        return fmt
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix in TABLE_SUFFIXES:
        return "table"
    if suffix == ".json":
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        return "json" if head.startswith(b"[") else "jsonl"
    raise DataFileError(path, f"cannot tell the format from suffix '{suffix}'; set data.format")


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFileError(path, f"invalid UTF-8 at byte {err.start}: {err.reason}") from None


def read_json_array(path: Path) -> list[RawRecord]:
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise DataFileError(path, "file holds only whitespace")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFileError(path, f"JSON syntax error at line {err.lineno}, column {err.colno}: {err.msg}") from None
    if not isinstance(obj, list):
        kind = {"dict": "object", "str": "string", "int": "number", "float": "number", "bool": "boolean"}
        raise DataFileError(path, f"top level is a JSON {kind.get(type(obj).__name__, 'null')}; expected an array of records")
    return [RawRecord(index=i, line=None, data=item) for i, item in enumerate(obj)]


def read_json_lines(path: Path) -> list[RawRecord]:
    """One record per non-blank line; a broken line becomes an unparsable record, not a crash."""
    records: list[RawRecord] = []
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            index = len(records)
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as err:
                records.append(RawRecord(index, line_no, None, [("<line>", f"invalid UTF-8 at byte {err.start}")]))
                continue
            try:
                records.append(RawRecord(index, line_no, json.loads(line)))
            except json.JSONDecodeError as err:
                records.append(
                    RawRecord(index, line_no, None, [("<line>", f"JSON syntax error at column {err.colno}: {err.msg}")])
                )
    if not records:
        raise DataFileError(path, "file holds only whitespace")
    return records
