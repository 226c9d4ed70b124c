"""Texts to predict, read lazily from a file, and the predictions written atomically.

Formats (`format=auto` goes by suffix): `jsonl` (one JSON string or object with `text` per line),
`json` (an array of strings or of such objects), `text` (`.txt`: one text per line) and `table` (any
delimited file, read with the same `data.table` column mapping as training: `columns.text`, and
`columns.id` when given). JSON Lines and plain text are streamed; JSON arrays and tables are read whole.
Every text keeps an id: the record's own (`id` field or column), else its 1-based line or position.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from redheart.bundle.errors import BundleError

FORMATS = ("auto", "jsonl", "json", "text", "table")


def input_format(path: Path, fmt: str = "auto") -> str:
    if fmt not in FORMATS:
        raise BundleError(f"format={fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix == ".txt":
        return "text"
    return "table"


def check_input(path: Path) -> None:
    if not path.is_file():
        raise BundleError(f"input={path}: file not found" if not path.exists() else f"input={path}: not a file")
    if path.stat().st_size == 0:
        raise BundleError(f"input={path}: the file is empty; give at least one text")


def _text_of(value: Any, where: str) -> tuple[str | None, str]:
    if isinstance(value, str):
        return None, value
    if isinstance(value, Mapping) and isinstance(value.get("text"), str):
        rid = value.get("id")
        return (None if rid is None else str(rid)), value["text"]
    raise BundleError(f"{where}: expected a string or an object with a string field 'text'")


def read_texts(path: Path, fmt: str = "auto", table: Mapping[str, Any] | None = None,
               schema: Any = None) -> Iterator[tuple[str, str]]:
    """(id, text) pairs in file order; blank lines of JSON Lines and plain text are skipped."""
    check_input(path)
    kind = input_format(path, fmt)
    if kind in ("jsonl", "text"):
        yield from _lines(path, kind)
        return
    if kind == "json":
        try:
            values = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BundleError(f"{path}: not a JSON file ({err}); use format=jsonl or format=text") from None
        if not isinstance(values, list):
            raise BundleError(f"{path}: expected a JSON array of texts or of objects with 'text'")
        for i, value in enumerate(values):
            rid, text = _text_of(value, f"{path}: item {i}")
            yield rid or str(i + 1), text
        return
    yield from _table_texts(path, table, schema)


def _lines(path: Path, kind: str) -> Iterator[tuple[str, str]]:
    """JSON Lines or plain text, one line at a time (streamed)."""
    number = 0
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                if kind == "text":
                    yield str(number), line.rstrip("\r\n")
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as err:
                    raise BundleError(f"{path}: line {number} is not JSON ({err.msg}); use format=text for "
                                      "plain text") from None
                rid, text = _text_of(value, f"{path}: line {number}")
                yield rid or str(number), text
    except UnicodeDecodeError as err:
        raise BundleError(f"{path}: not UTF-8 text after line {number} ({err.reason}); save it as UTF-8") from None


def _table_texts(path: Path, table: Mapping[str, Any] | None, schema: Any) -> Iterator[tuple[str, str]]:
    from redheart.data.errors import DataError
    from redheart.data.table import TableAdapter

    if not table or not (table.get("columns") or {}).get("text"):
        raise BundleError(f"input={path} is a table: give its column mapping, e.g. data=isear or "
                          "+data.table.columns.text=COLUMN (see conf/data/isear.yaml), or use .jsonl/.json/.txt")
    mapping = dict(table)
    columns = dict(mapping.get("columns") or {})
    columns.setdefault("label", columns["text"])  # unlabelled texts: the adapter's label check is not used here
    mapping["columns"], mapping["targets"] = columns, None
    try:
        records = TableAdapter(mapping, schema).read(path)
    except (DataError, ValueError) as err:
        raise BundleError(f"input={path}: {err}") from None
    for record in records:
        data = record.data or {}
        if isinstance(data.get("text"), str):
            rid = data.get("id")
            yield (str(rid) if rid not in (None, "") else str(record.index + 1)), data["text"]


def count_texts(path: Path, fmt: str = "auto") -> int | None:
    """The number of lines (an upper bound of the texts) for the progress bar; None when unknown cheaply."""
    if input_format(path, fmt) not in ("jsonl", "text"):
        return None
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())
