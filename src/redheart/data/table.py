"""Column-mapping adapter: turns a CSV/TSV/any-separator table into seed-schema records.

Everything is driven by `data.table` in the config, so a user brings a tabular dataset without
writing code (see `conf/data/isear.yaml` for a complete example):

    table:
      sep: "|"              # field separator
      quoting: none          # none: quotes are ordinary characters; minimal: CSV quoting rules
      columns: {id: MYKEY, text: SIT, label: Field1}
      label_encoding: name   # name: the cell is a class name; index: an integer (+ label_offset)
      label_offset: 0        # subtracted from integer labels (1 for 1-based codes)
      overflow_into: SIT     # rows with more fields than the header: extra fields belong here
      overflow_joiner: " "
      metadata: {country: COUN}
      targets:               # each target: {column, range: [lo, hi]} or {column, map: {...}}
        intensity: {column: INTS, range: [1, 4]}      # (v - lo) / (hi - lo); hi < lo reverses
        regret_factor: {column: CAUS, map: {1: 1.0, 2: 0.5}, missing: [0]}
        bentham: {duration: {column: LONG, range: [1, 4]}}
        surd: {surprise: {column: EXPC, range: [3, 1], missing: [0]}}

Cells listed in `missing` (and empty cells) become missing targets, masked in the loss later.
Problems (a bad label, a value outside its declared range, a short row) are attached to the record
and reported by validation with the row's line number; nothing is dropped here.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from redheart.data.errors import DataConfigError, DataFileError
from redheart.data.sources import RawRecord, foreign_bom
from redheart.schema import TaskSchema

_QUOTING = {"none": csv.QUOTE_NONE, "minimal": csv.QUOTE_MINIMAL}
# A tab cannot be typed as "\t" on the command line: Hydra keeps the backslash and the t.
_TAB_HINT = ("for a tab write sep: \"\\t\" (double quotes) in a YAML data config, or pass a real tab in quotes "
             "on the command line, in bash: $'data.table.sep=\\'\\t\\''")

log = logging.getLogger(__name__)


def check_separator(sep: Any) -> str:
    """The csv module needs exactly one character; say so (and how to pass a tab) instead of its TypeError."""
    if isinstance(sep, str) and len(sep) == 1:
        return sep
    what = f"{len(sep)} characters" if isinstance(sep, str) and sep else "empty" if sep == "" else type(sep).__name__
    raise DataConfigError(f"data.table.sep must be exactly one character, got {sep!r} ({what}); {_TAB_HINT}")


def _parse_number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def map_target(spec: Mapping[str, Any], row: Mapping[str, str]) -> tuple[float | None, str | None]:
    """Apply one target spec to a row: (value or None when missing, problem or None)."""
    column = spec["column"]
    cell = row.get(column, "").strip()
    if cell == "":
        return None, None
    missing = {str(m) for m in spec.get("missing", [])}
    number = _parse_number(cell)
    if cell in missing or (number is not None and _fmt(number) in missing):
        return None, None
    if "map" in spec:
        table = {str(k): v for k, v in spec["map"].items()}
        key = cell if cell in table else (_fmt(number) if number is not None else cell)
        if key not in table:
            return None, f"column {column} value {cell!r} is not in its map {sorted(table)}"
        return (None if table[key] is None else float(table[key])), None
    if number is None:
        return None, f"column {column} value {cell!r} is not a finite number"
    lo, hi = (float(x) for x in spec["range"])
    if not min(lo, hi) <= number <= max(lo, hi):
        return None, f"column {column} value {cell!r} is outside its range [{min(lo, hi):g}, {max(lo, hi):g}]"
    return (number - lo) / (hi - lo), None


def _check_spec(where: str, spec: Mapping[str, Any] | None) -> None:
    """A target spec names a column and exactly one of `range: [lo, hi]` (lo != hi) or `map`."""
    if not spec:
        return
    if not spec.get("column"):
        raise DataConfigError(f"{where} must name a column")
    if ("range" in spec) == ("map" in spec):
        raise DataConfigError(f"{where} needs exactly one of `range: [lo, hi]` or `map: {{code: value}}`")
    if "range" in spec:
        bounds = list(spec["range"])
        if len(bounds) != 2 or float(bounds[0]) == float(bounds[1]):
            raise DataConfigError(f"{where}.range must be two different numbers [lo, hi], got {bounds}")


def _csv_quoted(text: str) -> bool:
    stripped = text.strip()
    return len(stripped) >= 2 and stripped[0] == stripped[-1] == '"' and '""' in stripped[1:-1]


def _fmt(number: float) -> str:
    return str(int(number)) if number.is_integer() else str(number)


class TableAdapter:
    """Reads a delimited file and maps its columns onto the record schema (see module docstring)."""

    def __init__(self, table: Mapping[str, Any], schema: TaskSchema) -> None:
        self.cfg = dict(table)
        self.schema = schema
        self.sep = check_separator(self.cfg.get("sep", ","))
        quoting = self.cfg.get("quoting", "minimal")
        if quoting not in _QUOTING:
            raise DataConfigError(f"data.table.quoting must be one of {sorted(_QUOTING)}, got {quoting!r}")
        self.quoting = _QUOTING[quoting]
        self.columns = dict(self.cfg.get("columns", {}))
        for required in ("text", "label"):
            if not self.columns.get(required):
                raise DataConfigError(f"data.table.columns.{required} must name a column")
        self.label_encoding = self.cfg.get("label_encoding", "name")
        if self.label_encoding not in {"name", "index"}:
            raise DataConfigError("data.table.label_encoding must be 'name' or 'index'")
        self.label_offset = int(self.cfg.get("label_offset", 0))
        self.targets = dict(self.cfg.get("targets") or {})
        unknown = set(self.targets) - {"intensity", "regret_factor", "bentham", "surd"}
        if unknown:
            raise DataConfigError(f"data.table.targets has unknown keys {sorted(unknown)}")
        for group, names in (("bentham", schema.bentham_names), ("surd", schema.surd_names)):
            extra = set(self.targets.get(group) or {}) - set(names)
            if extra:
                raise DataConfigError(f"data.table.targets.{group} names {sorted(extra)} "
                                      f"not in the schema {list(names)}")
            for name, spec in (self.targets.get(group) or {}).items():
                _check_spec(f"data.table.targets.{group}.{name}", spec)
        for key in ("intensity", "regret_factor"):
            _check_spec(f"data.table.targets.{key}", self.targets.get(key))
        self._class_index = {name.casefold(): i for i, name in enumerate(schema.class_names)}

    # -- reading ---------------------------------------------------------------------------------
    def read(self, path: Path) -> list[RawRecord]:
        raw = path.read_bytes()
        try:
            text = raw.decode(self.cfg.get("encoding", "utf-8-sig"))
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            bom = foreign_bom(raw[:4])
            hint = f"; the file is {bom} (byte-order mark): save it as UTF-8 or set data.table.encoding" if bom else ""
            raise DataFileError(
                path, f"invalid {err.encoding} at byte {err.start} (line {line}): {err.reason}{hint}") from None
        # strict: an unclosed quote raises instead of silently swallowing every row up to the end of the file
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.sep, quoting=self.quoting, strict=True)
        rows = self._rows(path, reader)
        try:
            header = next(rows)[1]
        except StopIteration:
            raise DataFileError(path, "file holds no header line") from None
        missing_cols = [c for c in self._referenced_columns() if c not in header]
        if missing_cols:
            raise DataFileError(path, f"columns {missing_cols} named in data.table are not in the header {header}")
        repeated = sorted({c for c in self._referenced_columns() if header.count(c) > 1})
        if repeated:  # a dict row would silently keep only the last of the same-named columns
            raise DataFileError(path, f"columns {repeated} named in data.table appear more than once in the header")
        records = []
        for first_line, fields in rows:
            if not any(f.strip() for f in fields):
                continue
            records.append(self._to_record(len(records), first_line, header, fields))
        if not records:
            raise DataFileError(path, "file holds a header but no rows")
        self._warn_csv_quoting(path, records)
        return records

    def _warn_csv_quoting(self, path: Path, records: list[RawRecord]) -> None:
        """With quoting: none, a CSV-quoted file keeps its escapes: "a ""b"" c" stays as it is in the text.
        Counted: texts wrapped in quotes that hold a doubled quote, the mark of CSV quoting (a stray ""
        at the end of a text, as ISEAR's broken escapes have, is not)."""
        if self.quoting != csv.QUOTE_NONE:
            return
        doubled = sum(_csv_quoted(r.data["text"]) for r in records if isinstance(r.data, dict)
                      and isinstance(r.data.get("text"), str))
        if doubled:
            log.warning('%s: %d texts hold doubled quotes ("") inside quotes, the CSV escape of a quote: with '
                        "data.table.quoting: none they stay in the text; if the file uses CSV quoting, set "
                        "data.table.quoting: minimal", path, doubled)

    @staticmethod
    def _rows(path: Path, reader: Any) -> Iterator[tuple[int, list[str]]]:
        """(line where the row starts, fields); a quoted row may span lines. A CSV syntax error
        (an unclosed quote, text after a closing quote, a cell over the csv module's 131072-character
        limit) stops the read with the row's line instead of a traceback from the csv module."""
        end_of_previous = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise DataFileError(path, f"CSV syntax error in the row starting at line {end_of_previous + 1}: "
                                          f"{err}") from None
            first_line, end_of_previous = end_of_previous + 1, reader.line_num
            yield first_line, fields

    def _referenced_columns(self) -> list[str]:
        cols = [c for c in self.columns.values() if c]
        cols += list((self.cfg.get("metadata") or {}).values())
        if self.cfg.get("overflow_into"):
            cols.append(self.cfg["overflow_into"])
        for key, spec in self.targets.items():
            specs = spec.values() if key in {"bentham", "surd"} else [spec]
            cols += [s["column"] for s in specs if s]
        return cols

    def _align(self, header: list[str], fields: list[str]) -> tuple[dict[str, str] | None, str | None]:
        """Pair fields with header names, merging overflow fields into the configured column."""
        extra = len(fields) - len(header)
        if extra < 0:
            return None, f"row has {len(fields)} fields, the header has {len(header)}"
        if extra > 0:
            target = self.cfg.get("overflow_into")
            if not target:
                return None, (f"row has {len(fields)} fields, the header has {len(header)} "
                              "(set data.table.overflow_into)")
            k = header.index(target)
            merged = self.cfg.get("overflow_joiner", " ").join(fields[k : k + extra + 1])
            fields = fields[:k] + [merged] + fields[k + extra + 1 :]
        return dict(zip(header, fields, strict=True)), None

    def _to_record(self, index: int, line: int, header: list[str], fields: list[str]) -> RawRecord:
        row, problem = self._align(header, fields)
        if row is None:
            return RawRecord(index, line, None, [("<row>", problem)])
        problems: list[tuple[str, str]] = []
        id_col = self.columns.get("id")
        record: dict[str, Any] = {
            "id": row[id_col].strip() if id_col else f"row{line}",
            "text": row[self.columns["text"]],
        }
        record["label"], label_problem = self._label(row[self.columns["label"]])
        if label_problem:
            problems.append(("label", label_problem))
        if self.cfg.get("metadata"):
            record["metadata"] = {name: row[column] for name, column in self.cfg["metadata"].items()}

        def target(spec: Mapping[str, Any], field: str) -> float | None:
            value, issue = map_target(spec, row)
            if issue:
                problems.append((field, issue))
            return value

        if self.targets.get("intensity"):
            record["emotions"] = {"intensity": target(self.targets["intensity"], "emotions.intensity")}
        if self.targets.get("regret_factor"):
            record["regret_factor"] = target(self.targets["regret_factor"], "regret_factor")
        if self.targets.get("bentham"):
            specs = self.targets["bentham"]
            record["bentham_scores"] = [
                target(specs[n], f"bentham_scores[{i}] ({n})") if specs.get(n) else None
                for i, n in enumerate(self.schema.bentham_names)
            ]
        if self.targets.get("surd"):
            specs = self.targets["surd"]
            record["surd_metrics"] = {n: target(s, f"surd_metrics.{n}") for n, s in specs.items() if s}
        return RawRecord(index, line, record, problems)

    def _label(self, cell: str) -> tuple[Any, str | None]:
        cell = cell.strip()
        if self.label_encoding == "name":
            if cell.casefold() in self._class_index:
                return self._class_index[cell.casefold()], None
            return cell, f"label {cell!r} is not one of the class names {list(self.schema.class_names)}"
        try:
            return int(cell) - self.label_offset, None
        except ValueError:
            return cell, f"label {cell!r} is not an integer"
