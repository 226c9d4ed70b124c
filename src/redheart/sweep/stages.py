"""Planning the hierarchical 5-5-5-5 sweep (docs/design.md, LR sweep): each stage's learning rates.

Stage 0 spreads `points` LRs log-evenly over `lr_range` (default [1e-5, 5e-4]). Stage s > 0 spreads
them over a log range centred on the best LR so far whose width is stage 0's times `shrink`^s, so
the search narrows around the optimum (5 stages × 5 = 25 points by default).

Before a stage launches, each planned LR is checked against every LR already tested (in the
cumulative file, from this sweep or an earlier one sharing it) and the ones placed before it:
- the same LR (relative difference < 1e-6) is reused: its result is taken, nothing is re-run;
- an LR within `min_gap` (10%: a ratio below 1.1) of another is moved to the nearest LR that keeps
  the gap to all of them (on the log axis, the nearest edge of the forbidden intervals), staying
  within the stage's range widened by one gap on each side;
- when no such LR is left there, the point is skipped: the range is already covered at the 10%
  resolution, and running an LR far outside it would only spend a job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SAME = 1e-6


@dataclass(frozen=True)
class PlannedLR:
    lr: float
    reused: bool = False   # already tested: take its result
    moved_from: float | None = None
    skipped: bool = False  # no LR left in the range at the minimum gap: not run


def log_points(low: float, high: float, n: int) -> list[float]:
    if not 0 < low <= high or n < 1:
        raise ValueError(f"need 0 < low <= high and n >= 1, got low={low}, high={high}, n={n}")
    if n == 1:
        return [math.sqrt(low * high)]
    step = (math.log(high) - math.log(low)) / (n - 1)
    return [math.exp(math.log(low) + i * step) for i in range(n)]


def stage_range(stage: int, best: float | None, lr_range: tuple[float, float], shrink: float) -> tuple[float, float]:
    """Stage 0: lr_range. Later stages: lr_range's log width × shrink^stage, centred on `best`."""
    low, high = lr_range
    if stage == 0 or best is None:
        return low, high
    half = 0.5 * (math.log(high) - math.log(low)) * shrink**stage
    return best * math.exp(-half), best * math.exp(half)


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= SAME * max(a, b)


def keep_gap(lr: float, taken: list[float], min_gap: float, bounds: tuple[float, float] | None = None) -> float | None:
    """`lr` if it is at least `min_gap` (relative) away from every taken LR, else the nearest LR within
    `bounds` that is (candidates: the edges of the forbidden log intervals log t ± log(1 + min_gap));
    None when there is none."""
    gap = math.log1p(min_gap)
    logs = [math.log(t) for t in taken]
    low, high = (math.log(b) for b in bounds) if bounds else (-math.inf, math.inf)

    def free(x: float) -> bool:
        return low <= x <= high and all(abs(x - t) >= gap * (1 - 1e-9) for t in logs)

    x = math.log(lr)
    if free(x):
        return lr
    candidates = [e for e in (t + sign * gap for t in logs for sign in (-1, 1)) if free(e)]
    return math.exp(min(candidates, key=lambda e: abs(e - x))) if candidates else None


def plan_stage(planned: list[float], tested: list[float], min_gap: float = 0.1) -> list[PlannedLR]:
    """Reuse tested LRs, move LRs that crowd a tested or already placed one, skip what finds no room."""
    bounds = (min(planned) / (1 + min_gap), max(planned) * (1 + min_gap))
    out: list[PlannedLR] = []
    taken = list(tested)
    for lr in planned:
        match = next((t for t in tested if _same(lr, t)), None)
        if match is not None and not any(p.lr == match for p in out):
            out.append(PlannedLR(match, reused=True))
            continue
        placed = keep_gap(lr, taken, min_gap, bounds)
        if placed is None:
            out.append(PlannedLR(lr, skipped=True))
            continue
        out.append(PlannedLR(placed, moved_from=None if placed == lr else lr))
        taken.append(placed)
    return out
