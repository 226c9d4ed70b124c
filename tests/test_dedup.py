"""Near-duplicate removal equals the original O(n²) loop, whatever the input (labels ignored in `drop` mode);
near-duplicates whose labels differ are kept and reported by default, dropped or quarantined on request."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz

from redheart.data.dedup import deduplicate, similar_pairs
from redheart.data.dedup import seed_loop_reference as seed_loop
from redheart.data.pipeline import PipelineSettings, prepare_dataset
from redheart.io import read_jsonl
from redheart.schema import TaskSchema
from tests.conftest import write_records

SCHEMA = TaskSchema.from_config()
# Small alphabets and short strings make near-duplicates (and chains of them) frequent.
texts_strategy = st.lists(st.text(alphabet="abc ", min_size=0, max_size=14), min_size=0, max_size=40)


@settings(max_examples=300, deadline=None)
@given(texts=texts_strategy, threshold=st.sampled_from([0.5, 0.75, 0.8, 0.92, 1.0]), chunk=st.integers(1, 9),
       n_labels=st.integers(1, 3))
def test_kept_set_equals_seed_loop(texts, threshold, chunk, n_labels):
    labels = [len(t) % n_labels for t in texts]  # drop mode ignores labels, whatever they are
    result = deduplicate(texts, threshold, chunk_size=chunk, labels=labels, on_label_conflict="drop")
    assert result.kept_indices == seed_loop(texts, threshold)
    assert deduplicate(texts, threshold, chunk_size=chunk).kept_indices == result.kept_indices


def test_equals_seed_loop_on_realistic_near_duplicates():
    rng = random.Random(3)
    words = ["when", "my", "grandfather", "died", "I", "felt", "sad", "and", "alone", "at", "home", "that", "day"]
    base = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(60)]
    texts = []
    for _ in range(400):
        t = rng.choice(base)
        for _ in range(rng.randint(0, 3)):  # a few character edits
            k = rng.randrange(len(t))
            t = t[:k] + rng.choice("aeiou .") + t[k + 1 :]
        texts.append(t)
    labels = [rng.randrange(7) for _ in texts]
    result = deduplicate(texts, 0.92, chunk_size=37, labels=labels, on_label_conflict="drop")
    assert result.kept_indices == seed_loop(texts, 0.92)
    assert 0 < result.n_dropped < len(texts)


def test_each_dropped_record_names_an_earlier_kept_record_above_threshold():
    texts = ["When my grandfather died.", "when my grandfather died.", "A completely different story.",
             "When my grandfather died!", "When my grandfather died."]
    result = deduplicate(texts, 0.92)
    assert result.kept_indices == [0, 2]
    for pair in result.pairs:
        assert pair.kept < pair.dropped and result.keep[pair.kept] and not result.keep[pair.dropped]
        assert pair.similarity == pytest.approx(fuzz.ratio(texts[pair.kept], texts[pair.dropped]) / 100)
        assert pair.similarity >= 0.92
    assert [p.dropped for p in result.pairs] == [1, 3, 4]


def test_exact_copy_of_a_dropped_text_is_attributed_to_the_kept_one():
    texts = ["abcdefghij", "abcdefghiX", "abcdefghiX"]  # 1 is a near-dup of 0; 2 copies 1
    result = deduplicate(texts, 0.85)
    assert result.kept_indices == [0]
    assert {p.dropped: p.kept for p in result.pairs} == {1: 0, 2: 0}


def test_chain_keeps_the_middle_when_ends_differ():
    # a~b and b~c but a !~ c: the original keeps a, drops b, and keeps c (only kept records remove others).
    a, b, c = "aaaaaaaaaa", "aaaaaaaaab", "aaaaaaaabb"
    assert fuzz.ratio(a, c) / 100 < 0.9 <= fuzz.ratio(a, b) / 100
    assert deduplicate([a, b, c], 0.9).kept_indices == seed_loop([a, b, c], 0.9) == [0, 2]


def test_similar_pairs_finds_every_pair_across_length_blocks():
    rng = random.Random(0)
    texts = ["".join(rng.choice("ab") for _ in range(rng.randint(1, 30))) for _ in range(150)]
    brute = {(i, j) for i in range(150) for j in range(i + 1, 150) if fuzz.ratio(texts[i], texts[j]) / 100 >= 0.8}
    found = {(i, j) for i, j, _ in similar_pairs(texts, 0.8, chunk_size=16)}
    assert found == brute


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_threshold_outside_unit_interval_is_refused(threshold):
    with pytest.raises(ValueError, match="threshold"):
        deduplicate(["a", "b"], threshold)


SAD = "I watched a sad movie with my best friend last night."
GOOD = "I watched a good movie with my best friend last night."


def test_label_conflicting_near_duplicates_are_kept_and_reported_by_default_and_dropped_in_drop_mode():
    texts = [GOOD, "Something else entirely happened at work.", SAD, GOOD + "!"]
    labels = [0, 1, 3, 0]  # joy, fear, sadness, joy
    assert fuzz.ratio(GOOD, SAD) / 100 >= 0.92
    kept = deduplicate(texts, 0.92, labels=labels, on_label_conflict="keep")
    assert kept.kept_indices == [0, 1, 2]  # the sad one stays; the joy copy of 0 still goes
    assert [(p.kept, p.dropped) for p in kept.pairs] == [(0, 3)]
    assert [(c.first, c.second) for c in kept.conflicts] == [(0, 2)]
    assert kept.conflicts[0].similarity == pytest.approx(fuzz.ratio(GOOD, SAD) / 100)

    dropped = deduplicate(texts, 0.92, labels=labels, on_label_conflict="drop")
    assert dropped.kept_indices == seed_loop(texts, 0.92) == [0, 1]
    assert [(c.first, c.second) for c in dropped.conflicts] == [(0, 2)]  # reported as dropped across labels

    quarantined = deduplicate(texts, 0.92, labels=labels, on_label_conflict="quarantine")
    assert quarantined.kept_indices == [1] and np.flatnonzero(quarantined.conflicted).tolist() == [0, 2]
    assert quarantined.n_dropped == 1 and quarantined.n_conflicted == 2


def test_exact_copies_with_different_labels_are_a_conflict_and_same_label_copies_still_collapse():
    texts = ["same words here", "same words here", "same words here"]
    result = deduplicate(texts, 0.92, labels=[2, 5, 2], on_label_conflict="keep")
    assert result.kept_indices == [0, 1] and [(p.kept, p.dropped) for p in result.pairs] == [(0, 2)]
    assert [(c.first, c.second, c.similarity) for c in result.conflicts] == [(0, 1, 1.0)]


def test_label_modes_need_labels_and_a_known_mode():
    with pytest.raises(ValueError, match="needs the labels"):
        deduplicate(["a", "b"], 0.9, on_label_conflict="keep")
    with pytest.raises(ValueError, match="on_label_conflict"):
        deduplicate(["a", "b"], 0.9, labels=[0, 1], on_label_conflict="ignore")


@pytest.mark.parametrize("mode, kept, near, conflicted", [("keep", 72, 1, 0), ("drop", 71, 2, 0),
                                                          ("quarantine", 70, 1, 2)])
def test_pipeline_reports_label_conflicts_and_counts_reconcile(tmp_path, mode, kept, near, conflicted):
    path = write_records(tmp_path / "d.jsonl", n=70)
    with path.open("a") as fh:
        for rid, text, label in (("good", GOOD, 0), ("sad", SAD, 3), ("good-again", GOOD + "!", 0)):
            fh.write(json.dumps({"id": rid, "text": text, "label": label}) + "\n")
    prepared = prepare_dataset(path, SCHEMA, PipelineSettings(on_label_conflict=mode, val_ratio=0.2, test_ratio=0.2),
                               encoder=None, cache_dir=tmp_path, progress=False)
    counts, dedup = prepared.report["counts"], prepared.report["dedup"]
    assert (counts["kept"], counts["near_duplicates"], counts["label_conflict_quarantined"]) == (kept, near, conflicted)
    assert counts["reconciles"] and counts["read"] == 73
    assert dedup["label_conflicts"] == 1 and dedup["on_label_conflict"] == mode
    pairs = read_jsonl(prepared.directory / "label_conflicts.jsonl")
    assert [(p["first_id"], p["second_id"], p["first_label"], p["second_label"], p["action"]) for p in pairs] == [
        ("good", "sad", "joy", "sadness", mode)]
    kept_ids = {r.id for r in prepared.records}
    assert ("sad" in kept_ids) == (mode == "keep") and ("good" in kept_ids) == (mode != "quarantine")


def test_unknown_label_conflict_mode_is_refused():
    with pytest.raises(ValueError, match="data.dedup.on_label_conflict"):
        PipelineSettings(on_label_conflict="ignore")
