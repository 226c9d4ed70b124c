"""OOM back-off: on a CUDA out-of-memory error, halve the micro-batch, double accumulation.

The callback records the failure (step, batch size, memory statistics) in `oom_stats.json` and works
out the next settings; `redheart.train.train` then rebuilds the Trainer with them and continues from
the latest resume checkpoint (at most one epoch is redone), so the effective batch
(micro-batch × accumulation) is unchanged. Below a micro-batch of 1 it stops with OOMBackoffError.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from redheart.errors import RedHeartError
from redheart.io import atomic_write_json


class OOMBackoffError(RedHeartError, RuntimeError):
    """Out of memory even at a micro-batch of 1."""


def is_cuda_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError)


def memory_statistics() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    return {"allocated": torch.cuda.memory_allocated(), "max_allocated": torch.cuda.max_memory_allocated(),
            "reserved": torch.cuda.memory_reserved(), "max_reserved": torch.cuda.max_memory_reserved(),
            "device": torch.cuda.get_device_name()}


class OOMBackoff(L.Callback):
    """On CUDA out-of-memory, halves the micro-batch and doubles gradient accumulation (`pending`).

    redheart.train.fit_with_oom_backoff applies `pending` and resumes; below a micro-batch of 1, or after
    `max_backoffs`, it stops with OOMBackoffError.

    Args:
        stats_path: JSON file listing every back-off with the memory statistics.
        max_backoffs: back-offs allowed before giving up.
    """
    def __init__(self, stats_path: str, max_backoffs: int = 8):
        if max_backoffs < 1:
            raise ValueError(f"max_backoffs must be >= 1, got {max_backoffs}")
        self.stats_path = Path(stats_path)
        self.max_backoffs = max_backoffs
        self.pending: dict[str, int] | None = None  # settings for the retry, set by on_exception

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not is_cuda_oom(exception):
            return
        datamodule = trainer.datamodule
        batch_size = int(getattr(datamodule, "batch_size", 0))
        accumulate = int(trainer.accumulate_grad_batches)
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "epoch": trainer.current_epoch + 1,
                  "global_step": trainer.global_step, "batch_size": batch_size,
                  "accumulate_grad_batches": accumulate, "error": str(exception).splitlines()[0][:300],
                  "memory": memory_statistics()}
        history = self.history()
        if batch_size // 2 < 1 or len(history) >= self.max_backoffs:
            record["action"] = "stop"
            self.pending = None
        else:
            self.pending = {"batch_size": batch_size // 2, "accumulate_grad_batches": accumulate * 2}
            record["action"] = self.pending
        self._append(history, record)
        if self.pending is None:
            raise OOMBackoffError(
                f"CUDA out of memory in epoch {trainer.current_epoch + 1}, step {trainer.global_step} with micro-batch "
                f"{batch_size} × accumulation {accumulate}, after {len(history)} back-offs: nothing smaller to try. "
                f"Use a smaller model preset, trainer=gpu_8gb, or a larger GPU (details in {self.stats_path})"
            ) from exception

    def history(self) -> list[dict]:
        return json.loads(self.stats_path.read_text(encoding="utf-8")) if self.stats_path.is_file() else []

    @rank_zero_only
    def _append(self, history: list[dict], record: dict) -> None:
        atomic_write_json(self.stats_path, [*history, record])
