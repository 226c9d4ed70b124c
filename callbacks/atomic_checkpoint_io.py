"""Lightning checkpoints written next to their target, then renamed; optionally off the training thread.

AtomicCheckpointIO: Lightning's own save serialises into memory and moves a temp file from the system
temp directory (fsspec), which is a copy, not a rename, when /tmp is another filesystem: a kill mid-copy
leaves a truncated `last.ckpt` that looks like a checkpoint. Here the temp file sits in the target's
folder, is fsynced, and `os.replace` makes it appear whole or not at all.

AsyncAtomicCheckpointIO (the default, conf/trainer/default.yaml): Lightning's AsyncCheckpointIO around
AtomicCheckpointIO, with three changes that keep the crash guarantees of the synchronous version:
- the snapshot is a CPU copy, taken on the training thread (Lightning clones on the tensors' device:
  a second copy of weights and optimizer state in GPU memory). With `serialize_in="process"` (the
  default) the copy goes into a shared-memory buffer kept between saves and torch.save runs in a helper
  process (callbacks/serializer_process.py): on a thread it holds the GIL and slows training for the
  whole write. Where the helper cannot run (not Linux), the thread does it, as with "thread";
- saves, removals of the previous checkpoint and the `last.ckpt` relink (callbacks/resume_checkpoint.py)
  run in submission order on the process's one writer thread (callbacks/background_writer.py), behind
  the modular checkpoint of the same epoch: the previous resume checkpoint is deleted only once the new
  one is whole, and never before the modular files it records as saved;
- the next save waits for the previous save (one snapshot held at a time), a load for every write.
Cost: host memory for one checkpoint's copy (the 11.7 GB resume checkpoint of the `full` preset), held
in shared memory for the whole fit with "process", only while it is written with "thread";
`trainer.plugins=[{_target_: callbacks.atomic_checkpoint_io.AtomicCheckpointIO}]` writes on the training
thread instead.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO
from typing_extensions import override

from callbacks.background_writer import WRITER, to_cpu_copy
from callbacks.serializer_process import SERIALIZER
from redheart.io import atomic_write_with


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes to a temp file beside the target, fsyncs it and renames it."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        atomic_write_with(path, lambda tmp: torch.save(checkpoint, tmp))


class AsyncAtomicCheckpointIO(AsyncCheckpointIO):
    """Atomic checkpoint writes off the training thread (see the module docstring).

    Args:
        checkpoint_io: the IO that writes a file on the writer thread (default AtomicCheckpointIO).
        serialize_in: "process": torch.save in a helper process from shared memory (falls back to "thread"
            where the helper cannot run); "thread": torch.save on the writer thread.
    """

    def __init__(self, checkpoint_io: Any | None = None, serialize_in: str = "process") -> None:
        if serialize_in not in ("process", "thread"):
            raise ValueError(f"serialize_in must be 'process' or 'thread', got {serialize_in!r}")
        super().__init__(checkpoint_io or AtomicCheckpointIO())
        self.serialize_in = serialize_in
        self._last_save: Future | None = None
        if serialize_in == "process":
            SERIALIZER.start()  # imports torch while the data and the model are prepared, not at the first save

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        WRITER.wait_for(self._last_save)  # the previous resume checkpoint is whole before this copy is taken
        staged = None
        if self.serialize_in == "process" and storage_options is None:
            staged = SERIALIZER.stage(id(self), checkpoint)
        if staged is not None:
            self._last_save = WRITER.submit(lambda: atomic_write_with(path, lambda tmp: SERIALIZER.save(staged, tmp)))
            return
        snapshot = to_cpu_copy(checkpoint)
        self._last_save = WRITER.submit(lambda: self.checkpoint_io.save_checkpoint(snapshot, path, storage_options))

    def remove_checkpoint(self, path: _PATH) -> None:
        WRITER.submit(lambda: self.checkpoint_io.remove_checkpoint(path))  # after the save queued before it

    def run_after_writes(self, job: Any) -> None:
        """Run `job` on the writer thread once the writes queued so far are done (the last.ckpt relink)."""
        WRITER.submit(job)

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        WRITER.wait()
        return self.checkpoint_io.load_checkpoint(*args, **kwargs)

    def teardown(self) -> None:
        """End of fit, and after an exception: every queued write lands (or its error is raised) here."""
        try:
            WRITER.wait()
        finally:
            SERIALIZER.release(id(self))
        self.checkpoint_io.teardown()
