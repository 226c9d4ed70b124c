"""Errors the data pipeline raises. Each message names the file, and for record problems the
record index, id, field and rule, so a user can fix the input without reading a traceback."""

from __future__ import annotations

from dataclasses import dataclass

from redheart.errors import RedHeartError


class DataError(RedHeartError, ValueError):
    """Base of the errors caused by the input data or its config (not by a bug): the command-line
    entry points print their message alone, without a traceback."""


class DataConfigError(DataError):
    """A data setting cannot work (a separator of two characters, an unknown option): fix the config."""


class DataFileError(DataError):
    """The input file as a whole cannot be read (missing, a directory, empty, not JSON, ...)."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Problem:
    """One broken rule of one record."""

    source: str
    index: int  # 0-based record index in the source
    record_id: str | None
    field: str
    rule: str
    line: int | None = None  # 1-based line in the file, where the format has lines

    def __str__(self) -> str:
        where = f"{self.source}: record {self.index}"
        if self.line is not None:
            where += f" (line {self.line})"
        rid = "?" if self.record_id is None else repr(self.record_id)
        return f"{where}, id {rid}, field '{self.field}': {self.rule}"


class DataValidationError(DataError):
    """Raised with `data.on_invalid=error`: lists every problem of every invalid record."""

    def __init__(self, problems: list[Problem], n_records: int) -> None:
        self.problems = problems
        n_bad = len({(p.source, p.index) for p in problems})
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{n_bad} of {n_records} records are invalid ({len(problems)} problems):\n{lines}\n"
            "Fix them, or set data.on_invalid=skip to quarantine invalid records instead."
        )


class SplitError(DataError):
    """The kept records cannot be split as configured (too few records for a stratified split)."""


class LeakageError(DataError):
    """An exact or near-duplicate text appears in two splits."""
