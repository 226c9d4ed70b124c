"""Record validation: every rule of the record schema, every problem reported, nothing dropped silently.

`validate_records` turns raw records into `Record`s. A record that breaks any rule is collected with
*all* of its problems; the caller then raises (`on_invalid=error`) or quarantines (`skip`). Text is
cleaned first by configurable rules (regex replacements, whitespace collapsing, placeholder answers
such as "[No response]"), so dataset quirks are handled by configuration, not by editing files.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redheart.data.errors import Problem
from redheart.data.sources import RawRecord
from redheart.schema import METADATA_FIELDS, Record, TaskSchema

_SURROGATE = re.compile("[\ud800-\udfff]")
EMOTIONS_FIELDS = {"intensity", "primary", "secondary"}
KNOWN_FIELDS = {
    "id", "text", "label", "emotions", "regret_factor", "bentham_scores", "surd_metrics", "metadata", *METADATA_FIELDS,
}


@dataclass
class TextCleaning:
    """Generic text clean-up applied before validation (configured under `data.clean`)."""

    replacements: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    placeholders: list[re.Pattern[str]] = field(default_factory=list)
    collapse_whitespace: bool = True

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> TextCleaning:
        cfg = cfg or {}
        replacements = []
        for i, rule in enumerate(cfg.get("replacements") or []):
            try:
                replacements.append((re.compile(rule["pattern"]), rule.get("repl", "")))
            except (re.error, KeyError, TypeError) as err:
                raise ValueError(f"data.clean.replacements[{i}] is not a valid {{pattern, repl}} rule: {err}") from None
        placeholders = []
        for i, pattern in enumerate(cfg.get("placeholders") or []):
            try:
                placeholders.append(re.compile(pattern, re.IGNORECASE))
            except re.error as err:
                raise ValueError(f"data.clean.placeholders[{i}] = {pattern!r} is not a valid regex: {err}") from None
        return cls(replacements, placeholders, bool(cfg.get("collapse_whitespace", True)))

    def clean(self, text: str) -> str:
        for pattern, repl in self.replacements:
            text = pattern.sub(repl, text)
        if self.collapse_whitespace:
            text = " ".join(text.split())
        return text

    def placeholder_match(self, text: str) -> str | None:
        for pattern in self.placeholders:
            if pattern.fullmatch(text.strip()):
                return pattern.pattern
        return None


@dataclass
class ValidationResult:
    records: list[Record]
    quarantined: list[dict[str, Any]]  # {index, line, id, problems: [str], record}
    problems: list[Problem]
    ignored_fields: Counter

    @property
    def n_read(self) -> int:
        return len(self.records) + len(self.quarantined)


def _json_type(value: Any) -> str:
    """Python's type name, except `null` for None (the only case where they differ confusingly)."""
    return "null" if value is None else type(value).__name__


def _surrogate_paths(value: Any, path: str = "") -> list[str]:
    """Where a record holds a lone surrogate (JSON allows the escape "\\ud800"): such a string
    cannot be encoded as UTF-8, so writing the record (or embedding its text) would crash later."""
    if isinstance(value, str):
        return [path or "<record>"] if _SURROGATE.search(value) else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(str(key)):
                found.append(f"{path or '<record>'} key {key!r}")  # repr escapes it: the message stays writable
                key = repr(key)
            found += _surrogate_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _surrogate_paths(item, f"{path}[{i}]")
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unit_interval(value: Any) -> str | None:
    """Rule for every [0, 1] target: a finite number inside the interval (None means missing)."""
    if not _is_number(value):
        return f"must be a number in [0, 1] or null, got {type(value).__name__} {value!r:.40}"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return f"must be in [0, 1], got an integer of {len(str(value))} digits"
    if not finite:
        return f"must be a finite number in [0, 1], got {value}"
    if not 0.0 <= value <= 1.0:
        return f"must be in [0, 1], got {value}"
    return None


class _RecordChecker:
    """Collects the problems of one record while building its `Record`."""

    def __init__(self, source: str, raw: RawRecord, record_id: str | None) -> None:
        self.source, self.raw, self.record_id = source, raw, record_id
        self.problems: list[Problem] = []

    def fail(self, field_name: str, rule: str) -> None:
        self.problems.append(Problem(self.source, self.raw.index, self.record_id, field_name, rule, self.raw.line))

    def unit(self, field_name: str, value: Any) -> float | None:
        if value is None:
            return None
        rule = _unit_interval(value)
        if rule:
            self.fail(field_name, rule)
            return None
        return float(value)

    def vector(self, field_name: str, value: Any, names: Sequence[str]) -> list[float | None] | None:
        """A list of len(names) values, or an object keyed by those names; null entries are missing."""
        if value is None:
            return None
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(names))
            if unknown:
                self.fail(field_name, f"unknown keys {unknown}; expected some of {list(names)}")
            return [self.unit(f"{field_name}.{n}", value.get(n)) for n in names]
        if isinstance(value, list):
            if len(value) != len(names):
                self.fail(field_name, f"must have {len(names)} values ({', '.join(names)}), got {len(value)}")
                return None
            return [self.unit(f"{field_name}[{i}] ({n})", v) for i, (n, v) in enumerate(zip(names, value, strict=True))]
        self.fail(field_name, f"must be a list of {len(names)} numbers or an object, got {type(value).__name__}")
        return None


