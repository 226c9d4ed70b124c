"""Stratified split and the cross-split leakage check."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from redheart.data.errors import LeakageError, SplitError
from redheart.data.pipeline import PipelineSettings, build_splits
from redheart.data.split import Split, find_leaks, split_statistics, stratified_split
from redheart.schema import TaskSchema
from tests.conftest import distinct_text, write_records


def imbalanced_labels(n: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.choice(7, size=n, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05])


def test_split_partitions_every_index_once_with_requested_sizes():
    labels = imbalanced_labels()
    split = stratified_split(labels, 0.1, 0.1, seed=1)
    together = np.concatenate([split.train, split.val, split.test])
    assert sorted(together.tolist()) == list(range(len(labels)))
    assert (len(split.train), len(split.val), len(split.test)) == (800, 100, 100)


def test_split_keeps_class_proportions():
    labels = imbalanced_labels()
    overall = np.bincount(labels, minlength=7) / len(labels)
    split = stratified_split(labels, 0.1, 0.1, seed=1)
    for _, idx in split.items():
        share = np.bincount(labels[idx], minlength=7) / len(idx)
        assert np.abs(share - overall).max() < 0.02


def test_split_is_seeded():
    labels = imbalanced_labels()
    a, b, c = (stratified_split(labels, seed=s) for s in (5, 5, 6))
    assert np.array_equal(a.test, b.test) and np.array_equal(a.val, b.val)
    assert not np.array_equal(a.test, c.test)


def test_too_few_records_per_class_is_a_clear_error():
    with pytest.raises(SplitError, match="at least 3 records"):
        stratified_split([0] * 40 + [1] * 2)
    with pytest.raises(SplitError, match="every split at least 7"):
        stratified_split([i % 7 for i in range(35)])


def test_leakage_check_finds_exact_and_near_duplicates_across_splits():
    texts = [distinct_text(i) for i in range(30)]
    split = Split(train=np.arange(0, 20), val=np.arange(20, 25), test=np.arange(25, 30))
    assert find_leaks(texts, split, 0.92) == []
    texts[22] = texts[3].upper()                      # exact after case folding: train 3 ~ val 22
    texts[27] = texts[5][:-1] + "!"                   # one character changed: train 5 ~ test 27
    texts[12] = texts[1] + " "                        # same split: not a leak
    leaks = find_leaks(texts, split, 0.92)
    assert {(x["a"], x["b"], x["kind"]) for x in leaks} == {(3, 22, "exact"), (5, 27, "near")}
    assert {(x["split_a"], x["split_b"]) for x in leaks} == {("train", "val"), ("train", "test")}
    # with labels, a pair of different labels is a label conflict (reported by dedup), not a leak
    labels = [0] * 30
    labels[27] = 3
    assert {(x["a"], x["b"]) for x in find_leaks(texts, split, 0.92, labels)} == {(3, 22)}
    labels[22] = 1
    assert find_leaks(texts, split, 0.92, labels) == []


def test_pipeline_after_dedup_has_no_leaks_and_reports_split(tmp_path):
    path = write_records(tmp_path / "d.jsonl", n=140)
    report = build_splits(path, TaskSchema(), PipelineSettings(), tmp_path / "out", progress=False)
    assert report["split"]["leakage"]["leaks"] == 0
    stats = report["split"]["stats"]
    assert sum(s["size"] for s in stats.values()) == report["counts"]["kept"] == 140
    assert all(s["class_counts"]["joy"] > 0 for s in stats.values())
    assert stats["train"]["text_length"]["min"] > 0


def test_pipeline_refuses_a_split_that_leaks(tmp_path, monkeypatch):
    """With dedup made ineffective, planted duplicates must be caught by the leakage check."""
    path = write_records(tmp_path / "d.jsonl", n=140)
    lines = path.read_text().splitlines()
    lines += [line.replace('"id": "r', '"id": "copy') for line in lines[:70]]  # 70 exact copies
    path.write_text("\n".join(lines) + "\n")
    import redheart.data.pipeline as pipeline

    def keep_everything(texts, threshold, progress=False, **_labels):
        from redheart.data.dedup import DedupResult

        return DedupResult(np.ones(len(texts), bool), [], threshold)

    monkeypatch.setattr(pipeline, "deduplicate", keep_everything)
    with pytest.raises(LeakageError, match="cross splits"):
        build_splits(path, TaskSchema(), PipelineSettings(), tmp_path / "out", progress=False)
    report = build_splits(path, TaskSchema(), PipelineSettings(on_leakage="warn"), tmp_path / "out2", progress=False)
    assert report["split"]["leakage"]["leaks"] > 0


def test_split_statistics_counts_classes():
    labels = [0, 0, 1, 1, 2, 2]
    texts = ["a", "bb", "ccc", "dddd", "e", "ff"]
    split = Split(np.array([0, 2, 4]), np.array([1, 3]), np.array([5]))
    stats = split_statistics(labels, texts, split, ["x", "y", "z"])
    assert stats["train"]["class_counts"] == {"x": 1, "y": 1, "z": 1}
    assert stats["val"]["text_length"]["max"] == 4
    assert Counter(stats["test"]["class_counts"]) == Counter({"z": 1, "x": 0, "y": 0})
