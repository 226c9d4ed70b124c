"""Reading raw records from JSON, JSON Lines and tabular files.

A *raw record* is whatever one record of the file holds, before validation: a dict, or a
description of why the record could not even be parsed (a JSON Lines line with a syntax error or
invalid UTF-8). File-level failures (missing file, a directory, an empty file, a JSON array with a
syntax error) raise `DataFileError` at once: there are no records to count.

Python's `json` accepts some inputs silently or fails on them with errors that are not
`JSONDecodeError`; `parse_json` turns each into a problem that names the cause (tests/test_malformed_inputs.py):
a key given twice in one object (json keeps the last value without a word), nesting too deep
(RecursionError) and integer literals over Python's 4300-digit limit (ValueError).
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


class JsonObject(dict):
    """A parsed JSON object that remembers the keys it was given more than once, nested ones as
    dotted paths: `{"label": 1, "label": 2}` would otherwise silently become `{"label": 2}`."""

    duplicate_keys: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> JsonObject:
    obj = JsonObject(pairs)
    dups: list[str] = []
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and key not in dups:
                dups.append(key)
            seen.add(key)
    for key, value in obj.items():
        dups += [f"{key}.{d}" for d in getattr(value, "duplicate_keys", ())]
    if dups:
        obj.duplicate_keys = tuple(dups)
    return obj


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed value's type (object, array, string, number, boolean, null)."""
    for kind, name in ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string"), ((int, float), "number")):
        if isinstance(value, kind):
            return name
    return "null"


def parse_json(text: str) -> tuple[Any, str | None]:
    """(value, None) or (None, why it cannot be read), for every way `json.loads` can fail."""
    try:
        return json.loads(text, object_pairs_hook=_json_object), None
    except json.JSONDecodeError as err:
        return None, f"JSON syntax error at line {err.lineno}, column {err.colno}: {err.msg}"
    except RecursionError:
        return None, "JSON nested too deeply to parse (about 1000 levels is the limit)"
    except ValueError as err:  # Python's int-size limit; the message before ':' says which limit
        return None, f"JSON value cannot be read: {str(err).split(':')[0]}"


def duplicate_key_problems(data: Any) -> list[tuple[str, str]]:
    return [(key, "is given more than once in the same object; JSON would keep only the last value")
            for key in getattr(data, "duplicate_keys", ())]


_FOREIGN_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32 LE"), (b"\x00\x00\xfe\xff", "UTF-32 BE"),
                 (b"\xff\xfe", "UTF-16 LE"), (b"\xfe\xff", "UTF-16 BE"))


def foreign_bom(head: bytes) -> str | None:
    """The encoding a UTF-16/32 byte-order mark announces (spreadsheets export "Unicode text" so)."""
    return next((name for bom, name in _FOREIGN_BOMS if head.startswith(bom)), None)


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


def _reject_foreign_bom(path: Path, head: bytes) -> None:
    if (name := foreign_bom(head)) is not None:
        raise DataFileError(path, f"is encoded as {name} (byte-order mark); save it as UTF-8")


def _decode(path: Path, raw: bytes) -> str:
    _reject_foreign_bom(path, raw[:4])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFileError(path, f"invalid UTF-8 at byte {err.start}: {err.reason}") from None


def read_json_array(path: Path) -> list[RawRecord]:
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise DataFileError(path, "file holds only whitespace")
    obj, error = parse_json(text)
    if error:
        raise DataFileError(path, error)
    if not isinstance(obj, list):
        raise DataFileError(path, f"top level is a JSON {json_type_name(obj)}; expected an array of records")
    if not obj:  # otherwise the split would fail later with a message that does not name the file
        raise DataFileError(path, "holds an empty JSON array: no records")
    return [RawRecord(index=i, line=None, data=item, problems=duplicate_key_problems(item))
            for i, item in enumerate(obj)]


def read_json_lines(path: Path) -> list[RawRecord]:
    """One record per non-blank line; a broken line becomes an unparsable record, not a crash."""
    records: list[RawRecord] = []
    with open(path, "rb") as fh:
        _reject_foreign_bom(path, fh.read(4))
        fh.seek(0)
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            index = len(records)
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as err:
                records.append(RawRecord(index, line_no, None, [("<line>", f"invalid UTF-8 at byte {err.start}")]))
                continue
            data, error = parse_json(line.rstrip("\r\n"))  # a cut-off string then reads "Unterminated string"
            if error:
                records.append(RawRecord(index, line_no, None, [("<line>", error.replace("at line 1, ", "at "))]))
            else:
                records.append(RawRecord(index, line_no, data, duplicate_key_problems(data)))
    if not records:
        raise DataFileError(path, "file holds only whitespace")
    if records[0].data is None:
        _reject_multi_line_json(path)
    return records


def _reject_multi_line_json(path: Path) -> None:
    """A pretty-printed JSON object or array is not JSON Lines: say so once, instead of reporting
    each of its lines as a syntax error."""
    try:
        whole, error = parse_json(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        return
    if error is None and isinstance(whole, (dict, list)):
        kind = "object" if isinstance(whole, dict) else "array"
        raise DataFileError(
            path, f"holds one JSON {kind} spread over several lines, not one record per line (JSON Lines); "
                  "a JSON array of records needs the .json suffix or data.format=json")
