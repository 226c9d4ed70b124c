"""TableAdapter: column mapping of CSV / any-separator files onto the record schema, and the real ISEAR file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redheart.data.errors import DataError, DataFileError
from redheart.data.table import TableAdapter
from redheart.data.validation import validate_records
from redheart.io import read_jsonl
from redheart.schema import TaskSchema

SCHEMA = TaskSchema()
REPO = Path(__file__).resolve().parents[1]
ISEAR_CSV = REPO / "../shared/data/isear/isear.csv"

CSV = 'id,text,label,ints,caus,when\na,"Hello, world",joy,1,1,4\nb,plain text,FEAR,4,2,1\nc,third,Anger,0,,2\n'
CSV_TABLE = {
    "columns": {"id": "id", "text": "text", "label": "label"},
    "targets": {
        "intensity": {"column": "ints", "range": [1, 4], "missing": [0]},
        "regret_factor": {"column": "caus", "map": {1: 1.0, 2: 0.5}, "missing": [9]},
        "bentham": {"propinquity": {"column": "when", "range": [4, 1]}},
        "surd": {"surprise": {"column": "ints", "range": [4, 1], "missing": [0]}},
    },
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def read(tmp_path: Path, text: str, name: str = "t.csv", **table):
    return TableAdapter(table, SCHEMA).read(write(tmp_path / name, text))


def pipe_table(**extra):
    return {"sep": "|", "quoting": "none", "columns": {"id": "id", "text": "text", "label": "label"}, **extra}


def test_csv_with_minimal_quoting_maps_every_column(tmp_path):
    raws = read(tmp_path, CSV, **CSV_TABLE)
    assert [(r.index, r.line, r.problems) for r in raws] == [(0, 2, []), (1, 3, []), (2, 4, [])]
    a, b, c = (r.data for r in raws)
    assert (a["id"], a["text"], a["label"]) == ("a", "Hello, world", 0)
    assert (b["label"], c["label"]) == (1, 2)  # names match case-insensitively
    assert [d["emotions"]["intensity"] for d in (a, b, c)] == [0.0, 1.0, None]  # 0 is a missing code
    assert [d["regret_factor"] for d in (a, b, c)] == [1.0, 0.5, None]  # empty cell → missing
    assert [d["bentham_scores"][3] for d in (a, b, c)] == [0.0, 1.0, pytest.approx(2 / 3)]  # reversed range
    assert a["bentham_scores"][:3] == [None] * 3 and len(a["bentham_scores"]) == 10
    assert [d["surd_metrics"] for d in (a, b, c)] == [{"surprise": 1.0}, {"surprise": 0.0}, {"surprise": None}]


def test_mapped_rows_validate_into_records(tmp_path):
    result = validate_records(read(tmp_path, CSV, **CSV_TABLE), SCHEMA, "t.csv")
    assert result.problems == [] and [r.id for r in result.records] == ["a", "b", "c"]
    assert result.records[0].bentham[3] == 0.0 and result.records[0].surd == [1.0, None, None, None]


def test_pipe_file_with_quoting_none_and_label_index_offset(tmp_path):
    text = 'id|text|label\nx|"quoted" text, with comma|1\ny|plain|7\n'
    raws = read(tmp_path, text, "t.psv", **pipe_table(label_encoding="index", label_offset=1))
    assert [r.data["text"] for r in raws] == ['"quoted" text, with comma', "plain"]
    assert [r.data["label"] for r in raws] == [0, 6]


def test_without_id_column_the_id_comes_from_the_line(tmp_path):
    raws = read(tmp_path, "text,label\nhi,joy\n\nyo,fear\n", columns={"text": "text", "label": "label"})
    assert [r.data["id"] for r in raws] == ["row2", "row4"]  # the blank line is skipped but counted


@pytest.mark.parametrize("cell, encoding, fragment", [
    ("love", "name", "label 'love' is not one of the class names"),
    ("two", "index", "label 'two' is not an integer"),
])
def test_bad_label_is_a_single_label_problem(tmp_path, cell, encoding, fragment):
    raws = read(tmp_path, f"id|text|label\nq|some text|{cell}\n", **pipe_table(label_encoding=encoding))
    assert [f for f, _ in raws[0].problems] == ["label"]
    result = validate_records(raws, SCHEMA, "t.csv")
    assert [(p.field, p.line) for p in result.problems] == [("label", 2)]
    assert fragment in result.problems[0].rule


@pytest.mark.parametrize("ints, caus, field, fragment", [
    ("5", "1", "emotions.intensity", "column ints value '5' is outside its range [1, 4]"),
    ("x", "1", "emotions.intensity", "column ints value 'x' is not a finite number"),
    ("inf", "1", "emotions.intensity", "column ints value 'inf' is not a finite number"),
    ("2", "3", "regret_factor", "column caus value '3' is not in its map ['1', '2']"),
])
def test_bad_target_cells_name_the_column(tmp_path, ints, caus, field, fragment):
    table = {**CSV_TABLE, "targets": {k: CSV_TABLE["targets"][k] for k in ("intensity", "regret_factor")}}
    raws = read(tmp_path, f"id,text,label,ints,caus,when\nz,t,joy,{ints},{caus},1\n", **table)
    assert raws[0].problems == [(field, fragment)]
    assert validate_records(raws, SCHEMA, "t.csv").records == []


def test_overflow_fields_are_merged_into_the_overflow_column(tmp_path):
    text = "id|text|label\na|part one|part two|part three|joy\nb|whole|fear\n"
    raws = read(tmp_path, text, **pipe_table(overflow_into="text", overflow_joiner=" / "))
    assert [(r.data["text"], r.data["label"], r.problems) for r in raws] == [
        ("part one / part two / part three", 0, []), ("whole", 1, [])]


def test_long_rows_without_overflow_and_short_rows_are_problems(tmp_path):
    raws = read(tmp_path, "id|text|label\na|one|two|joy\nb|short\nc|fine|joy\n", **pipe_table())
    assert raws[0].data is None and raws[0].problems == [
        ("<row>", "row has 4 fields, the header has 3 (set data.table.overflow_into)")]
    assert raws[1].data is None and raws[1].problems == [("<row>", "row has 2 fields, the header has 3")]
    result = validate_records(raws, SCHEMA, "t.psv")
    assert [r.id for r in result.records] == ["c"] and [q["line"] for q in result.quarantined] == [2, 3]


@pytest.mark.parametrize("table, match", [
    ({**CSV_TABLE, "targets": {"mood": {"column": "ints", "range": [1, 4]}}}, r"targets has unknown keys \['mood'\]"),
    ({**CSV_TABLE, "targets": {"bentham": {"joyfulness": {"column": "ints", "range": [1, 4]}}}},
     r"targets\.bentham names \['joyfulness'\] not in the schema"),
    ({**CSV_TABLE, "targets": {"surd": {"boredom": {"column": "ints", "range": [1, 4]}}}}, "targets.surd names"),
    ({"columns": {"id": "id", "label": "label"}}, r"data\.table\.columns\.text must name a column"),
    ({"columns": {"text": "text"}}, r"data\.table\.columns\.label must name a column"),
    ({**CSV_TABLE, "quoting": "all"}, "data.table.quoting must be one of"),
    ({**CSV_TABLE, "label_encoding": "onehot"}, "label_encoding must be 'name' or 'index'"),
])
def test_config_errors_raise_value_error(table, match):
    with pytest.raises(ValueError, match=match):
        TableAdapter(table, SCHEMA)


def test_columns_missing_from_the_header_raise_data_file_error(tmp_path):
    table = {**CSV_TABLE, "metadata": {"country": "COUN"}}
    with pytest.raises(DataFileError, match=r"columns \['COUN'\] named in data\.table are not in the header"):
        read(tmp_path, CSV, **table)
    with pytest.raises(DataFileError, match="header but no rows"):
        read(tmp_path, "id,text,label\n\n", columns={"text": "text", "label": "label"})


def test_table_metadata_reaches_the_record(tmp_path):
    raws = read(tmp_path, CSV, **CSV_TABLE, metadata={"country": "caus"})
    assert raws[0].data["metadata"] == {"country": "1"}
    result = validate_records(raws, SCHEMA, "t.csv")
    assert result.records[0].metadata.get("country") == "1"


def test_degenerate_range_is_a_config_error(tmp_path):
    table = {**CSV_TABLE, "targets": {"intensity": {"column": "ints", "range": [2, 2]}}}
    with pytest.raises(ValueError, match="range"):
        read(tmp_path, "id,text,label,ints,caus,when\nz,t,joy,2,1,1\n", **table)


def test_multi_line_row_reports_the_line_it_starts_on(tmp_path):
    raws = read(tmp_path, 'text,label\n"two\nlines",joy\nnext,fear\n', columns={"text": "text", "label": "label"})
    assert [r.line for r in raws] == [2, 4]


# -- the real ISEAR file ----------------------------------------------------------------------------
@pytest.mark.isear
@pytest.mark.slow
@pytest.mark.skipif(not ISEAR_CSV.exists(), reason="needs ../shared/data/isear/isear.csv")
def test_isear_through_the_real_config(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    monkeypatch.setenv("REDHEART_ROOT", str(REPO))
    GlobalHydra.instance().clear()
    overrides = ["data=isear", f"data.cache_dir={tmp_path}", "data.embedding.backend=hashing",
                 f"paths.output_dir={tmp_path}", "data.progress=false"]
    try:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    instantiate(cfg.data).prepare_data()

    report = json.loads((tmp_path / "data_report.json").read_text(encoding="utf-8"))
    counts = report["counts"]
    assert counts["read"] == 7666 == counts["kept"] + counts["near_duplicates"] + counts["quarantined"]
    assert counts["quarantined"] > 0 and counts["kept"] > 7000
    quarantine = read_jsonl(tmp_path / "quarantine.jsonl")
    assert len(quarantine) == counts["quarantined"]
    assert all(q["problems"] and all(p.startswith("text: is a placeholder answer") for p in q["problems"])
               for q in quarantine)

    rows = read_jsonl(Path(report["prepared_dir"]) / "records.jsonl")
    assert len(rows) == counts["kept"]
    text = next(r["text"] for r in rows if r["id"] == "0410221")
    assert "same language" in text and "encounter" in text
    assert "á" not in text and "\\" not in text
    assert not [r["id"] for r in rows if "á " in r["text"]]


@pytest.mark.parametrize("sep, what", [("\\t", "2 characters"), ("", "empty"), ("||", "2 characters")])
def test_a_separator_that_is_not_one_character_is_a_data_error_saying_how_to_pass_a_tab(sep, what):
    with pytest.raises(DataError, match="data.table.sep must be exactly one character") as info:
        TableAdapter({**CSV_TABLE, "sep": sep}, SCHEMA)
    assert what in str(info.value) and "for a tab" in str(info.value) and "\n" not in str(info.value)


def test_the_command_line_form_in_the_message_passes_a_real_tab(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    argument = "data.table.sep='\t'"  # what bash makes of $'data.table.sep=\'\t\''
    sep = OverridesParser.create().parse_override(argument).value()
    records = read(tmp_path, CSV.replace(",", "\t").replace('"Hello\t world"', "Hello, world"), sep=sep, **CSV_TABLE)
    assert records[0].data["text"] == "Hello, world" and len(records) == 3


def test_quoting_none_on_a_csv_quoted_file_warns_with_the_count(tmp_path, caplog):
    text = 'id,text,label\na,"She said ""no"" twice",joy\nb,"plain ""quoted"" word",fear\nc,no quotes,anger\n'
    with caplog.at_level("WARNING", logger="redheart.data.table"):
        records = read(tmp_path, text, quoting="none", columns={"id": "id", "text": "text", "label": "label"})
    assert records[0].data["text"] == '"She said ""no"" twice"'  # the escapes stay: that is the problem
    assert '2 texts hold doubled quotes ("") inside quotes' in caplog.text and "quoting: minimal" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="redheart.data.table"):
        records = read(tmp_path, text, columns={"id": "id", "text": "text", "label": "label"})
    assert records[0].data["text"] == 'She said "no" twice' and "doubled quotes" not in caplog.text


@pytest.mark.slow
def test_train_py_with_a_literal_backslash_t_separator_exits_2_in_one_line(tmp_path):
    import subprocess
    import sys

    path = write(tmp_path / "d.tsv", CSV.replace(",", "\t"))
    result = subprocess.run(
        [sys.executable, "train.py", "data=isear", f"data.path={path}", "data.table.sep=\\t",
         "data.embedding.backend=hashing", "data.progress=false", "model=tiny", f"data.cache_dir={tmp_path / 'c'}",
         f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output and "data.table.sep must be exactly one character, got '\\\\t'" in output
