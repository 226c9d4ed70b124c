"""Types and ranges of the config keys a user overrides, checked before a run builds anything.

A wrong value (`optim.lr=abc`, `data.split.val=1.5`) would otherwise surface minutes later as a
traceback deep inside torch or the data pipeline; here it ends the run at once with one line naming
the key, the value and what is expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from redheart.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    key: str
    kind: type  # int or float (an int is accepted where a float is expected; a bool never is)
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low < value instead of low <= value
    high_open: bool = False
    optional: bool = False  # null allowed
    also: tuple[Any, ...] = ()  # special values accepted besides the range (max_epochs=-1: no limit)

    def expected(self) -> str:
        name = "an integer" if self.kind is int else "a number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = name + (" " + " and ".join(bounds) if bounds else "")
        extras = [*(str(a) for a in self.also), *(["null"] if self.optional else [])]
        return text + (f" (or {', '.join(extras)})" if extras else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if value in self.also and not isinstance(value, bool):
            return True
        if isinstance(value, bool) or not isinstance(value, int if self.kind is int else (int, float)):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


RULES = (
    Rule("seed", int),
    Rule("optim.lr", float, 0, low_open=True),
    Rule("optim.weight_decay", float, 0),
    Rule("optim.scheduler.T_0", int, 1, optional=True),
    Rule("optim.scheduler.eta_min", float, 0, optional=True),
    Rule("trainer.max_epochs", int, 1, optional=True, also=(-1,)),
    Rule("trainer.min_epochs", int, 0, optional=True),
    Rule("trainer.accumulate_grad_batches", int, 1),
    Rule("trainer.gradient_clip_val", float, 0, optional=True),
    Rule("trainer.log_every_n_steps", int, 1, optional=True),
    Rule("trainer.check_val_every_n_epoch", int, 1, optional=True),
    Rule("data.batch_size", int, 1),
    Rule("data.num_workers", int, 0),
    Rule("data.max_samples", int, 1, optional=True),
    Rule("data.max_text_chars", int, 1),
    Rule("data.dedup_threshold", float, 0, 1, low_open=True),
    Rule("data.split.val", float, 0, 1, high_open=True),
    Rule("data.split.test", float, 0, 1, high_open=True),
    Rule("data.embedding.batch_size", int, 1),
    Rule("data.embedding.dim", int, 1),
    Rule("model.net.dropout", float, 0, 1, high_open=True),
    Rule("model.loss.label_smoothing", float, 0, 1, high_open=True),
    Rule("callbacks.ema.decay", float, 0, 1, low_open=True, high_open=True),
    Rule("callbacks.modular_checkpoint.every_n_epochs", int, 1),
    Rule("lr_sweep.score.last_k", int, 1),
)


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError on the first key of RULES that is present with a wrong type or out of range."""
    for rule in RULES:
        value = OmegaConf.select(cfg, rule.key, default=_ABSENT)
        if value is _ABSENT:  # the group is not in this config (e.g. ~model, callbacks=none)
            continue
        if not rule.accepts(value):
            raise ConfigError(f"{rule.key}={value!r}: expected {rule.expected()}")
    held_out = OmegaConf.select(cfg, "data.split.val", default=0) + OmegaConf.select(cfg, "data.split.test", default=0)
    if held_out >= 1:
        raise ConfigError(f"data.split.val + data.split.test = {held_out:g}: must be < 1 to leave a train split")


_ABSENT = object()
