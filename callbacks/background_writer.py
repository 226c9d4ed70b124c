"""One background thread per process that writes checkpoint files in the order they were submitted.

Why one shared thread: the resume checkpoint records which modular epochs were saved, so its file must
never be complete before the modular files it vouches for; Lightning's save, the removal of the previous
resume checkpoint and the relink of `last.ckpt` must also keep their order (the old file goes only once
the new one is whole). A single FIFO queue keeps the synchronous order while the training thread goes on.

The caller snapshots tensors to CPU memory before submitting (a job never reads live weights), and
waits for its own previous job (`wait_for`) before snapshotting the next one, so each writer (modular
files, resume checkpoint) holds at most one copy and never waits for the other's write of the epoch. After a job
fails, later jobs are skipped (a manifest or a removal must not follow a failed write) and the error is
raised on the training thread at the next `submit` or `wait`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from lightning_utilities.core.apply_func import apply_to_collection


def to_cpu_copy(obj: Any) -> Any:
    """`obj` with every tensor replaced by a CPU copy of it (never a view of a live tensor)."""
    return apply_to_collection(obj, torch.Tensor, lambda t: t.detach().to("cpu", copy=True))


class BackgroundWriter:
    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], Any]) -> Future:
        """Queue `job` after every job submitted before it; raises a failed job's error first."""
        if self._error is not None:
            self.wait()  # raises it once the jobs queued behind it have been skipped
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
            future = self._executor.submit(self._run, job)
            self._pending = [f for f in self._pending if not f.done()] + [future]
        return future

    def _run(self, job: Callable[[], Any]) -> Any:
        if self._error is not None:
            return None  # an earlier write failed: what follows it (manifest, removal, link) must not happen
        try:
            return job()
        except BaseException as err:
            self._error = err
            raise

    @property
    def busy(self) -> bool:
        return any(not f.done() for f in self._pending)

    def wait_for(self, future: Future | None) -> None:
        """Block until `future` (and so every job queued before it) has finished; raise a job's error."""
        if future is not None:
            future.exception()
        self._raise_error()

    def wait(self) -> None:
        """Block until every submitted job has finished; raise the first error of one (once)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for future in pending:
            future.exception()  # waits; the error itself is kept in self._error
        self._raise_error()

    def _raise_error(self) -> None:
        err, self._error = self._error, None
        if err is not None:
            raise RuntimeError(f"a background checkpoint write failed: {err}") from err


WRITER = BackgroundWriter()
