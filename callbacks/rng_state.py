"""RNGStateCheckpoint: put the random-number generators in the resume checkpoint.

Lightning restores weights, optimizer, scheduler, loops and callback states, but not the global
RNGs, so a resumed run would draw other dropout masks and another shuffle than an uninterrupted one.
This callback stores torch's CPU (and CUDA) generator states and Python's `random` state with the
checkpoint (plain tensors/tuples: loads with weights_only=True) and sets them back on resume.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import torch
from typing_extensions import override


class RNGStateCheckpoint(L.Callback):
    """Saves torch's (CPU, CUDA) and Python's random-generator states in the resume checkpoint and
    restores them, so a resumed run draws the same dropout masks and shuffles as an uninterrupted one."""

    @override
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        random.setstate(_as_tuple(state_dict["python"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples; a checkpoint round-trip may hand back lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value
