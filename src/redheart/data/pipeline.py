"""The data pipeline as one function: read → validate → dedup → split → leakage check → embed.

`prepare_dataset` is what `RedHeartDataModule.prepare_data` runs. Everything before embedding is
cached in a folder keyed by the input file's SHA-256 and every setting that changes its outcome, so a
rerun with the same data and config reads the result instead of recomputing it; embeddings live in
their own cache (see `embeddings.py`). Every stage adds its counts to the report, and the counts
reconcile: read = kept + near-duplicates + quarantined + label-conflict quarantined (the last only with
`data.dedup.on_label_conflict=quarantine`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from redheart.data.dedup import ON_LABEL_CONFLICT, deduplicate
from redheart.data.embeddings import EmbeddingCache, TextEncoder, cache_path_for
from redheart.data.errors import DataFileError, DataValidationError, LeakageError, SplitError
from redheart.data.sources import check_readable_file, detect_format, read_json_array, read_json_lines
from redheart.data.split import SPLITS, find_leaks, split_statistics, stratified_split
from redheart.data.table import TableAdapter
from redheart.data.validation import TextCleaning, validate_records
from redheart.io import atomic_write_json, atomic_write_jsonl, read_jsonl, sha256_file
from redheart.schema import Record, TaskSchema

log = logging.getLogger(__name__)

PREPARED_FORMAT = 2  # 2: label_conflicts.jsonl


@dataclass
class PipelineSettings:
    """Every setting that changes which records are kept and where they go."""

    format: str = "auto"
    table: dict[str, Any] | None = None
    clean: dict[str, Any] = field(default_factory=dict)
    on_invalid: str = "error"  # error | skip
    max_text_chars: int = 20_000
    max_samples: int | None = None
    dedup_threshold: float = 0.92
    on_label_conflict: str = "keep"  # keep | drop (the seed loop) | quarantine; see redheart.data.dedup
    val_ratio: float = 0.1
    test_ratio: float = 0.1
    seed: int = 42
    on_leakage: str = "error"  # error | warn

    def __post_init__(self) -> None:
        if self.on_invalid not in {"error", "skip"}:
            raise ValueError(f"data.on_invalid must be 'error' or 'skip', got {self.on_invalid!r}")
        if self.on_leakage not in {"error", "warn"}:
            raise ValueError(f"data.split.on_leakage must be 'error' or 'warn', got {self.on_leakage!r}")
        if self.on_label_conflict not in ON_LABEL_CONFLICT:
            raise ValueError(f"data.dedup.on_label_conflict must be one of {ON_LABEL_CONFLICT}, "
                             f"got {self.on_label_conflict!r}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"data.max_samples must be a positive integer or null, got {self.max_samples}")


@dataclass
class PreparedDataset:
    records: list[Record]
    split: dict[str, np.ndarray]  # split name → indices into `records`
    embeddings: np.ndarray | None  # aligned with `records`
    report: dict[str, Any]
    directory: Path


def read_raw_records(path: Path, schema: TaskSchema, fmt: str, table: dict[str, Any] | None):
    check_readable_file(path)
    kind = detect_format(path, fmt)
    if kind == "json":
        return kind, read_json_array(path)
    if kind == "jsonl":
        return kind, read_json_lines(path)
    if not table:
        raise DataFileError(path, "is a table; describe its columns under data.table (see conf/data/isear.yaml)")
    return kind, TableAdapter(table, schema).read(path)


def _settings_key(file_hash: str, schema: TaskSchema, settings: PipelineSettings) -> str:
    """Names the prepared folder: changes whenever the file or any outcome-changing setting does."""
    payload = json.dumps(
        {"format": PREPARED_FORMAT, "file": file_hash, "schema": [schema.class_names, schema.bentham_names,
         schema.surd_names], "settings": settings.__dict__}, sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _target_coverage(records: list[Record], schema: TaskSchema) -> dict[str, Any]:
    """How many kept records carry each target (missing ones are masked in the loss)."""
    n = len(records)
    cover: dict[str, Any] = {
        "intensity": sum(r.intensity is not None for r in records),
        "regret_factor": sum(r.regret_factor is not None for r in records),
    }
    for attr, names in (("bentham", schema.bentham_names), ("surd", schema.surd_names)):
        cover[attr] = {
            name: sum(getattr(r, attr) is not None and getattr(r, attr)[i] is not None for r in records)
            for i, name in enumerate(names)
        }
    cover["records"] = n
    return cover


def _select_samples(raw: list, max_samples: int | None, seed: int) -> list:
    """A seeded random subset of `max_samples` records, in file order (for smoke runs)."""
    if max_samples is None or max_samples >= len(raw):
        return raw
    chosen = np.sort(np.random.default_rng(seed).choice(len(raw), size=max_samples, replace=False))
    return [raw[i] for i in chosen]


def build_splits(path: Path, schema: TaskSchema, settings: PipelineSettings, out_dir: Path,
                 progress: bool = True, file_hash: str | None = None) -> dict[str, Any]:
    """Read, validate, dedup, split and leakage-check; write records, quarantine and report to out_dir."""
    t0 = time.perf_counter()
    kind, raw = read_raw_records(path, schema, settings.format, settings.table)
    n_in_file = len(raw)
    raw = _select_samples(raw, settings.max_samples, settings.seed)

    validated = validate_records(raw, schema, str(path), TextCleaning.from_config(settings.clean),
                                 settings.max_text_chars)
    if validated.problems and settings.on_invalid == "error":
        raise DataValidationError(validated.problems, validated.n_read)
    if not validated.records:  # skip mode with nothing valid: say so here, not as a split error later
        first = "\n".join(f"  - {p}" for p in validated.problems[:5])
        raise DataFileError(path, f"no valid record: all {validated.n_read} records are invalid; the first "
                                  f"problems:\n{first}")
    if validated.ignored_fields:
        log.info("%s: fields outside the schema, ignored (check for typos): %s", path,
                    _json_safe(dict(validated.ignored_fields.most_common(10))))
    t_valid = time.perf_counter()

    records = validated.records
    dedup = deduplicate([r.text for r in records], settings.dedup_threshold, progress=progress,
                        labels=[r.label for r in records], on_label_conflict=settings.on_label_conflict)
    t_dedup = time.perf_counter()
    near_dups = [
        {"dropped_id": records[p.dropped].id, "kept_id": records[p.kept].id, "similarity": round(p.similarity, 4),
         "dropped_text": records[p.dropped].text[:200], "kept_text": records[p.kept].text[:200]}
        for p in dedup.pairs
    ]
    label_conflicts = [
        {"first_id": records[c.first].id, "second_id": records[c.second].id, "similarity": round(c.similarity, 4),
         "first_label": _class_name(records[c.first].label, schema),
         "second_label": _class_name(records[c.second].label, schema), "action": settings.on_label_conflict,
         "first_text": records[c.first].text[:200], "second_text": records[c.second].text[:200]}
        for c in dedup.conflicts
    ]
    if label_conflicts:
        log.warning("%d near-duplicate pairs have different labels (on_label_conflict=%s; pairs in "
                    "label_conflicts.jsonl)", len(label_conflicts), settings.on_label_conflict)
    kept = [records[i] for i in dedup.kept_indices]

    try:
        split = stratified_split([r.label for r in kept], settings.val_ratio, settings.test_ratio, settings.seed)
    except SplitError as err:  # say what the count is after: the file's size alone would not explain it
        raise SplitError(f"{path}: {len(kept)} of {validated.n_read} records remain to split "
                         f"({validated.n_read - len(records)} invalid, quarantined; {len(dedup.pairs)} "
                         f"near-duplicates): {err}") from None
    texts = [r.text for r in kept]
    leaks = find_leaks(texts, split, settings.dedup_threshold, [r.label for r in kept])
    if leaks:
        detail = "; ".join(f"{kept[x['a']].id} ({x['split_a']}) ~ {kept[x['b']].id} ({x['split_b']})"
                           for x in leaks[:10])
        if settings.on_leakage == "error":
            raise LeakageError(f"{len(leaks)} texts cross splits: {detail}")
        log.warning("leakage: %d texts cross splits: %s", len(leaks), detail)
    t_split = time.perf_counter()

    split_of = {}
    for name, idx in split.items():
        for i in idx.tolist():
            split_of[i] = name
    rows = [{**r.to_dict(), "split": split_of[i]} for i, r in enumerate(kept)]

    counts = {
        "in_file": n_in_file,
        "read": len(raw),
        "quarantined": len(validated.quarantined),
        "near_duplicates": dedup.n_dropped,
        "label_conflict_quarantined": dedup.n_conflicted,
        "kept": len(kept),
    }
    counts["reconciles"] = counts["read"] == (counts["kept"] + counts["near_duplicates"] + counts["quarantined"]
                                              + counts["label_conflict_quarantined"])
    if not counts["reconciles"]:  # a bug, never a data problem: refuse to go on with lost records
        raise AssertionError(f"record counts do not reconcile: {counts}")
    problems_by_field = Counter(p.field.split("[")[0].split(".")[0] for p in validated.problems)
    report = {
        "source": {"path": str(path), "sha256": file_hash or sha256_file(path), "format": kind},
        "counts": counts,
        "validation": {
            "on_invalid": settings.on_invalid,
            "invalid_records": len(validated.quarantined),
            "problems": len(validated.problems),
            "problems_by_field": dict(problems_by_field.most_common()),
            "ignored_fields": dict(validated.ignored_fields.most_common()),
            "examples": [str(p) for p in validated.problems[:10]],
        },
        "dedup": {
            "threshold": settings.dedup_threshold,
            "method": "rapidfuzz fuzz.ratio, keep first (seed semantics), length-blocked cdist",
            "dropped": dedup.n_dropped,
            "sample_pairs": near_dups[:20],
            "on_label_conflict": settings.on_label_conflict,
            "label_conflicts": len(label_conflicts),  # near-duplicate pairs whose labels differ
            "label_conflict_quarantined": dedup.n_conflicted,
            "sample_label_conflicts": label_conflicts[:20],
        },
        "split": {
            "ratios": {"train": round(1 - settings.val_ratio - settings.test_ratio, 4), "val": settings.val_ratio,
                       "test": settings.test_ratio},
            "seed": settings.seed,
            "stats": split_statistics([r.label for r in kept], texts, split, schema.class_names),
            "leakage": {"threshold": settings.dedup_threshold, "leaks": len(leaks), "pairs": leaks[:20]},
        },
        "targets_present": _target_coverage(kept, schema),
        "seconds": {"read_validate": round(t_valid - t0, 3), "dedup": round(t_dedup - t_valid, 3),
                    "split_leakage": round(t_split - t_dedup, 3)},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out_dir / "records.jsonl", rows)
    atomic_write_jsonl(out_dir / "quarantine.jsonl", _json_safe(validated.quarantined))
    atomic_write_jsonl(out_dir / "near_duplicates.jsonl", near_dups)
    atomic_write_jsonl(out_dir / "label_conflicts.jsonl", label_conflicts)
    report = _json_safe(report)  # ignored field names come from the file and may hold lone surrogates
    atomic_write_json(out_dir / "report.json", report)  # written last: its presence marks a complete folder
    return report


def _class_name(label: int, schema: TaskSchema) -> str:
    return schema.class_names[label] if 0 <= label < len(schema.class_names) else str(label)


def _json_safe(value: Any) -> Any:
    """Quarantined records may hold NaN/inf or lone surrogates ("\\ud800", valid JSON but not
    encodable as UTF-8): that is why they were quarantined. Store them as text."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {(_json_safe(k) if isinstance(k, str) else k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def prepare_dataset(
    path: str | Path,
    schema: TaskSchema,
    settings: PipelineSettings,
    encoder: TextEncoder | None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> PreparedDataset:
    """Run (or reuse) every stage and return the kept records, their split and embeddings."""
    path = Path(path)
    check_readable_file(path)
    folder = Path(cache_dir) if cache_dir is not None else path.parent
    file_hash = sha256_file(path)
    prepared_dir = folder / f"{path.stem}.prepared" / _settings_key(file_hash, schema, settings)
    _ensure_writable(folder)
    # Parallel jobs (a joblib sweep) preparing the same dataset wait for each other instead of
    # building and encoding the same thing twice; the second one then reuses the first one's work.
    with FileLock(str(folder / f"{path.stem}.prepare.lock")):
        return _prepare_locked(path, schema, settings, encoder, folder, prepared_dir, file_hash, progress)


