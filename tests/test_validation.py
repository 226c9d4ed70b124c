"""validate_records: every rule reports its field and rule; TextCleaning; DataValidationError; pipeline."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from redheart.data.errors import DataValidationError
from redheart.data.pipeline import PipelineSettings, build_splits, prepare_dataset
from redheart.data.sources import RawRecord
from redheart.data.validation import TextCleaning, validate_records
from redheart.io import read_jsonl
from redheart.schema import TaskSchema

SCHEMA = TaskSchema()
SOURCE = "data.jsonl"
DROP = object()  # a patch value that removes the field
NAN, INF = float("nan"), float("inf")


def rec(**patch):
    base = {"id": "r1", "text": "I was happy today", "label": 0, "emotions": {"intensity": 0.5},
            "regret_factor": 0.2, "bentham_scores": [0.5] * 10, "surd_metrics": {"surprise": 0.5}}
    base.update(patch)
    return {k: v for k, v in base.items() if v is not DROP}


def validate(*datas, cleaning=None, **kw):
    raws = [RawRecord(i, i + 1, d) for i, d in enumerate(datas)]
    return validate_records(raws, SCHEMA, SOURCE, cleaning, **kw)


def only_problem(data, **kw):
    result = validate(data, **kw)
    assert result.records == [] and len(result.quarantined) == 1
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


CASES = [
    ({"id": DROP}, "id", "is required"),
    ({"id": 1.5}, "id", "must be a string or an integer, got float"),
    ({"id": ["a"]}, "id", "got list"),
    ({"id": True}, "id", "got bool"),
    ({"id": ""}, "id", "must not be empty"),
    ({"id": "   "}, "id", "must not be empty"),
    ({"text": DROP}, "text", "is required"),
    ({"text": 42}, "text", "must be a string, got int"),
    ({"text": ""}, "text", "is empty or whitespace only"),
    ({"text": " \t\n "}, "text", "is empty or whitespace only"),
    ({"label": DROP}, "label", "is required"),
    ({"label": True}, "label", "must be an integer in 0..6, got bool"),
    ({"label": "joy"}, "label", "must be an integer in 0..6, got str"),
    ({"label": 1.0}, "label", "got float"),
    ({"label": -1}, "label", "is -1, outside 0..6"),
    ({"label": 7}, "label", "is 7, outside 0..6"),
    ({"emotions": [0.5]}, "emotions", "must be an object, got list"),
    ({"emotions": "happy"}, "emotions", "must be an object, got str"),
    ({"bentham_scores": [0.5] * 9}, "bentham_scores", "must have 10 values (intensity, duration"),
    ({"bentham_scores": [0.5] * 11}, "bentham_scores", "got 11"),
    ({"bentham_scores": 0.5}, "bentham_scores", "must be a list of 10 numbers or an object, got float"),
    ({"bentham_scores": {"intensity": 0.5, "joy": 0.1}}, "bentham_scores", "unknown keys ['joy']"),
    ({"bentham_scores": [0.5] * 3 + [2.0] + [0.5] * 6}, "bentham_scores[3] (propinquity)", "in [0, 1], got 2.0"),
    ({"bentham_scores": {"purity": -1}}, "bentham_scores.purity", "must be in [0, 1], got -1"),
    ({"surd_metrics": {"surprise": 0.1, "boredom": 0.2}}, "surd_metrics", "unknown keys ['boredom']"),
    ({"surd_metrics": [0.1] * 4}, "surd_metrics", "must be an object keyed by ['surprise'"),
    ({"surd_metrics": {"surprise": INF}}, "surd_metrics.surprise", "must be a finite number"),
]


@pytest.mark.parametrize("patch, field, fragment", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_each_rule_names_field_and_rule(patch, field, fragment):
    problem = only_problem(rec(**patch))
    assert problem.field == field
    assert fragment in problem.rule
    assert problem.source == SOURCE and problem.line == 1


BAD_UNIT = [(NAN, "finite number"), (INF, "finite number"), (-0.1, "must be in [0, 1], got -0.1"),
            (1.5, "must be in [0, 1], got 1.5"), ("0.5", "got str"), (True, "got bool")]


@pytest.mark.parametrize("value, fragment", BAD_UNIT)
@pytest.mark.parametrize("field", ["emotions.intensity", "regret_factor"])
def test_unit_interval_targets(field, value, fragment):
    patch = {"emotions": {"intensity": value}} if field == "emotions.intensity" else {"regret_factor": value}
    problem = only_problem(rec(**patch))
    assert (problem.field, problem.record_id) == (field, "r1")
    assert fragment in problem.rule


@pytest.mark.parametrize("data, kind", [(["a", "b"], "list"), (3, "int"), ("text", "str")])
def test_record_that_is_not_an_object(data, kind):
    problem = only_problem(data)
    assert problem.field == "<record>" and f"must be a JSON object, got {kind}" in problem.rule


def test_unparsable_raw_record_is_quarantined_with_its_reading_problem():
    raw = RawRecord(0, 4, None, [("<line>", "JSON syntax error at column 3: boom")])
    result = validate_records([raw], SCHEMA, SOURCE)
    assert [(p.field, p.line) for p in result.problems] == [("<line>", 4)]
    assert result.quarantined[0]["problems"] == ["<line>: JSON syntax error at column 3: boom"]


def test_duplicate_id_flags_the_later_record_and_keeps_the_first():
    result = validate(rec(id="a"), rec(id="b", text="other"), rec(id="a", text="third"))
    assert [r.id for r in result.records] == ["a", "b"]
    assert result.records[0].text == "I was happy today"
    assert validate(rec(id=7), rec(id="7")).records[0].id == "7"  # an integer id becomes a string
    assert [q["index"] for q in result.quarantined] == [2]
    assert result.problems[0].field == "id" and "duplicate id (first used by record 0)" in result.problems[0].rule


def test_text_length_limit_counts_cleaned_text():
    assert validate(rec(text="x" * 10), max_text_chars=10).records
    assert validate(rec(text="xxxxx      xxxx"), max_text_chars=10).records  # collapsed to 10 characters
    problem = only_problem(rec(text="x" * 11), max_text_chars=10)
    assert problem.field == "text" and "is 11 characters long; the limit is data.max_text_chars=10" in problem.rule


def test_placeholder_text_is_a_problem_only_when_the_whole_text_matches():
    cleaning = TextCleaning.from_config({"placeholders": [r"\[?\s*no response\s*\.?\s*\]?"]})
    problem = only_problem(rec(text="[No response]"), cleaning=cleaning)
    assert problem.field == "text" and "is a placeholder answer" in problem.rule
    assert validate(rec(text="No response from him hurt me"), cleaning=cleaning).records


def test_valid_optional_shapes_are_kept_with_missing_entries_as_none():
    names = {"intensity": 0.25, "self_damage": 1.0}
    result = validate(
        rec(id="a", bentham_scores=names),
        rec(id="b", bentham_scores=[0.5, None] + [0.0] * 8, surd_metrics={n: None for n in SCHEMA.surd_names}),
        rec(id="c", emotions=None, regret_factor=None, bentham_scores=None, surd_metrics=None),
    )
    assert result.problems == []
    a, b, c = result.records
    assert a.bentham == [0.25] + [None] * 8 + [1.0]
    assert a.surd == [0.5, None, None, None]
    assert b.bentham[:3] == [0.5, None, 0.0] and b.surd == [None] * 4
    assert (c.intensity, c.regret_factor, c.bentham, c.surd) == (None, None, None, None)


def test_a_record_with_several_problems_reports_all_of_them():
    bad = rec(id=DROP, text="", label=9, regret_factor=2.0, bentham_scores=[0.1] * 9, emotions=[])
    result = validate(bad)
    fields = [p.field for p in result.problems]
    assert sorted(fields) == sorted(["id", "text", "label", "emotions", "regret_factor", "bentham_scores"])
    assert len(result.quarantined[0]["problems"]) == 6


def test_metadata_is_kept_and_unknown_fields_are_counted():
    emotions = {"intensity": 0.5, "primary": "joy", "secondary": ["fear"]}
    result = validate(rec(title="T", action="A", timestamp="2024-01-01", emotions=emotions, foo=1, bar=2),
                      rec(id="r2", foo=3))
    assert result.records[0].metadata == {"title": "T", "action": "A", "timestamp": "2024-01-01",
                                          "emotions.primary": "joy", "emotions.secondary": ["fear"]}
    assert result.records[1].metadata == {}
    assert result.ignored_fields == Counter({"foo": 2, "bar": 1})


def test_counts_reconcile():
    datas = [rec(id=f"ok{i}") for i in range(5)] + [rec(id="x", label=99), [1], rec(id="ok0"), rec(text=None)]
    result = validate(*datas)
    assert (len(result.records), len(result.quarantined)) == (5, 4)
    assert len(result.records) + len(result.quarantined) == result.n_read == len(datas)


def test_whitespace_only_text_is_rejected_without_whitespace_collapsing():
    problem = only_problem(rec(text="   "), cleaning=TextCleaning(collapse_whitespace=False))
    assert problem.field == "text"


def test_huge_integer_target_is_a_problem_not_a_crash():
    problem = only_problem(rec(regret_factor=10**400))
    assert problem.field == "regret_factor"


# -- TextCleaning -------------------------------------------------------------------------------
def test_replacements_apply_in_order():
    forward = TextCleaning.from_config({"replacements": [{"pattern": "a", "repl": "b"}, {"pattern": "b", "repl": "c"}]})
    backward = TextCleaning.from_config({"replacements": [{"pattern": "b", "repl": "c"},
                                                          {"pattern": "a", "repl": "b"}]})
    assert forward.clean("ab") == "cc"
    assert backward.clean("ab") == "bc"
    assert TextCleaning.from_config({"replacements": [{"pattern": "x"}]}).clean("axb") == "ab"  # repl defaults to ""


def test_whitespace_collapsing_can_be_switched_off():
    assert TextCleaning.from_config({}).clean("  a \t b\n\nc  ") == "a b c"
    assert TextCleaning.from_config({"collapse_whitespace": False}).clean(" a  b ") == " a  b "


@pytest.mark.parametrize("cfg, where", [
    ({"replacements": [{"pattern": "ok"}, {"pattern": "(", "repl": ""}]}, r"data\.clean\.replacements\[1\]"),
    ({"replacements": [{"repl": "x"}]}, r"data\.clean\.replacements\[0\]"),
    ({"placeholders": ["none", "[unclosed"]}, r"data\.clean\.placeholders\[1\]"),
])
def test_invalid_cleaning_config_names_the_rule(cfg, where):
    with pytest.raises(ValueError, match=where):
        TextCleaning.from_config(cfg)


# -- DataValidationError ------------------------------------------------------------------------
def test_validation_error_message_lists_every_problem():
    result = validate(rec(id="bad1", label=9), rec(id="good"), rec(id="bad2", text=""),
                      rec(id="bad3", regret_factor=-1))
    message = str(DataValidationError(result.problems, result.n_read))
    assert "3 of 4 records are invalid (3 problems)" in message
    for rid, field in (("bad1", "label"), ("bad2", "text"), ("bad3", "regret_factor")):
        assert f"id '{rid}', field '{field}'" in message
    assert SOURCE in message and "data.on_invalid=skip" in message


# -- pipeline -----------------------------------------------------------------------------------
WORDS = ("river", "candle", "harbor", "violin", "meadow", "glacier", "lantern", "orchard", "compass", "thunder")
BAD = {"bad-label": ({"label": 9}, "label:"), "bad-text": ({"text": "  "}, "text:"),
       "bad-nan": ({"emotions": {"intensity": NAN}}, "emotions.intensity:")}


def write_dataset(path: Path, n: int = 70) -> Path:
    rows = [{"id": f"v{i}", "label": i % 7, "regret_factor": 0.5,
             "text": f"Story {i}: the {WORDS[i % 10]} by the {WORDS[(i // 10) % 10]}, then {WORDS[(3 * i + 1) % 10]} "
                     f"#{i * 7919 % 10007}"} for i in range(n)]
    rows.append({**rows[0], "id": "near", "text": rows[0]["text"] + "!"})
    rows += [rec(id=rid, **patch) for rid, (patch, _) in BAD.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_build_splits_with_on_invalid_error_raises(tmp_path):
    path = write_dataset(tmp_path / "set.jsonl")
    with pytest.raises(DataValidationError) as info:
        build_splits(path, SCHEMA, PipelineSettings(on_invalid="error"), tmp_path / "out", progress=False)
    assert str(path) in str(info.value) and len({p.index for p in info.value.problems}) == len(BAD)
    for rid in BAD:
        assert f"'{rid}'" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_prepare_dataset_with_skip_quarantines_and_reconciles(tmp_path):
    path = write_dataset(tmp_path / "set.jsonl")
    prepared = prepare_dataset(path, SCHEMA, PipelineSettings(on_invalid="skip"), encoder=None, cache_dir=tmp_path,
                               progress=False)
    counts = prepared.report["counts"]
    assert counts["read"] == 74 == counts["kept"] + counts["near_duplicates"] + counts["quarantined"]
    assert (counts["kept"], counts["near_duplicates"], counts["quarantined"]) == (70, 1, 3)
    assert prepared.embeddings is None and len(prepared.records) == 70
    assert sum(len(v) for v in prepared.split.values()) == 70
    quarantine = read_jsonl(prepared.directory / "quarantine.jsonl")
    assert {q["id"] for q in quarantine} == set(BAD)
    for q in quarantine:
        assert q["problems"] and all(p.startswith(BAD[q["id"]][1]) for p in q["problems"])
    assert prepared.report["validation"]["problems_by_field"] == {"label": 1, "text": 1, "emotions": 1}