def validate_records(
    raw_records: Iterable[RawRecord],
    schema: TaskSchema,
    source: str,
    cleaning: TextCleaning | None = None,
    max_text_chars: int = 20_000,
) -> ValidationResult:
    cleaning = cleaning or TextCleaning()
    records: list[Record] = []
    quarantined: list[dict[str, Any]] = []
    all_problems: list[Problem] = []
    ignored: Counter = Counter()
    first_seen_id: dict[str, int] = {}
    k = schema.num_classes

    for raw in raw_records:
        data = raw.data
        rid = data.get("id") if isinstance(data, dict) else None
        rid_str = str(rid) if _is_number(rid) or isinstance(rid, str) else None
        check = _RecordChecker(source, raw, rid_str)
        for field_name, rule in raw.problems:
            check.fail(field_name, rule)

        record = None
        if data is None and raw.problems:
            pass  # unparsable: its problem is already recorded
        elif not isinstance(data, dict):  # a JSON `null` record too: it must not vanish without a problem
            check.fail("<record>", f"must be a JSON object, got {_json_type(data)}")
        else:
            for path in _surrogate_paths(data):
                check.fail(path, "holds an unpaired UTF-16 surrogate escape (such as \\ud800): not valid Unicode")
            record = _check_fields(check, data, schema, cleaning, max_text_chars, k, first_seen_id)
            ignored.update(key for key in data if key not in KNOWN_FIELDS)
            if isinstance(data.get("emotions"), dict):  # a typo such as `intensty` is reported, not lost
                ignored.update(f"emotions.{key}" for key in data["emotions"] if key not in EMOTIONS_FIELDS)

        if check.problems or record is None:
            all_problems.extend(check.problems)
            quarantined.append(
                {
                    "index": raw.index,
                    "line": raw.line,
                    "id": rid_str,
                    "problems": [f"{p.field}: {p.rule}" for p in check.problems],
                    "record": data,
                }
            )
        else:
            records.append(record)
    return ValidationResult(records, quarantined, all_problems, ignored)


def _check_fields(
    check: _RecordChecker,
    data: dict[str, Any],
    schema: TaskSchema,
    cleaning: TextCleaning,
    max_text_chars: int,
    k: int,
    first_seen_id: dict[str, int],
) -> Record | None:
    index = check.raw.index
    # id: required, unique
    rid = data.get("id")
    if rid is None:
        check.fail("id", "is required")
    elif not (isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool))):
        check.fail("id", f"must be a string or an integer, got {type(rid).__name__}")
    elif str(rid).strip() == "":
        check.fail("id", "must not be empty")
    elif str(rid) in first_seen_id:
        check.fail("id", f"duplicate id (first used by record {first_seen_id[str(rid)]})")
    else:
        first_seen_id[str(rid)] = index

    # text: required non-empty string after cleaning, bounded length, not a placeholder answer
    text = data.get("text")
    if text is None:
        check.fail("text", "is required")
    elif not isinstance(text, str):
        check.fail("text", f"must be a string, got {type(text).__name__}")
    else:
        text = cleaning.clean(text)
        if not text.strip():
            check.fail("text", "is empty or whitespace only")
        elif len(text) > max_text_chars:
            check.fail("text", f"is {len(text)} characters long; the limit is data.max_text_chars={max_text_chars}")
        elif (pattern := cleaning.placeholder_match(text)) is not None:
            check.fail("text", f"is a placeholder answer ({text[:40]!r} matches {pattern!r})")

    # label: required integer class index
    label = data.get("label")
    if label is None:
        check.fail("label", "is required")
    elif isinstance(label, bool) or not isinstance(label, int):
        if not any(p.field == "label" for p in check.problems):
            check.fail("label", f"must be an integer in 0..{k - 1}, got {type(label).__name__} {label!r:.40}")
    elif not 0 <= label < k:
        check.fail("label", f"is {label}, outside 0..{k - 1} ({', '.join(schema.class_names)})")

    metadata = {key: data[key] for key in METADATA_FIELDS if key in data}
    extra_metadata = data.get("metadata")  # e.g. columns the table adapter keeps (data.table.metadata)
    if isinstance(extra_metadata, dict):
        metadata.update(extra_metadata)
    elif extra_metadata is not None:
        check.fail("metadata", f"must be an object, got {type(extra_metadata).__name__}")
    intensity = None
    emotions = data.get("emotions")
    if emotions is not None:
        if not isinstance(emotions, dict):
            check.fail("emotions", f"must be an object, got {type(emotions).__name__}")
        else:
            intensity = check.unit("emotions.intensity", emotions.get("intensity"))
            for key in ("primary", "secondary"):
                if key in emotions:
                    metadata[f"emotions.{key}"] = emotions[key]

    regret = check.unit("regret_factor", data.get("regret_factor"))
    bentham = check.vector("bentham_scores", data.get("bentham_scores"), schema.bentham_names)
    surd_raw = data.get("surd_metrics")
    if surd_raw is not None and not isinstance(surd_raw, Mapping):
        check.fail("surd_metrics",
                   f"must be an object keyed by {list(schema.surd_names)}, got {type(surd_raw).__name__}")
        surd = None
    else:
        surd = check.vector("surd_metrics", surd_raw, schema.surd_names)

    if check.problems:
        return None
    return Record(
        id=str(rid),
        text=text,
        label=label,
        intensity=intensity,
        regret_factor=regret,
        bentham=bentham,
        surd=surd,
        metadata=metadata,
        source_index=index,
    )
