"""ResumeCheckpoint: Lightning's ModelCheckpoint whose `last.ckpt` relink waits for the background save.

With AsyncAtomicCheckpointIO the save of `resume-epoch=N.ckpt` returns before the file exists. Lightning
would then relink `last.ckpt` to it at once: a kill before the write lands leaves a link to nothing.
Here the relink is queued on the writer thread behind the save (and behind the removal of the previous
resume checkpoint, as Lightning orders them), so `last.ckpt` only ever points at a whole file or is
briefly missing, the case `redheart.train.resume_checkpoint` already repairs. Everything else, file
names included, is ModelCheckpoint's; with the synchronous AtomicCheckpointIO it behaves exactly so.

`enable_version_counter` defaults to False here: Lightning picks `last-v1.ckpt` when `last.ckpt` still
resolves to a file, and with queued writes the file it points at may be due for removal but not yet
removed; one fixed name is what `ckpt_path=last` finds. (Resume file names hold the epoch: no clash.)
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from callbacks.atomic_checkpoint_io import AsyncAtomicCheckpointIO


def link(filepath: str, linkpath: str) -> None:
    """Lightning's relink: remove the old `last.ckpt`, then a relative symlink (a copy where links fail)."""
    if os.path.islink(linkpath) or os.path.isfile(linkpath):
        os.remove(linkpath)
    elif os.path.isdir(linkpath):
        shutil.rmtree(linkpath)
    try:
        os.symlink(os.path.relpath(filepath, os.path.dirname(linkpath)), linkpath)
    except OSError:
        shutil.copy(filepath, linkpath)


class ResumeCheckpoint(ModelCheckpoint):
    def __init__(self, *args: Any, enable_version_counter: bool = False, **kwargs: Any):
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)

    def _monitor_candidates(self, trainer: L.Trainer) -> dict[str, torch.Tensor]:
        """Lightning's candidates, without its deep copy of every logged metric at every epoch end (about a
        hundred tensors with the per-module metrics): with no monitor they only fill in file names, and
        nothing keeps them. With a monitor, Lightning's own (it keeps the best score)."""
        if self.monitor is not None:
            return super()._monitor_candidates(trainer)
        candidates = dict(trainer.callback_metrics)
        epoch, step = candidates.get("epoch"), candidates.get("step")  # as Lightning: ints, else the counters
        candidates["epoch"] = epoch.int() if isinstance(epoch, torch.Tensor) else torch.tensor(trainer.current_epoch)
        candidates["step"] = step.int() if isinstance(step, torch.Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def _link_checkpoint(self, trainer: L.Trainer, filepath: str, linkpath: str) -> None:
        io = trainer.strategy.checkpoint_io
        if not isinstance(io, AsyncAtomicCheckpointIO):
            ModelCheckpoint._link_checkpoint(trainer, filepath, linkpath)
            return
        if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
            io.run_after_writes(lambda: link(filepath, linkpath))
        trainer.strategy.barrier()
