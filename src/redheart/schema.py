"""The record schema (docs/design.md, Data) and the task names that come from config.

A `Record` is one validated training example. Optional targets are `None` when absent; the vector
targets (Bentham, SURD) may also have individual `None` entries. Missing targets are masked in the
loss, never a reason to drop a record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_CLASS_NAMES = ("joy", "fear", "anger", "sadness", "disgust", "shame", "guilt")
DEFAULT_BENTHAM_NAMES = (
    "intensity",
    "duration",
    "certainty",
    "propinquity",
    "fecundity",
    "purity",
    "extent",
    "external_cost",
    "redistribution",
    "self_damage",
)
DEFAULT_SURD_NAMES = ("surprise", "uncertainty", "relevance", "depth")

# Fields of the record schema kept as metadata (never used as model input or target).
METADATA_FIELDS = ("title", "action", "timestamp", "language")


@dataclass(frozen=True)
class TaskSchema:
    """Names of the classes and of the vector targets; their lengths fix the model's output sizes."""

    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    bentham_names: tuple[str, ...] = DEFAULT_BENTHAM_NAMES
    surd_names: tuple[str, ...] = DEFAULT_SURD_NAMES

    def __post_init__(self) -> None:
        for what, names in (
            ("class_names", self.class_names),
            ("bentham_names", self.bentham_names),
            ("surd_names", self.surd_names),
        ):
            if len(names) == 0:
                raise ValueError(f"schema.{what} must not be empty")
            if len(set(names)) != len(names):
                raise ValueError(f"schema.{what} has repeated names: {list(names)}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "bentham_names", tuple(self.bentham_names))
        object.__setattr__(self, "surd_names", tuple(self.surd_names))

    @classmethod
    def from_config(
        cls,
        class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
        bentham_names: Sequence[str] = DEFAULT_BENTHAM_NAMES,
        surd_names: Sequence[str] = DEFAULT_SURD_NAMES,
    ) -> TaskSchema:
        return cls(tuple(class_names), tuple(bentham_names), tuple(surd_names))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class Record:
    id: str
    text: str
    label: int
    intensity: float | None = None
    regret_factor: float | None = None
    bentham: list[float | None] | None = None
    surd: list[float | None] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source_index: int = -1  # position in the source file (0-based record index)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        return cls(**d)
