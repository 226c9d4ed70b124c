"""Near-duplicate removal with keep-first semantics (docs/design.md, Data), without an O(n²) Python loop.

The original walks the records in order, keeps record i unless an earlier *kept* record marked it,
and marks every later record j with `fuzz.ratio(text_i, text_j) / 100 >= threshold`. So record j is
dropped exactly when some kept record i < j is that similar to it. We reproduce that kept set
exactly (tests compare against that loop) in three steps:

1. Exact copies: a later copy of a text is always dropped (its first copy, or whatever dropped the
   first copy, is at least as similar to it), so only distinct texts go on.
2. Candidate pairs (`similar_pairs`): in chunks of texts sorted by length, two exact bounds
   (length ratio, character-histogram distance) rule out almost all pairs without comparing
   strings; the rest are scored by rapidfuzz's multi-threaded `process.cpdist`. No dense n×n
   matrix is ever built. Every candidate is re-scored with the scalar `fuzz.ratio` and the original
   own predicate, so float rounding inside the vectorised scorer can never change a decision.
3. Greedy resolution in the original order on the sparse pair list (linear in the pair count).

rapidfuzz has no "deduplicate with keep-first" routine, so steps 1 and 3 are written here.

Label conflicts: two near-duplicate texts with different labels are not two copies of one example
(on an emotion corpus, "the movie made me sad" vs "... happy" differ in the one word that carries the
label). With labels, `on_label_conflict` decides:
- `drop`: the seed loop exactly (labels ignored); the pairs it dropped across labels are reported;
- `keep`: a record is a near-duplicate only of an earlier kept record *with the same label* (exact
  copies collapse per text and label); kept near-duplicate pairs with different labels are reported;
- `quarantine`: as `keep`, then every record of such a pair is set aside (neither label is trusted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import fuzz, process
from tqdm.auto import tqdm


@dataclass(frozen=True)
class DuplicatePair:
    kept: int  # index of the kept record that removed `dropped`
    dropped: int
    similarity: float  # fuzz.ratio / 100


@dataclass(frozen=True)
class LabelConflict:
    first: int  # the earlier record of the pair
    second: int
    similarity: float


ON_LABEL_CONFLICT = ("keep", "drop", "quarantine")


@dataclass
class DedupResult:
    keep: np.ndarray  # bool mask over the input texts
    pairs: list[DuplicatePair]  # one per dropped record: which kept record removed it
    threshold: float
    conflicts: list[LabelConflict] = field(default_factory=list)  # near-duplicates whose labels differ
    conflicted: np.ndarray | None = None  # bool mask: set aside by on_label_conflict=quarantine

    @property
    def n_conflicted(self) -> int:
        return 0 if self.conflicted is None else int(self.conflicted.sum())

    @property
    def kept_indices(self) -> list[int]:
        return np.flatnonzero(self.keep).tolist()

    @property
    def n_dropped(self) -> int:
        """Near-duplicates removed (records set aside for a label conflict are counted apart)."""
        return len(self.pairs)


def _is_similar(a: str, b: str, threshold: float) -> tuple[bool, float]:
    """The original predicate, verbatim: fuzz.ratio(a, b) / 100.0 >= threshold."""
    score = fuzz.ratio(a, b) / 100.0
    return score >= threshold, score


def char_histograms(texts: Sequence[str], buckets: int) -> np.ndarray:
    """Per text, how many of its characters fall in each of `buckets` code-point classes."""
    out = np.zeros((len(texts), buckets), dtype=np.float64)
    for row, text in enumerate(texts):
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        out[row] = np.bincount(codes % buckets, minlength=buckets)
    return out


def similar_pairs(
    texts: Sequence[str],
    threshold: float,
    chunk_size: int = 512,
    workers: int = -1,
    progress: bool = False,
    buckets: int = 24,
) -> list[tuple[int, int, float]]:
    """All pairs (i, j, similarity) with i < j and fuzz.ratio(texts[i], texts[j]) / 100 >= threshold.

    Two exact filters run before any string is compared (neither can drop a true pair):
    - length: ratio ≥ t needs min/max length ≥ t / (2 − t), so texts sorted by length are compared
      only within that window;
    - character histogram: fuzz.ratio = 1 − d / (len_a + len_b), d the Indel distance, and every
      insertion or deletion changes one character count by one, so the L1 distance between the two
      texts' character-class histograms is ≤ d. Pairs with L1 > (1 − t)(len_a + len_b) are skipped.
      This costs ~`buckets` operations per pair (scipy's cityblock cdist) instead of the
      O(len_a · len_b / 64) of the string comparison, and removes almost every pair of unrelated texts.
    The survivors are scored by rapidfuzz's multi-threaded `cpdist`, then re-checked one by one
    with the original scalar predicate.
    """
    from scipy.spatial.distance import cdist as pairwise_distance

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
    n = len(texts)
    if n < 2:
        return []
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    sorted_texts = [texts[i] for i in order]
    histograms = char_histograms(sorted_texts, buckets)
    # Loosened a little so float rounding never excludes a true pair (the exact check decides).
    min_len_ratio = threshold / (2.0 - threshold) - 1e-9
    max_distance_share = (1.0 - threshold) + 1e-9
    loose_cutoff = max(0.0, threshold * 100.0 - 1.0)

    pairs: list[tuple[int, int, float]] = []
    starts = range(0, n, chunk_size)
    for start in tqdm(starts, desc="near-duplicate search", unit="chunk", disable=not progress, leave=False):
        stop = min(start + chunk_size, n)
        window_end = int(np.searchsorted(sorted_lengths, sorted_lengths[stop - 1] / min_len_ratio, side="right"))
        l1 = pairwise_distance(histograms[start:stop], histograms[start:window_end], "cityblock")
        total_length = sorted_lengths[start:stop, None] + sorted_lengths[None, start:window_end]
        possible = l1 <= max_distance_share * total_length
        possible &= np.arange(window_end - start)[None, :] > np.arange(stop - start)[:, None]  # each pair once
        rows, cols = np.nonzero(possible)
        if len(rows) == 0:
            continue
        a_pos, b_pos = rows + start, cols + start
        scores = process.cpdist(
            [sorted_texts[i] for i in a_pos.tolist()],
            [sorted_texts[i] for i in b_pos.tolist()],
            scorer=fuzz.ratio,
            score_cutoff=loose_cutoff,
            workers=workers,
        )
        for k in np.flatnonzero(scores).tolist():
            a, b = int(order[a_pos[k]]), int(order[b_pos[k]])
            similar, score = _is_similar(texts[a], texts[b], threshold)
            if similar:
                pairs.append((min(a, b), max(a, b), score))
    return pairs


def deduplicate(
    texts: Sequence[str],
    threshold: float = 0.92,
    chunk_size: int = 512,
    workers: int = -1,
    progress: bool = False,
    labels: Sequence[object] | None = None,
    on_label_conflict: str = "drop",
) -> DedupResult:
    """Keep-first near-duplicate removal; without labels or with `drop`, identical to the original loop."""
    if on_label_conflict not in ON_LABEL_CONFLICT:
        raise ValueError(f"on_label_conflict must be one of {ON_LABEL_CONFLICT}, got {on_label_conflict!r}")
    if labels is not None and len(labels) != len(texts):
        raise ValueError(f"{len(labels)} labels for {len(texts)} texts")
    if labels is None and on_label_conflict != "drop":
        raise ValueError(f"on_label_conflict={on_label_conflict} needs the labels")
    label_aware = on_label_conflict != "drop"
    n = len(texts)
    keep = np.ones(n, dtype=bool)
    cause: dict[int, DuplicatePair] = {}

    # 1. exact copies collapse onto their first occurrence (of the same label, when labels decide)
    first_of: dict[object, int] = {}
    distinct: list[int] = []  # original indices of first occurrences, in order
    copies: list[tuple[int, int]] = []  # (later copy, its first occurrence)
    for i, text in enumerate(texts):
        key = (text, labels[i]) if label_aware else text
        if key in first_of:
            copies.append((i, first_of[key]))
        else:
            first_of[key] = i
            distinct.append(i)

    # 2. candidate pairs among the distinct texts (indices into `distinct`)
    pairs = similar_pairs([texts[i] for i in distinct], threshold, chunk_size, workers, progress)

    # 3. in original order, drop a text when its smallest-index similar earlier text is kept
    #    (and, when labels decide, has the same label)
    earlier: dict[int, list[tuple[int, float]]] = {}
    for a, b, score in pairs:
        earlier.setdefault(b, []).append((a, score))
    for b in sorted(earlier):
        for a, score in sorted(earlier[b]):
            if keep[distinct[a]] and (not label_aware or labels[distinct[a]] == labels[distinct[b]]):
                keep[distinct[b]] = False
                cause[distinct[b]] = DuplicatePair(distinct[a], distinct[b], score)
                break
    for later, first in copies:
        keep[later] = False
        kept_by = first if keep[first] else cause[first].kept
        cause[later] = DuplicatePair(kept_by, later, fuzz.ratio(texts[kept_by], texts[later]) / 100.0)

    result = DedupResult(keep=keep, pairs=[cause[i] for i in sorted(cause)], threshold=threshold)
    if labels is None:
        return result
    if label_aware:  # kept pairs across labels (exact copies across labels are among `pairs`, score 1)
        result.conflicts = [LabelConflict(distinct[a], distinct[b], score) for a, b, score in sorted(pairs)
                            if keep[distinct[a]] and keep[distinct[b]] and labels[distinct[a]] != labels[distinct[b]]]
    else:  # what the seed loop dropped across labels
        result.conflicts = [LabelConflict(p.kept, p.dropped, p.similarity) for p in result.pairs
                            if labels[p.kept] != labels[p.dropped]]
    if on_label_conflict == "quarantine":
        result.conflicted = np.zeros(n, dtype=bool)
        for c in result.conflicts:
            result.conflicted[[c.first, c.second]] = True
        result.keep &= ~result.conflicted
    return result


def seed_loop_reference(texts: Sequence[str], threshold: float = 0.92) -> list[int]:
    """The original `remove_duplicates`, verbatim apart from returning kept indices.

    O(n²) Python; never used by the pipeline. It is the reference that tests and
    bench/dedup_bench.py compare `deduplicate` against.
    """
    unique, processed = [], set()
    for i, text1 in enumerate(texts):
        if i in processed:
            continue
        unique.append(i)
        for j in range(i + 1, len(texts)):
            if j not in processed and fuzz.ratio(text1, texts[j]) / 100.0 >= threshold:
                processed.add(j)
    return unique
