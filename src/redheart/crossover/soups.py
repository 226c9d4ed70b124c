"""Weight-averaging and greedy baselines, all chosen on val only.

- plateau average: each group's tensors averaged uniformly over the checkpoints of its plateau.
- greedy soup (Wortsman et al. 2022, "Model soups", Alg. 1): whole checkpoints ranked by their own val
  score; starting from the best, each next one joins the uniform average only if val does not get worse.
- per-group SWAD average: each group averaged over its own SWAD-style window (`swad_window`).
- greedy crossover: from best single, for each group in turn try each epoch of its plateau, keeping a
  change only if val strictly improves (the soups' greedy rule applied per group, to a choice not a mean).

`score(recipe)` is the caller's val evaluation; `SoupSelection` says whether lower or higher is better.
Recipes map group -> epochs (assemble.Recipe); these functions only search, they read no weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Recipe = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class SoupSelection:
    """The val metric that ranks models (e.g. `loss`, min) and the comparisons the greedy rules use."""

    metric: str = "loss"
    mode: str = "min"

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"selection mode must be 'min' or 'max', got {self.mode!r}")

    def better(self, new: float, old: float) -> bool:
        return new < old if self.mode == "min" else new > old

    def not_worse(self, new: float, old: float) -> bool:
        return new <= old if self.mode == "min" else new >= old

    def best(self, scores: Mapping[int, float]) -> int:
        """The best key; ties go to the earliest epoch."""
        sign = 1 if self.mode == "min" else -1
        return min(scores, key=lambda e: (sign * scores[e], e))

    def ranked(self, scores: Mapping[int, float]) -> list[int]:
        sign = 1 if self.mode == "min" else -1
        return sorted(scores, key=lambda e: (sign * scores[e], e))


def plateau_average(plateaus: Mapping[str, Sequence[int]]) -> Recipe:
    return {group: tuple(sorted(epochs)) for group, epochs in plateaus.items()}


def greedy_soup(groups: Sequence[str], epoch_scores: Mapping[int, float], score: Callable[[Recipe], float],
                selection: SoupSelection) -> tuple[Recipe, list[dict[str, Any]]]:
    """Wortsman's greedy soup over whole checkpoints; returns the recipe and the trace of every trial."""
    order = selection.ranked(epoch_scores)
    soup = [order[0]]
    current = epoch_scores[order[0]]
    trace = [{"epoch": order[0], "score": current, "kept": True, "soup": list(soup)}]
    for epoch in order[1:]:
        trial = sorted([*soup, epoch])
        value = score({g: tuple(trial) for g in groups})
        kept = selection.not_worse(value, current)
        if kept:
            soup, current = trial, value
        trace.append({"epoch": epoch, "score": value, "kept": kept, "soup": list(soup)})
    return {g: tuple(sorted(soup)) for g in groups}, trace


def greedy_crossover(start: Mapping[str, int], plateaus: Mapping[str, Sequence[int]],
                     score: Callable[[Recipe], float], selection: SoupSelection,
                     start_score: float | None = None) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Per group, in order, try each plateau epoch; keep a change only when val strictly improves."""
    choice = dict(start)
    current = start_score if start_score is not None else score({g: (e,) for g, e in choice.items()})
    trace = []
    for group, epochs in plateaus.items():
        for epoch in epochs:
            if epoch == choice[group]:
                continue
            trial = {**choice, group: epoch}
            value = score({g: (e,) for g, e in trial.items()})
            kept = selection.better(value, current)
            if kept:
                choice, current = trial, value
            trace.append({"group": group, "epoch": epoch, "score": value, "kept": kept})
    return choice, trace


def swad_window(values: Mapping[int, float | None], mode: str, usable: Sequence[int], tolerance: float) -> list[int]:
    """A group's SWAD-style window (Cha et al. 2021): the run of consecutive usable checkpoints around the
    group's best epoch on its own validation metric whose value stays within `tolerance` (relative) of
    that best. SWAD averages densely from where the loss stops improving until it rises past a tolerance
    of its minimum; here that rule runs per group on the group's own curve, at checkpoint granularity."""
    epochs = [e for e in sorted(usable) if values.get(e) is not None]
    if not epochs:
        return []
    sign = 1.0 if mode == "min" else -1.0
    best = min(epochs, key=lambda e: (sign * values[e], e))
    limit = abs(values[best]) * tolerance

    def close(e: int) -> bool:
        return sign * (values[e] - values[best]) <= limit

    i = epochs.index(best)
    lo = hi = i
    while lo > 0 and close(epochs[lo - 1]):
        lo -= 1
    while hi < len(epochs) - 1 and close(epochs[hi + 1]):
        hi += 1
    return epochs[lo:hi + 1]
