"""Messages a first run on the bundled sample or on a small, partly invalid file shows."""

from __future__ import annotations

import json

import pytest

from redheart.data.errors import SplitError
from redheart.data.pipeline import PipelineSettings, build_splits, read_raw_records
from redheart.data.validation import TextCleaning, validate_records
from redheart.schema import TaskSchema
from tests.conftest import REPO_ROOT, write_records


def test_the_bundled_sample_has_no_field_outside_the_schema():
    path = REPO_ROOT / "data" / "sample.jsonl"
    _, raw = read_raw_records(path, TaskSchema(), "auto", None)
    validated = validate_records(raw, TaskSchema(), str(path), TextCleaning.from_config(None))
    assert not validated.ignored_fields, validated.ignored_fields
    assert {r.metadata.get("language") for r in validated.records} >= {"en", "ko"}


def test_a_split_error_after_skipping_invalid_records_counts_them_and_does_not_suggest_max_samples(tmp_path):
    path = write_records(tmp_path / "small.jsonl", n=28)
    with path.open("a", encoding="utf-8") as f:  # 40 more records with a label outside the 7 classes
        f.writelines(json.dumps({"id": f"bad{i}", "text": f"unusable {i}", "label": 99}) + "\n" for i in range(40))
    with pytest.raises(SplitError) as err:
        build_splits(path, TaskSchema(), PipelineSettings(on_invalid="skip"), tmp_path / "out")
    message = str(err.value)
    assert "max_samples" not in message
    assert "28 of 68 records remain to split (40 invalid, quarantined; 0 near-duplicates)" in message
