"""AtomicCheckpointIO: Lightning checkpoints written next to their target, then renamed.

Lightning's own save serialises into memory and moves a temp file from the system temp directory
(fsspec), which is a copy, not a rename, when /tmp is another filesystem: a kill mid-copy leaves a
truncated `last.ckpt` that looks like a checkpoint. Here the temp file sits in the target's folder,
is fsynced, and `os.replace` makes it appear whole or not at all (and no in-memory copy of the
checkpoint is made).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from redheart.io import atomic_write_with


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes to a temp file beside the target, fsyncs it and renames it."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        atomic_write_with(path, lambda tmp: torch.save(checkpoint, tmp))
