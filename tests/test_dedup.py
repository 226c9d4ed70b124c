"""Near-duplicate removal equals the original O(n²) loop, whatever the input."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz

from redheart.data.dedup import deduplicate, similar_pairs
from redheart.data.dedup import seed_loop_reference as seed_loop

# Small alphabets and short strings make near-duplicates (and chains of them) frequent.
texts_strategy = st.lists(st.text(alphabet="abc ", min_size=0, max_size=14), min_size=0, max_size=40)


@settings(max_examples=300, deadline=None)
@given(texts=texts_strategy, threshold=st.sampled_from([0.5, 0.75, 0.8, 0.92, 1.0]), chunk=st.integers(1, 9))
def test_kept_set_equals_seed_loop(texts, threshold, chunk):
    assert deduplicate(texts, threshold, chunk_size=chunk).kept_indices == seed_loop(texts, threshold)


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
    result = deduplicate(texts, 0.92, chunk_size=37)
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