def _prepare_locked(path: Path, schema: TaskSchema, settings: PipelineSettings, encoder: TextEncoder | None,
                    folder: Path, prepared_dir: Path, file_hash: str, progress: bool) -> PreparedDataset:
    if (prepared_dir / "report.json").exists():
        report = json.loads((prepared_dir / "report.json").read_text(encoding="utf-8"))
        report["reused_prepared"] = True
        log.info("reusing prepared data %s", prepared_dir)
    else:
        report = build_splits(path, schema, settings, prepared_dir, progress, file_hash)
        report["reused_prepared"] = False

    rows = read_jsonl(prepared_dir / "records.jsonl")
    split = {name: np.array([i for i, r in enumerate(rows) if r["split"] == name], dtype=np.int64) for name in SPLITS}
    records = [Record.from_dict({k: v for k, v in r.items() if k != "split"}) for r in rows]

    embeddings = None
    if encoder is not None:
        t0 = time.perf_counter()
        cache = EmbeddingCache(cache_path_for(path, encoder.model_id, folder), encoder)
        embeddings, stats = cache.embed([r.text for r in records])
        report["embedding"] = {"model_id": encoder.model_id, "dim": int(embeddings.shape[1]),
                               "cache": stats.as_dict(), "seconds": round(time.perf_counter() - t0, 3)}
    report["prepared_dir"] = str(prepared_dir)
    return PreparedDataset(records, split, embeddings, report, prepared_dir)


def _ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".redheart-write-test"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise DataFileError(folder, f"cache folder is not writable ({err.strerror}); set data.cache_dir") from None

