"""The malformed-input corpus (docs/reliability.md "Malformed input").

Every kind of broken input is one row of `CORPUS`: a small file (70 valid records, one planted
near-duplicate of record 0, then the malformed part) or a broken path, and the exact outcome it must
get from the real pipeline entry point (`prepare_dataset`, no encoder):

- with `on_invalid=error`, a `DataError` whose message names the file, the record (index, line when
  the format has lines, id), the field and the rule; a file-level failure names the file and why;
- with `on_invalid=skip`, each invalid record is quarantined with a reason that names the field and
  the rule, and the counts reconcile with the expected numbers: read = kept + near-duplicates +
  quarantined. File-level failures raise the same error under both policies (nothing to count).

A kind that is not malformed but easy to get wrong (a byte-order mark, a misspelt optional field) is
listed with its outcome too. The last tests run `train.py` on a few of these files (exit code 2, no
traceback) and check that docs/reliability.md lists every kind.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import LABELS, REPO_ROOT, distinct_text
from omegaconf import OmegaConf

from redheart.data.errors import DataFileError, DataValidationError
from redheart.data.pipeline import PipelineSettings, PreparedDataset, prepare_dataset
from redheart.io import read_jsonl
from redheart.schema import TaskSchema

SCHEMA = TaskSchema()
# the text clean-up (placeholders) and length limit of conf/data/records.yaml, as a real run uses them
DATA_DEFAULTS = {key: OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf/data/records.yaml"))[key]
                 for key in ("clean", "max_text_chars")}
N_BASE = 71  # 70 valid records + 1 near-duplicate of record 0
BAD = N_BASE  # index of the first malformed record
DROP = object()  # a patch value that removes the field
NAN, INF = float("nan"), float("inf")
BENTHAM_RULE = "must have 10 values (intensity, duration, certainty, propinquity, fecundity, purity, extent, "


# -- building files ---------------------------------------------------------------------------------
def base_rows() -> list[dict]:
    rows = [{"id": f"r{i}", "text": distinct_text(i), "label": i % 7, "emotions": {"intensity": 0.5},
             "regret_factor": 0.5} for i in range(N_BASE - 1)]
    return rows + [{**rows[0], "id": "near", "text": rows[0]["text"] + "!"}]


def bad(**patch) -> dict:
    """A record that is valid until patched; its text is far from every base text."""
    row = {"id": "bad", "text": distinct_text(999), "label": 3, "emotions": {"intensity": 0.25}, "regret_factor": 0.0,
           "bentham_scores": [0.5] * 10, "surd_metrics": {"surprise": 0.5}}
    row.update(patch)
    return {k: v for k, v in row.items() if v is not DROP}


def line(**patch) -> str:
    return json.dumps(bad(**patch))  # NaN / inf become the JSON tokens NaN / Infinity


def as_bytes(part: str | bytes) -> bytes:
    return part if isinstance(part, bytes) else part.encode("utf-8")


def jsonl(*lines: str | bytes, prefix: bytes = b"") -> Callable[[Path], Path]:
    """A JSON Lines file: the base records, then `lines` verbatim (record i is on line i + 1)."""
    def write(path: Path) -> Path:
        base = [json.dumps(r).encode() for r in base_rows()]
        path.write_bytes(prefix + b"\n".join(base + [as_bytes(x) for x in lines]) + b"\n")
        return path
    write.suffix = ".jsonl"
    return write


def json_array(*items: str) -> Callable[[Path], Path]:
    """A JSON array file: the base records, then `items` (JSON text) as further elements."""
    def write(path: Path) -> Path:
        path.write_text("[\n" + ",\n".join([json.dumps(r) for r in base_rows()] + list(items)) + "\n]\n",
                        encoding="utf-8")
        return path
    write.suffix = ".json"
    return write


CSV_HEADER = "id,text,label,ints,caus"
TABLE = {"columns": {"id": "id", "text": "text", "label": "label"},
         "targets": {"intensity": {"column": "ints", "range": [1, 4], "missing": [0]},
                     "regret_factor": {"column": "caus", "map": {1: 1.0, 2: 0.5, 3: 0.0}}}}
INDEX_TABLE = {**TABLE, "label_encoding": "index", "label_offset": 1}


def csv_rows(label_index: bool = False) -> list[str]:
    label = (lambda i: str(i % 7 + 1)) if label_index else (lambda i: LABELS[i % 7])
    rows = [f"r{i},{distinct_text(i)},{label(i)},{1 + i % 4},{1 + i % 3}" for i in range(N_BASE - 1)]
    return rows + [f"near,{distinct_text(0)}!,{label(0)},1,1"]


def csv_file(*rows: str | bytes, header: str = CSV_HEADER, label_index: bool = False, encoding: str = "utf-8",
             prefix: bytes = b"", extra_cell: str | None = None) -> Callable[[Path], Path]:
    """A CSV file: header (line 1), the base rows (lines 2..72), then `rows` verbatim (from line 73);
    `extra_cell` is appended to every base row (for a header with one more column)."""
    def write(path: Path) -> Path:
        base = [f"{r},{extra_cell}" if extra_cell is not None else r for r in csv_rows(label_index)]
        text = "\n".join([header, *base]).encode(encoding)
        path.write_bytes(prefix + b"\n".join([text, *(as_bytes(r) for r in rows)]) + b"\n")
        return path
    write.suffix = ".csv"
    return write


def csv_row(text: str = distinct_text(999), label: str = "sadness", ints: str = "2", caus: str = "1",
            rid: str = "bad") -> str:
    return f"{rid},{text},{label},{ints},{caus}"


def raw(content: bytes | str, suffix: str) -> Callable[[Path], Path]:
    """A file that is exactly `content` (no base records)."""
    def write(path: Path) -> Path:
        path.write_bytes(as_bytes(content))
        return path
    write.suffix = suffix
    return write


def special(make: Callable[[Path], None], suffix: str) -> Callable[[Path], Path]:
    """A path that is not a readable file (missing, a directory)."""
    def write(path: Path) -> Path:
        make(path)
        return path
    write.suffix = suffix
    return write


# -- the corpus ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bad:
    """One expected problem: `rule` is the start of the rule text."""

    field: str
    rule: str
    index: int = BAD
    rid: str | None = "bad"


@dataclass(frozen=True)
class Kind:
    name: str
    write: Callable[[Path], Path]
    problems: tuple[Bad, ...] = ()  # record-level outcome (empty: the input is accepted)
    file_error: str | None = None  # file-level outcome: a fragment of DataFileError.reason
    extra: int = 1  # records after the base ones
    table: dict | None = None
    format: str = "auto"
    ignored: dict | None = None  # expected report.validation.ignored_fields
    what: str = ""  # one line for docs/reliability.md

    def fmt(self) -> str:
        return {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}.get(self.write.suffix, self.write.suffix)

    def line_of(self, index: int) -> int | None:
        return {".jsonl": index + 1, ".csv": index + 2}.get(self.write.suffix)


def K(name: str, write, *problems: Bad, **kw) -> Kind:  # one short name per table row
    return Kind(name, write, tuple(problems), **kw)


def F(name: str, write, reason: str, **kw) -> Kind:  # a file-level kind
    return Kind(name, write, file_error=reason, **kw)


HUGE_INT = "9" * 5000
CSV_BASE = ("\n".join([CSV_HEADER, *csv_rows()]) + "\n").encode()  # the bytes before the first malformed row
DEEP = "[" * 100_000 + "]" * 100_000
SURROGATE = '"I felt \\ud800 that day"'  # the JSON escape of a lone surrogate

CORPUS = [
    # JSON Lines, record level: wrong types, missing fields, duplicates
    K("id-wrong-type", jsonl(line(id=1.5)), Bad("id", "must be a string or an integer, got float", rid="1.5")),
    K("id-missing", jsonl(line(id=DROP)), Bad("id", "is required", rid=None)),
    K("id-empty", jsonl(line(id="  ")), Bad("id", "must not be empty", rid="  ")),
    K("id-duplicate", jsonl(line(id="r5")), Bad("id", "duplicate id (first used by record 5)", rid="r5")),
    K("text-wrong-type", jsonl(line(text=42)), Bad("text", "must be a string, got int")),
    K("text-missing", jsonl(line(text=DROP)), Bad("text", "is required")),
    K("text-empty", jsonl(line(text="")), Bad("text", "is empty or whitespace only")),
    K("text-whitespace-only", jsonl(line(text=" \t\n\u00a0 ")), Bad("text", "is empty or whitespace only")),
    K("text-too-long", jsonl(line(text="word " * 4000 + "end")),
      Bad("text", "is 20003 characters long; the limit is data.max_text_chars=20000")),
    K("text-placeholder", jsonl(line(text="[No response]")), Bad("text", "is a placeholder answer ('[No response]'")),
    K("text-lone-surrogate", jsonl(line(text="x").replace('"x"', SURROGATE)),
      Bad("text", "holds an unpaired UTF-16 surrogate escape"),
      what="the escape `\\ud800` alone: valid JSON, not UTF-8"),
    K("label-missing", jsonl(line(label=DROP)), Bad("label", "is required")),
    K("label-out-of-range", jsonl(line(label=7)),
      Bad("label", "is 7, outside 0..6 (joy, fear, anger, sadness, disgust, shame, guilt)")),
    K("label-negative", jsonl(line(label=-1)), Bad("label", "is -1, outside 0..6")),
    K("label-float", jsonl(line(label=2.0)), Bad("label", "must be an integer in 0..6, got float 2.0")),
    K("label-bool", jsonl(line(label=True)), Bad("label", "must be an integer in 0..6, got bool True")),
    K("label-string", jsonl(line(label="joy")), Bad("label", "must be an integer in 0..6, got str 'joy'")),
    K("label-misspelt-field", jsonl(line(label=DROP, lable=3)), Bad("label", "is required"), ignored={"lable": 1}),
    # NaN, inf and out-of-range targets
    K("nan-token", jsonl(line(regret_factor=NAN)),
      Bad("regret_factor", "must be a finite number in [0, 1], got nan")),
    K("inf-token", jsonl(line(emotions={"intensity": INF})),
      Bad("emotions.intensity", "must be a finite number in [0, 1], got inf")),
    K("minus-inf-in-bentham", jsonl(line(bentham_scores=[0.5, 0.5, -INF] + [0.5] * 7)),
      Bad("bentham_scores[2] (certainty)", "must be a finite number in [0, 1], got -inf")),
    K("nan-string", jsonl(line(regret_factor="NaN")),
      Bad("regret_factor", "must be a number in [0, 1] or null, got str 'NaN'")),
    K("inf-string", jsonl(line(emotions={"intensity": "inf"})),
      Bad("emotions.intensity", "must be a number in [0, 1] or null, got str 'inf'")),
    K("float-literal-overflow",
      jsonl(line(regret_factor=0.5).replace('"regret_factor": 0.5', '"regret_factor": 1e400')),
      Bad("regret_factor", "must be a finite number in [0, 1], got inf"), what="the literal `1e400`"),
    K("integer-beyond-float", jsonl(line(regret_factor=10**400)),
      Bad("regret_factor", "must be in [0, 1], got an integer of 401 digits"), what="`10**400`: no float holds it"),
    K("integer-over-4300-digits", jsonl(line(regret_factor=0.5).replace("0.5,", HUGE_INT + ",", 1)),
      Bad("<line>", "JSON value cannot be read: Exceeds the limit (4300 digits) for integer string conversion",
          rid=None), what="Python refuses to parse longer integers"),
    K("target-above-range", jsonl(line(regret_factor=1.5)), Bad("regret_factor", "must be in [0, 1], got 1.5")),
    K("target-below-range", jsonl(line(emotions={"intensity": -0.1})),
      Bad("emotions.intensity", "must be in [0, 1], got -0.1")),
    K("target-bool", jsonl(line(regret_factor=True)),
      Bad("regret_factor", "must be a number in [0, 1] or null, got bool")),
    # Bentham and SURD shapes
    K("bentham-too-short", jsonl(line(bentham_scores=[0.5] * 9)), Bad("bentham_scores", BENTHAM_RULE)),
    K("bentham-too-long", jsonl(line(bentham_scores=[0.5] * 11)), Bad("bentham_scores", BENTHAM_RULE)),
    K("bentham-wrong-type", jsonl(line(bentham_scores="high")),
      Bad("bentham_scores", "must be a list of 10 numbers or an object, got str")),
    K("bentham-unknown-keys", jsonl(line(bentham_scores={"intensity": 0.5, "joy": 0.1})),
      Bad("bentham_scores", "unknown keys ['joy']; expected some of ['intensity', 'duration'")),
    K("bentham-entry-string", jsonl(line(bentham_scores=["0.5"] + [0.5] * 9)),
      Bad("bentham_scores[0] (intensity)", "must be a number in [0, 1] or null, got str '0.5'")),
    K("surd-unknown-key", jsonl(line(surd_metrics={"surprise": 0.1, "boredom": 0.2})),
      Bad("surd_metrics", "unknown keys ['boredom']; expected some of ['surprise', 'uncertainty'")),
    K("surd-as-list", jsonl(line(surd_metrics=[0.1] * 4)),
      Bad("surd_metrics", "must be an object keyed by ['surprise', 'uncertainty', 'relevance', 'depth'], got list")),
    K("emotions-not-object", jsonl(line(emotions="happy")), Bad("emotions", "must be an object, got str")),
    K("emotions-list", jsonl(line(emotions=[0.5])), Bad("emotions", "must be an object, got list")),
    K("emotions-misspelt-key", jsonl(line(emotions={"intensty": 0.5})), ignored={"emotions.intensty": 1},
      what="kept with its intensity missing; the key is counted in the report and logged"),
    K("metadata-not-object", jsonl(line(metadata="x")), Bad("metadata", "must be an object, got str")),
    K("several-problems-one-record", jsonl(line(text="", label=9, regret_factor=NAN)),
      Bad("text", "is empty or whitespace only"), Bad("label", "is 9, outside 0..6"),
      Bad("regret_factor", "must be a finite number")),
    # JSON Lines, line level
    K("record-is-array", jsonl("[1, 2]"), Bad("<record>", "must be a JSON object, got list", rid=None)),
    K("record-is-number", jsonl("3"), Bad("<record>", "must be a JSON object, got int", rid=None)),
    K("record-is-null", jsonl("null"), Bad("<record>", "must be a JSON object, got null", rid=None)),
    K("jsonl-syntax-error", jsonl('{"id": "bad", "text" "x"}'),
      Bad("<line>", "JSON syntax error at column 22: Expecting ':' delimiter", rid=None)),
    K("jsonl-truncated-line", jsonl('{"id": "bad", "text": "cut of'),
      Bad("<line>", "JSON syntax error at column 23: Unterminated string starting at", rid=None)),
    K("two-records-on-one-line", jsonl(line() + line(id="bad2")),
      Bad("<line>", f"JSON syntax error at column {len(line()) + 1}: Extra data", rid=None)),
    K("jsonl-invalid-utf8", jsonl(line(text="caf").replace("caf", "caf\xe9").encode("latin-1")),
      Bad("<line>", "invalid UTF-8 at byte 26", rid=None)),
    K("bom-on-later-line", jsonl("\ufeff" + line()),
      Bad("<line>", "JSON syntax error at column 1: Unexpected UTF-8 BOM", rid=None)),
    K("duplicate-key", jsonl(line().replace('"label": 3', '"label": 3, "label": 2')),
      Bad("label", "is given more than once in the same object; JSON would keep only the last value")),
    K("duplicate-nested-key", jsonl(line().replace('{"intensity": 0.25}', '{"intensity": 0.25, "intensity": 0.9}')),
      Bad("emotions.intensity", "is given more than once in the same object")),
    K("nesting-too-deep", jsonl(line().replace('"surd_metrics"', f'"deep": {DEEP}, "surd_metrics"')),
      Bad("<line>", "JSON nested too deeply to parse", rid=None), what="100,000 nested arrays"),
    K("leading-bom-jsonl", jsonl(prefix="\ufeff".encode()), extra=0, what="accepted: the BOM is skipped"),
    # JSON array files
    K("array-record-invalid", json_array(line(label=9)), Bad("label", "is 9, outside 0..6")),
    K("array-element-null", json_array("null"), Bad("<record>", "must be a JSON object, got null", rid=None)),
    K("array-element-string", json_array('"text"'), Bad("<record>", "must be a JSON object, got str", rid=None)),
    K("array-duplicate-key", json_array(line().replace('"id": "bad"', '"id": "bad", "id": "bad2"')),
      Bad("id", "is given more than once in the same object", rid="bad2")),
    F("array-syntax-error", json_array('{"id": "bad",}'),
      "JSON syntax error at line 73, column 14: Expecting property"),
    F("array-trailing-comma", raw('[\n{"id": "a", "text": "x", "label": 0},\n]\n', ".json"),
      "JSON syntax error at line 3, column 1: Expecting value"),
    F("array-not-closed", raw('[\n{"id": "a", "text": "x", "label": 0}\n', ".json"),
      "JSON syntax error at line 3, column 1: Expecting ',' delimiter"),
    F("array-empty", raw("[]\n", ".json"), "holds an empty JSON array: no records"),
    F("array-nesting-too-deep", json_array(DEEP), "JSON nested too deeply to parse"),
    F("array-integer-over-4300-digits", json_array(HUGE_INT), "JSON value cannot be read: Exceeds the limit (4300"),
    F("array-invalid-utf8", raw(b'[{"id": "a", "text": "caf\xe9", "label": 0}]', ".json"), "invalid UTF-8 at byte 25"),
    F("top-level-object", raw('{"id": "a", "text": "x", "label": 0}', ".json"),
      "top level is a JSON object; expected an array of records", format="json"),
    F("top-level-string", raw('"records"', ".json"), "top level is a JSON string; expected an array", format="json"),
    F("top-level-number", raw("42", ".json"), "top level is a JSON number; expected an array", format="json"),
    F("pretty-printed-object", raw('{\n  "id": "a",\n  "text": "x",\n  "label": 0\n}\n', ".json"),
      "holds one JSON object spread over several lines, not one record per line (JSON Lines)"),
    F("pretty-printed-array-as-jsonl", raw('[\n  {"id": "a", "text": "x", "label": 0}\n]\n', ".jsonl"),
      "holds one JSON array spread over several lines, not one record per line (JSON Lines); a JSON array of records "
      "needs the .json suffix or data.format=json"),
    F("utf16-file", raw(json.dumps(base_rows()).encode("utf-16"), ".json"),
      "is encoded as UTF-16 LE (byte-order mark); save it as UTF-8"),
    # whole files and paths
    F("empty-file", raw(b"", ".jsonl"), "file is empty"),
    F("whitespace-only-file", raw(" \n\t\n  \r\n", ".jsonl"), "file holds only whitespace"),
    F("missing-file", special(lambda p: None, ".jsonl"), "file not found (set data.path to your dataset)"),
    F("directory-not-file", special(lambda p: p.mkdir(), ".jsonl"), "is a directory; data.path must name a file"),
    F("unknown-suffix", raw("<records/>", ".xml"), "cannot tell the format from suffix '.xml'; set data.format"),
    F("unknown-format-setting", raw("{}", ".jsonl"), "unknown data.format 'yaml'", format="yaml"),
    F("table-without-mapping", csv_file(), "is a table; describe its columns under data.table"),
    # CSV tables, file level
    F("csv-missing-column", csv_file(header="id,text,label,ints"),
      "columns ['caus'] named in data.table are not in the header ['id', 'text', 'label', 'ints']", table=TABLE),
    F("csv-wrong-separator", raw(CSV_HEADER.replace(",", ";") + "\nr1;hello;joy;1;1\n", ".csv"),
      "columns ['id', 'text', 'label', 'ints', 'caus'] named in data.table are not in the header "
      "['id;text;label;ints;caus']",
      table=TABLE),
    F("csv-duplicate-column", csv_file(header=CSV_HEADER + ",text", extra_cell="a second text"),
      "columns ['text'] named in data.table appear more than once in the header", table=TABLE),
    F("csv-header-only", raw(CSV_HEADER + "\n\n", ".csv"), "file holds a header but no rows", table=TABLE),
    F("csv-unclosed-quote", csv_file(csv_row(text='"never closed'), csv_row(rid="after")),
      "CSV syntax error in the row starting at line 73: unexpected end of data", table=TABLE),
    F("csv-text-after-quote", csv_file(csv_row(text='"quoted"then more')),
      "CSV syntax error in the row starting at line 73: ',' expected after '\"'", table=TABLE),
    F("csv-cell-over-csv-limit", csv_file(csv_row(text="x" * 140_000)),
      "CSV syntax error in the row starting at line 73: field larger than field limit (131072)", table=TABLE),
    F("csv-invalid-utf8", csv_file(csv_row(text="caf").replace("caf", "caf\xe9").encode("latin-1")),
      f"invalid utf-8 at byte {len(CSV_BASE) + len('bad,caf')} (line 73): invalid continuation byte", table=TABLE),
    F("csv-utf16", csv_file(encoding="utf-16"),
      "invalid utf-8 at byte 0 (line 1): invalid start byte; the file is UTF-16 LE (byte-order mark)", table=TABLE),
    # CSV tables, record level
    K("csv-extra-fields", csv_file(csv_row() + ",surplus"),
      Bad("<row>", "row has 6 fields, the header has 5 (set data.table.overflow_into)", rid=None), table=TABLE),
    K("csv-short-row", csv_file("bad,some text,joy"), Bad("<row>", "row has 3 fields, the header has 5", rid=None),
      table=TABLE),
    K("csv-stray-carriage-return", csv_file(csv_row(text="first half\rsecond half")),
      Bad("<row>", "row has 2 fields, the header has 5", rid=None),
      Bad("<row>", "row has 4 fields, the header has 5", index=BAD + 1, rid=None), extra=2, table=TABLE,
      what="a bare `\\r` inside a cell ends the row there"),
    K("csv-unknown-label", csv_file(csv_row(label="love")),
      Bad("label", "label 'love' is not one of the class names ['joy', 'fear'"), table=TABLE),
    K("csv-unmapped-code", csv_file(csv_row(caus="7")),
      Bad("regret_factor", "column caus value '7' is not in its map ['1', '2', '3']"), table=TABLE),
    K("csv-value-out-of-range", csv_file(csv_row(ints="5")),
      Bad("emotions.intensity", "column ints value '5' is outside its range [1, 4]"), table=TABLE),
    K("csv-non-numeric-cell", csv_file(csv_row(ints="high")),
      Bad("emotions.intensity", "column ints value 'high' is not a finite number"), table=TABLE),
    K("csv-nan-cell", csv_file(csv_row(ints="nan")),
      Bad("emotions.intensity", "column ints value 'nan' is not a finite number"), table=TABLE),
    K("csv-inf-cell", csv_file(csv_row(ints="-inf")),
      Bad("emotions.intensity", "column ints value '-inf' is not a finite number"), table=TABLE),
    K("csv-empty-text", csv_file(csv_row(text="")), Bad("text", "is empty or whitespace only"), table=TABLE),
    K("csv-empty-id", csv_file(csv_row(rid=" ")), Bad("id", "must not be empty", rid=""), table=TABLE),
    K("csv-duplicate-id", csv_file(csv_row(rid="r3")), Bad("id", "duplicate id (first used by record 3)", rid="r3"),
      table=TABLE),
    K("csv-text-too-long", csv_file(csv_row(text="y" * 20_001)),
      Bad("text", "is 20001 characters long; the limit is data.max_text_chars=20000"), table=TABLE),
    K("csv-label-index-not-integer", csv_file(csv_row(label="2.5"), label_index=True),
      Bad("label", "label '2.5' is not an integer"), table=INDEX_TABLE),
    K("csv-label-index-out-of-range", csv_file(csv_row(label="8"), label_index=True),
      Bad("label", "is 7, outside 0..6"), table=INDEX_TABLE),
    K("csv-leading-bom", csv_file(prefix="\ufeff".encode()), extra=0, table=TABLE,
      what="accepted: the BOM is skipped, so the first column is still `id`"),
]


def test_the_corpus_is_large_and_its_kinds_are_distinct():
    names = [k.name for k in CORPUS]
    assert len(names) == len(set(names)) and len(names) >= 30
    assert {k.fmt() for k in CORPUS} >= {"jsonl", "json", "csv"}


# -- running one kind -----------------------------------------------------------------------------
def run(kind: Kind, tmp_path: Path, on_invalid: str) -> tuple[Path, PreparedDataset]:
    path = tmp_path / f"{kind.name}{kind.write.suffix}"
    kind.write(path)
    settings = PipelineSettings(format=kind.format, table=kind.table, on_invalid=on_invalid, **DATA_DEFAULTS)
    return path, prepare_dataset(path, SCHEMA, settings, encoder=None, cache_dir=tmp_path / "cache", progress=False)


def expected_counts(kind: Kind) -> dict[str, int]:
    read = N_BASE + kind.extra
    quarantined = len({b.index for b in kind.problems})
    return {"read": read, "kept": read - 1 - quarantined, "near_duplicates": 1, "quarantined": quarantined}


def locator(kind: Kind, path: Path, b: Bad) -> str:
    """How Problem.__str__ names the record: file, index, line (where the format has lines), id."""
    line = kind.line_of(b.index)
    return (f"{path}: record {b.index}" + (f" (line {line})" if line is not None else "")
            + f", id {'?' if b.rid is None else repr(b.rid)}, field '{b.field}': {b.rule}")


def assert_file_error(kind: Kind, tmp_path: Path, on_invalid: str) -> None:
    path = tmp_path / f"{kind.name}{kind.write.suffix}"
    with pytest.raises(DataFileError) as info:
        run(kind, tmp_path, on_invalid)
    err = info.value
    assert err.path == str(path) and str(err).startswith(f"{path}: ")
    assert kind.file_error in err.reason, err.reason


@pytest.mark.parametrize("kind", CORPUS, ids=[k.name for k in CORPUS])
def test_on_invalid_error_names_file_record_field_and_rule(kind, tmp_path):
    if kind.file_error:
        assert_file_error(kind, tmp_path, "error")
        return
    if not kind.problems:  # accepted input
        _, prepared = run(kind, tmp_path, "error")
        assert prepared.report["counts"]["kept"] == expected_counts(kind)["kept"]
        return
    path = tmp_path / f"{kind.name}{kind.write.suffix}"
    with pytest.raises(DataValidationError) as info:
        run(kind, tmp_path, "error")
    err = info.value
    got = [(p.source, p.index, p.line, p.record_id, p.field) for p in err.problems]
    assert got == [(str(path), b.index, kind.line_of(b.index), b.rid, b.field) for b in kind.problems]
    for problem, b in zip(err.problems, kind.problems, strict=True):
        assert problem.rule.startswith(b.rule), problem.rule
    message = str(err)
    counts = expected_counts(kind)
    assert message.startswith(f"{counts['quarantined']} of {counts['read']} records are invalid ")
    for b in kind.problems:
        assert locator(kind, path, b) in message
    assert not list((tmp_path / "cache").rglob("report.json"))  # nothing half-prepared is left to reuse


@pytest.mark.parametrize("kind", CORPUS, ids=[k.name for k in CORPUS])
def test_on_invalid_skip_quarantines_with_reason_and_counts_reconcile(kind, tmp_path):
    if kind.file_error:  # nothing to count: the same error under both policies
        assert_file_error(kind, tmp_path, "skip")
        return
    _, prepared = run(kind, tmp_path, "skip")
    counts = prepared.report["counts"]
    assert {k: counts[k] for k in ("read", "kept", "near_duplicates", "quarantined")} == expected_counts(kind)
    assert counts["reconciles"] and counts["read"] == counts["kept"] + counts["near_duplicates"] + counts["quarantined"]
    assert len(prepared.records) == counts["kept"] == sum(len(v) for v in prepared.split.values())

    quarantine = read_jsonl(prepared.directory / "quarantine.jsonl")  # also: valid UTF-8 JSON, whatever the input
    expected: dict[int, list[Bad]] = {}
    for b in kind.problems:
        expected.setdefault(b.index, []).append(b)
    assert [(q["index"], q["line"], q["id"]) for q in quarantine] == [
        (i, kind.line_of(i), bs[0].rid) for i, bs in expected.items()]
    for q, bs in zip(quarantine, expected.values(), strict=True):
        assert len(q["problems"]) == len(bs)
        for reason, b in zip(q["problems"], bs, strict=True):
            assert reason.startswith(f"{b.field}: {b.rule}"), reason
    assert "near" not in {r.id for r in prepared.records}
    assert not {r.source_index for r in prepared.records} & {q["index"] for q in quarantine}
    if kind.ignored is not None:
        assert prepared.report["validation"]["ignored_fields"] == kind.ignored


def test_skip_with_no_valid_record_names_the_file_instead_of_failing_in_the_split(tmp_path):
    path = tmp_path / "all_bad.jsonl"
    path.write_text("".join(json.dumps(bad(id=f"b{i}", label=9)) + "\n" for i in range(3)), encoding="utf-8")
    settings = PipelineSettings(on_invalid="skip")
    with pytest.raises(DataFileError) as info:
        prepare_dataset(path, SCHEMA, settings, encoder=None, cache_dir=tmp_path, progress=False)
    assert info.value.path == str(path)
    assert info.value.reason.startswith("no valid record: all 3 records are invalid; the first problems:")
    assert f"{path}: record 0 (line 1), id 'b0', field 'label': is 9" in info.value.reason


def test_a_typo_in_a_field_name_is_logged(tmp_path, caplog):
    kind = next(k for k in CORPUS if k.name == "emotions-misspelt-key")
    with caplog.at_level("INFO", logger="redheart.data.pipeline"):
        run(kind, tmp_path, "skip")
    assert "fields outside the schema, ignored (check for typos)" in caplog.text and "emotions.intensty" in caplog.text


# -- the entry point ------------------------------------------------------------------------------
TRAIN_CASES = {
    "array-syntax-error": [],
    "text-lone-surrogate": [],
    "integer-over-4300-digits": [],
    "csv-unclosed-quote": ["data.table={columns: {id: id, text: text, label: label}}"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAIN_CASES))
def test_train_py_exits_2_without_a_traceback(name, tmp_path):
    kind = next(k for k in CORPUS if k.name == name)
    path = kind.write(tmp_path / f"{name}{kind.write.suffix}")
    result = subprocess.run(
        [sys.executable, "train.py", "data=records", f"data.path={path}", "data.embedding.backend=hashing",
         "data.embedding.dim=64", "data.progress=false", "model=tiny", f"data.cache_dir={tmp_path / 'cache'}",
         f"hydra.run.dir={tmp_path / 'run'}", *TRAIN_CASES[name]],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    assert str(path) in output
    if kind.file_error:
        assert kind.file_error in output
    else:
        b = kind.problems[0]
        assert f"field '{b.field}': {b.rule}" in output


def test_docs_list_every_kind():
    doc = (REPO_ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([a-z0-9-]+)`", doc, flags=re.MULTILINE))
    assert listed == {k.name for k in CORPUS}
