"""Reading raw records: file-level errors name the file and the reason; broken JSONL lines become records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redheart.data.errors import DataFileError
from redheart.data.pipeline import read_raw_records
from redheart.data.sources import detect_format, read_json_array, read_json_lines
from redheart.schema import TaskSchema

SCHEMA = TaskSchema()


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def file_error(path: Path, fmt: str = "auto") -> DataFileError:
    with pytest.raises(DataFileError) as info:
        read_raw_records(path, SCHEMA, fmt, None)
    err = info.value
    assert err.path == str(path) and str(err).startswith(f"{path}: ")
    return err


# -- file-level errors ----------------------------------------------------------------------------
def test_missing_file(tmp_path):
    err = file_error(tmp_path / "nope.jsonl")
    assert "file not found" in err.reason and "data.path" in err.reason


def test_directory(tmp_path):
    (tmp_path / "dir.json").mkdir()
    assert "is a directory" in file_error(tmp_path / "dir.json").reason


@pytest.mark.parametrize("name", ["empty.json", "empty.jsonl", "empty.csv"])
def test_empty_file(tmp_path, name):
    assert file_error(write(tmp_path / name, b"")).reason == "file is empty"


@pytest.mark.parametrize("name, fmt", [("ws.json", "auto"), ("ws.json", "json"), ("ws.jsonl", "auto")])
def test_whitespace_only_file(tmp_path, name, fmt):
    path = write(tmp_path / name, " \n\t\n  \r\n")
    assert file_error(path, fmt).reason == "file holds only whitespace"


def test_json_array_syntax_error_names_line_and_column(tmp_path):
    path = write(tmp_path / "bad.json", '[\n  {"id": 1},\n  {"id": 2,,}\n]')
    reason = file_error(path).reason
    assert reason.startswith("JSON syntax error at line 3, column 12")
    assert "Expecting property name" in reason


def test_top_level_object_instead_of_array(tmp_path):
    path = write(tmp_path / "obj.json", '{"id": "a", "text": "x", "label": 0}')
    reason = file_error(path, "json").reason
    assert "top level is a JSON object" in reason and "expected an array of records" in reason


def test_invalid_utf8_in_json_array_names_the_byte(tmp_path):
    path = write(tmp_path / "latin1.json", b'[{"id": "a", "text": "caf\xe9"}]')
    assert file_error(path).reason.startswith("invalid UTF-8 at byte 25")


def test_json_array_records_keep_their_index(tmp_path):
    path = write(tmp_path / "ok.json", "\ufeff" + json.dumps([{"id": "a"}, [1], {"id": "c"}]))
    kind, raws = read_raw_records(path, SCHEMA, "auto", None)
    assert kind == "json"
    assert [(r.index, r.line, r.data, r.problems) for r in raws] == [
        (0, None, {"id": "a"}, []), (1, None, [1], []), (2, None, {"id": "c"}, [])]


# -- JSON Lines -----------------------------------------------------------------------------------
def test_broken_jsonl_lines_become_records_with_problems(tmp_path):
    lines = [b'{"id": "a"}', b'{"id": "b", "text" "x"}', b"", b"   ", b'{"id": "c", "text": "caf\xe9"}',
             b'{"id": "d"}']
    raws = read_json_lines(write(tmp_path / "mixed.jsonl", b"\n".join(lines) + b"\n"))
    assert [(r.index, r.line) for r in raws] == [(0, 1), (1, 2), (2, 5), (3, 6)]
    assert raws[0].data == {"id": "a"} and raws[3].data == {"id": "d"}
    assert raws[0].problems == [] and raws[3].problems == []
    assert raws[1].data is None
    assert raws[1].problems == [("<line>", "JSON syntax error at column 20: Expecting ':' delimiter")]
    assert raws[2].data is None  # the offset counts from the start of its line
    assert raws[2].problems == [("<line>", "invalid UTF-8 at byte 24")]
    assert lines[4][24:25] == b"\xe9"


def test_jsonl_first_line_may_carry_a_bom_and_last_line_no_newline(tmp_path):
    raws = read_json_lines(write(tmp_path / "bom.jsonl", '\ufeff{"id": "a"}\n{"id": "b"}'))
    assert [r.data for r in raws] == [{"id": "a"}, {"id": "b"}]


def test_jsonl_line_that_is_not_an_object_is_still_read(tmp_path):
    raws = read_json_lines(write(tmp_path / "arr.jsonl", '[1, 2]\n"x"\n'))
    assert [r.data for r in raws] == [[1, 2], "x"] and all(not r.problems for r in raws)


def test_read_json_array_directly_on_whitespace(tmp_path):
    with pytest.raises(DataFileError, match="only whitespace"):
        read_json_array(write(tmp_path / "ws.json", "   \n"))


# -- format detection -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, content, expected", [
    ("a.jsonl", "{}", "jsonl"),
    ("a.ndjson", "{}", "jsonl"),
    ("a.JSONL", "{}", "jsonl"),
    ("a.json", '  \n [{"id": 1}]', "json"),
    ("a.json", '\ufeff[{"id": 1}]', "json"),
    ("a.json", '{"id": 1}\n{"id": 2}\n', "jsonl"),
    ("a.csv", "id,text\n", "table"),
    ("a.tsv", "id\ttext\n", "table"),
    ("a.psv", "id|text\n", "table"),
])
def test_detect_format_by_suffix(tmp_path, name, content, expected):
    assert detect_format(write(tmp_path / name, content)) == expected


def test_detect_format_unknown_suffix(tmp_path):
    with pytest.raises(DataFileError, match=r"cannot tell the format from suffix '\.xml'; set data\.format"):
        detect_format(write(tmp_path / "a.xml", "<a/>"))


def test_explicit_format_overrides_the_suffix(tmp_path):
    path = write(tmp_path / "records.csv", '{"id": "a"}\n')
    assert detect_format(path, "jsonl") == "jsonl"
    assert detect_format(write(tmp_path / "a.xml", "[]"), "json") == "json"
    kind, raws = read_raw_records(path, SCHEMA, "jsonl", None)
    assert kind == "jsonl" and raws[0].data == {"id": "a"}
    with pytest.raises(DataFileError, match="unknown data.format 'yaml'"):
        detect_format(path, "yaml")


def test_table_without_table_config_names_data_table(tmp_path):
    err = file_error(write(tmp_path / "t.csv", "id,text,label\n1,hi,joy\n"))
    assert "is a table" in err.reason and "data.table" in err.reason
