"""Stratified train/val/test split (scikit-learn) and the cross-split leakage check."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from redheart.data.dedup import similar_pairs
from redheart.data.errors import SplitError

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def items(self):
        return (("train", self.train), ("val", self.val), ("test", self.test))


def stratified_split(labels: Sequence[int], val_ratio: float = 0.1, test_ratio: float = 0.1, seed: int = 42) -> Split:
    """Indices of a stratified split; each split keeps the class proportions of the whole set."""
    if not (0 < val_ratio < 1 and 0 < test_ratio < 1 and val_ratio + test_ratio < 1):
        raise SplitError(f"split ratios must be in (0, 1) with val + test < 1, got val={val_ratio}, test={test_ratio}")
    labels = np.asarray(labels)
    n = len(labels)
    counts = Counter(labels.tolist())
    n_classes = len(counts)
    n_test = int(np.ceil(test_ratio * n))
    n_val = int(np.ceil(val_ratio * (n - n_test) / (1 - test_ratio)))
    rare = {c: k for c, k in counts.items() if k < 3}
    if rare or min(n_test, n_val, n - n_test - n_val) < n_classes:
        raise SplitError(
            f"a stratified split of {n} records over {n_classes} classes needs every class to have at least "
            f"3 records and every split at least {n_classes} records; classes with fewer: {rare or 'none'}, "
            f"split sizes train={n - n_test - n_val} val={n_val} test={n_test}. "
            "Use a dataset with more valid records per class, or larger split ratios (data.split.val/test)."
        )
    idx = np.arange(n)
    rest, test = train_test_split(idx, test_size=n_test, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed)
    return Split(np.sort(train), np.sort(val), np.sort(test))


def normalise_for_leakage(text: str) -> str:
    """Case- and whitespace-insensitive form used for the exact-duplicate part of the check."""
    return " ".join(text.casefold().split())


def find_leaks(texts: Sequence[str], split: Split, threshold: float,
               labels: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Pairs of records in different splits whose texts are equal (after normalisation) or
    near-duplicates (fuzz.ratio / 100 >= threshold, same rule as dedup). With `labels`, only pairs of
    the same label: near-duplicates with different labels are different examples (dedup reports them as
    label conflicts), and seeing one in training does not give away the other's answer."""
    owner = np.empty(len(texts), dtype=object)
    for name, idx in split.items():
        owner[idx] = name
    members = np.concatenate([split.train, split.val, split.test])
    leaks: dict[tuple[int, int], dict[str, Any]] = {}

    by_form: dict[str, int] = {}
    for i in members.tolist():
        form = normalise_for_leakage(texts[i])
        if labels is not None:
            form = f"{labels[i]}\x00{form}"
        j = by_form.setdefault(form, i)
        if j != i and owner[i] != owner[j]:
            leaks[(min(i, j), max(i, j))] = {"kind": "exact", "similarity": 1.0}

    subset = [texts[i] for i in members.tolist()]
    for a, b, score in similar_pairs(subset, threshold):
        i, j = int(members[a]), int(members[b])
        if owner[i] != owner[j] and (labels is None or labels[i] == labels[j]):
            leaks.setdefault((min(i, j), max(i, j)), {"kind": "near", "similarity": round(score, 4)})
    return [
        {"a": i, "b": j, "split_a": owner[i], "split_b": owner[j], **info} for (i, j), info in sorted(leaks.items())
    ]


def split_statistics(labels: Sequence[int], texts: Sequence[str], split: Split, class_names: Sequence[str]) -> dict:
    """Per split: size, class counts and proportions, text-length statistics (characters)."""
    labels = np.asarray(labels)
    stats = {}
    for name, idx in split.items():
        counts = Counter(labels[idx].tolist())
        lengths = np.array([len(texts[i]) for i in idx]) if len(idx) else np.zeros(1)
        stats[name] = {
            "size": int(len(idx)),
            "class_counts": {class_names[c]: int(counts.get(c, 0)) for c in range(len(class_names))},
            "class_fraction": {
                class_names[c]: round(counts.get(c, 0) / max(len(idx), 1), 4) for c in range(len(class_names))
            },
            "text_length": {
                "mean": round(float(lengths.mean()), 1),
                "median": float(np.median(lengths)),
                "min": int(lengths.min()),
                "max": int(lengths.max()),
                "p95": float(np.percentile(lengths, 95)),
            },
        }
    return stats
