"""The models the evaluation compares, each a recipe (group -> epochs) with its weights (raw or EMA).

Order of the table: single checkpoints at the fixed epochs (30, 40, 50, when saved: docs/design.md), best
single (by val), last, EMA (the last checkpoint's EMA weights), uniform plateau average, per-group SWAD
average (each group over its own window), greedy soup,
the crossover, the greedy crossover, and the variants of the crossover with every group shifted
by the same number of epochs. Every choice that needed a score was made on val before this list exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

Recipe = dict[str, tuple[int, ...]]


@dataclass
class Candidate:
    name: str    # key in evaluation.json
    label: str   # row of the comparison table
    kind: str
    recipe: Recipe
    weights: str
    details: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        """Two candidates with the same key are the same weights (evaluated once)."""
        return self.weights, tuple(sorted(self.recipe.items()))


def _single(groups: Sequence[str], epoch: int) -> Recipe:
    return {g: (epoch,) for g in groups}


def _chosen(choices: Mapping[str, int]) -> Recipe:
    return {g: (e,) for g, e in choices.items()}


def build_candidates(groups: Sequence[str], epochs: Sequence[int], weights: str, has_ema: bool, best_epoch: int,
                     fixed_epochs: Sequence[int], choices: Mapping[str, int],
                     plateau_recipe: Recipe | None, soup_recipe: Recipe | None,
                     greedy_choice: Mapping[str, int] | None, shifts: Sequence[int],
                     shift: Callable[[int], dict[str, int]], swad_recipe: Recipe | None = None) -> list[Candidate]:
    last = max(epochs)
    # The labels name the weights: with EMA on, a checkpoint's "last epoch" model is its EMA average.
    kind = "EMA" if weights == "ema" else "raw"
    out = [Candidate(f"single_epoch_{e:03d}", f"Single (epoch {e}, {kind} weights)", "single", _single(groups, e),
                     weights, {"epoch": e}) for e in fixed_epochs if e in epochs]
    out.append(Candidate("best_single", f"Best single (epoch {best_epoch}, {kind} weights)", "best_single",
                         _single(groups, best_epoch), weights, {"epoch": best_epoch}))
    out.append(Candidate("last", f"Last epoch ({last}, {kind} weights)", "single", _single(groups, last), weights,
                         {"epoch": last}))
    if has_ema:
        out.append(Candidate("ema", f"EMA weights (epoch {last})", "ema", _single(groups, last), "ema",
                             {"epoch": last}))
    if plateau_recipe is not None:
        out.append(Candidate("plateau_average", "Plateau average", "average", dict(plateau_recipe), weights))
    if swad_recipe is not None:
        out.append(Candidate("per_group_plateau_average", "Per-group SWAD average", "average", dict(swad_recipe),
                             weights, {"windows": {g: list(e) for g, e in swad_recipe.items()}}))
    if soup_recipe is not None:
        soup = sorted(set(next(iter(soup_recipe.values()))))
        out.append(Candidate("greedy_soup", f"Greedy soup ({len(soup)} checkpoint{'s' if len(soup) > 1 else ''})",
                             "soup", dict(soup_recipe), weights, {"epochs": soup}))
    out.append(Candidate("crossover", "Parameter crossover", "crossover", _chosen(choices), weights,
                         {"choices": dict(choices)}))
    if greedy_choice is not None:
        out.append(Candidate("greedy_crossover", "Greedy crossover", "greedy_crossover", _chosen(greedy_choice),
                             weights, {"choices": dict(greedy_choice)}))
    for delta in shifts:
        moved = shift(delta)
        out.append(Candidate(f"crossover_shift_{delta:+d}", f"Crossover shifted {delta:+d}", "shift", _chosen(moved),
                             weights, {"shift": delta, "choices": moved}))
    return out
