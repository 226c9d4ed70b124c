"""Per-step LR schedules that keep each parameter group's own LR ratio (layer-wise decay survives).

`one_cycle`: warm up from `start` × each group's LR to its LR over the first `warmup` share of the steps,
then anneal to `end` × its LR (cosine both ways, like torch's OneCycleLR, which would instead overwrite
every group with one max_lr and so erase the encoder's layer-wise decay). The usual fine-tuning schedule.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def one_cycle_factor(step: int, total_steps: int, warmup: float = 0.1, start: float = 0.04, end: float = 0.0) -> float:
    warm = max(1, int(round(warmup * total_steps)))
    if step < warm:
        return start + (1 - start) * (1 - math.cos(math.pi * step / warm)) / 2
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return end + (1 - end) * (1 + math.cos(math.pi * progress)) / 2


def one_cycle(optimizer: Optimizer, total_steps: int, warmup: float = 0.1, start: float = 0.04,
              end: float = 0.0) -> LambdaLR:
    if total_steps < 1:
        raise ValueError(f"one_cycle needs total_steps >= 1, got {total_steps}")
    return LambdaLR(optimizer, lambda step: one_cycle_factor(step, int(total_steps), warmup, start, end))
