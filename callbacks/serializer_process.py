"""torch.save (and safetensors' save_file) in a helper process, from a copy of the tensors in shared memory.

Why a process: torch.save holds the GIL while it pickles and copies each tensor into the file, and the
training thread releases and re-takes the GIL at every torch op, so a writer *thread* slows training for
the whole write. A process has its own GIL. Measured on 2 cores (bench/checkpoint_writer.py, `small`'s
146 MB checkpoint): one save cost training 0.24 s from the writer thread (0.076 s copy + 0.167 s of
slowed steps), 0.066 s with this helper (0.054 s + 0.013 s).

How: the caller `stage`s a checkpoint on the training thread. Every tensor is copied into one
anonymous shared-memory buffer (memfd) that is kept between saves, so its pages are not faulted in
again at every save as a fresh CPU copy's are. The buffer's file descriptor goes to
the helper over a Unix socket once; only the small structure around the tensors (dicts, numbers,
strings, with a `_Slot` in each tensor's place) is pickled through it per save. The helper makes each
tensor a view of its own bytes (one storage per tensor, so the file is laid out as torch.save lays out
separate tensors) and calls torch.save. Anonymous memory has no name: whatever kills the processes,
nothing is left behind in /dev/shm.

One helper per Python process (`python -m callbacks.serializer_process`: a bare interpreter, not a
re-import of the caller's main module as multiprocessing's spawn would do), started by `start()` when a
Trainer is built so that it has imported torch by the first save, ended with the process. Where memfd
or fd passing is missing (not Linux), `stage` returns None and the caller writes on its thread.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import mmap
import os
import pickle
import socket
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning_utilities.core.apply_func import apply_to_collection

ALIGN = 64  # byte offset of each tensor in the buffer: any dtype can view it
SUPPORTED = hasattr(os, "memfd_create") and hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")


class _Slot:
    """Where a tensor was in the checkpoint: its index in `Staged.specs` (not a dataclass: apply_to_collection
    would walk into it)."""
    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __reduce__(self):
        return _Slot, (self.index,)


@dataclass(frozen=True)
class TensorSpec:
    offset: int
    nbytes: int
    dtype: torch.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Staged:
    """A checkpoint copied into a shared buffer: the structure, where each tensor lies, which buffer, and
    the copies as tensors of this process (views of the buffer)."""
    skeleton: Any
    specs: list[TensorSpec]
    buffer: int
    views: list[torch.Tensor] = field(repr=False, compare=False)

    def restored(self) -> Any:
        """The staged object with each tensor replaced by its copy in the buffer."""
        return apply_to_collection(self.skeleton, _Slot, lambda s: self.views[s.index])


class _Buffer:
    def __init__(self, ident: int, size: int):
        self.ident, self.size = ident, size
        self.fd = os.memfd_create(f"redheart-ckpt-{ident}", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.bytes = torch.frombuffer(self.map, dtype=torch.uint8)

    def close(self) -> None:
        del self.bytes
        with contextlib.suppress(BufferError):  # a tensor still views it: the mapping goes with that tensor
            self.map.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _layout(tensors: list[torch.Tensor], dtype: torch.dtype | None = None) -> tuple[list[TensorSpec], int]:
    specs, offset = [], 0
    for t in tensors:
        stored = dtype or t.dtype
        nbytes = t.numel() * stored.itemsize
        specs.append(TensorSpec(offset, nbytes, stored, tuple(t.shape)))
        offset += -(-nbytes // ALIGN) * ALIGN
    return specs, max(offset, ALIGN)


class SerializerProcess:
    """torch.save of staged checkpoints in one helper process (see the module docstring).

    `stage(key, obj)` (training thread) copies `obj`'s tensors into the buffer of `key`; `save(staged,
    path)` (writer thread) has the helper torch.save it and blocks, without the GIL, until it has;
    `save_safetensors(staged, tensors, path, metadata)` writes some of the staged tensors as one safetensors
    file the same way; `release(key)` frees the buffer. A key's buffer must not be staged again before its
    previous saves have returned.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # one request and its reply at a time on the socket
        self._buffers: dict[Any, _Buffer] = {}
        self._next_ident = 0

    def start(self) -> bool:
        """Start the helper if it is not running; False where it cannot run here."""
        if self._alive():
            return True
        if not SUPPORTED:
            return False
        self._drop_all_buffers()  # a dead helper's buffers: a new one has never seen them
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        root = str(Path(__file__).resolve().parents[1])  # the folder that holds the `callbacks` package
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "callbacks.serializer_process", str(theirs.fileno())],
                                          pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        except OSError:
            ours.close()
            return False
        finally:
            theirs.close()
        self._sock = ours
        return True

    def stage(self, key: Any, obj: Any, dtype: torch.dtype | None = None) -> Staged | None:
        """Copy `obj`'s tensors into `key`'s shared buffer (cast to `dtype` if given); None where the helper
        cannot run."""
        tensors: list[torch.Tensor] = []

        def slot(t: torch.Tensor) -> _Slot:
            tensors.append(t.detach())
            return _Slot(len(tensors) - 1)

        skeleton = apply_to_collection(obj, torch.Tensor, slot)
        specs, size = _layout(tensors, dtype)
        buffer = self._buffer(key, size)
        if buffer is None:
            return None
        views = [buffer.bytes[s.offset:s.offset + s.nbytes].view(s.dtype).view(s.shape) for s in specs]
        cpu = [i for i, t in enumerate(tensors) if t.device.type == "cpu" and t.numel()]
        if cpu:
            torch._foreach_copy_([views[i] for i in cpu], [tensors[i] for i in cpu])
        for view, t in zip(views, tensors, strict=True):
            if t.device.type != "cpu" and t.numel():
                view.copy_(t)
        return Staged(skeleton, specs, buffer.ident, views)

    def _buffer(self, key: Any, size: int) -> _Buffer | None:
        buffer = self._buffers.get(key)
        if buffer is not None and buffer.size >= size and self._alive():
            return buffer
        self.release(key)
        if not self.start():
            return None
        self._next_ident += 1
        buffer = _Buffer(self._next_ident, size)
        try:
            self._request(("buffer", buffer.ident, buffer.size), fd=buffer.fd)
        except RuntimeError:
            buffer.close()
            return None
        self._buffers[key] = buffer
        return buffer

    def save(self, staged: Staged, path: str | os.PathLike) -> None:
        """Write `staged` to `path` with torch.save in the helper; raises what the helper raised."""
        self._request(("save", staged.buffer, staged.skeleton, staged.specs, str(path)))

    def save_safetensors(self, staged: Staged, tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                         metadata: dict[str, str] | None = None) -> None:
        """safetensors' `save_file(tensors, path, metadata)` in the helper; each tensor must be one of
        `staged.restored()`'s (a view of the buffer), which the helper reads from its own mapping."""
        buffer = next((b for b in self._buffers.values() if b.ident == staged.buffer), None)
        if buffer is None:
            raise RuntimeError("the staged buffer was released before its tensors were saved")
        base, end = buffer.bytes.data_ptr(), buffer.bytes.data_ptr() + buffer.size
        specs = {}
        for name, t in tensors.items():
            nbytes = t.numel() * t.element_size()
            if nbytes and not (t.is_contiguous() and base <= t.data_ptr() and t.data_ptr() + nbytes <= end):
                raise ValueError(f"tensor {name!r} is not a staged copy in the shared buffer")
            specs[name] = TensorSpec(t.data_ptr() - base if nbytes else 0, nbytes, t.dtype, tuple(t.shape))
        self._request(("safetensors", staged.buffer, specs, metadata, str(path)))

    def release(self, key: Any) -> None:
        """Free `key`'s buffer, here and in the helper."""
        buffer = self._buffers.pop(key, None)
        if buffer is None:
            return
        try:
            if self._alive():
                self._request(("drop", buffer.ident))
        finally:
            buffer.close()

    def _drop_all_buffers(self) -> None:
        for key in list(self._buffers):
            self._buffers.pop(key).close()

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _request(self, message: tuple, fd: int | None = None) -> None:
        with self._lock:
            if not self._alive() or self._sock is None:
                raise RuntimeError("checkpoint serializer process is not running")
            try:
                _send(self._sock, message, fd)
                status, detail = _receive(self._sock)  # waiting on the socket releases the GIL
            except (EOFError, OSError, pickle.UnpicklingError) as err:
                raise RuntimeError(f"checkpoint serializer process ended (exit code {self._proc.poll()}): "
                                   f"{err}") from err
        if status != "ok":
            raise RuntimeError(f"checkpoint serializer process: {detail}")

    def close(self) -> None:
        self._drop_all_buffers()
        proc, sock, self._proc, self._sock = self._proc, self._sock, None, None
        if sock is not None:
            sock.close()  # the helper reads the end of the stream and exits
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


SERIALIZER = SerializerProcess()
atexit.register(SERIALIZER.close)


# ---- the wire: a length-prefixed pickle per message; a buffer's fd follows it as one marked byte ----

def _send(sock: socket.socket, message: Any, fd: int | None = None) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(len(data).to_bytes(8, "little") + data)
    if fd is not None:
        socket.send_fds(sock, [b"F"], [fd])  # read by the receiver right after this message, never merged


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the socket was closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(sock: socket.socket) -> bytes:
    """One message's pickle bytes (its 8-byte length first)."""
    return _read_exactly(sock, int.from_bytes(_read_exactly(sock, 8), "little"))


def _receive(sock: socket.socket) -> Any:
    return pickle.loads(_read_frame(sock))


# ---- the helper ----

def _tensor(buffer: mmap.mmap, spec: TensorSpec) -> torch.Tensor:
    """The spec's bytes as a tensor with a storage of its own (not a view of the whole buffer)."""
    count = math.prod(spec.shape)
    if count == 0:
        return torch.empty(spec.shape, dtype=spec.dtype)
    return torch.frombuffer(buffer, dtype=spec.dtype, count=count, offset=spec.offset).view(spec.shape)


def _serve(sock: socket.socket) -> None:
    """The helper's loop: map buffers, write checkpoints, reply ("ok", None) or ("error", last line)."""
    torch.set_num_threads(1)
    maps: dict[int, mmap.mmap] = {}
    while True:
        try:
            data = _read_frame(sock)  # unpickled below, where a failure is sent back instead of ending the helper
        except EOFError:
            return  # the training process closed the socket or ended
        reply = ("ok", None)
        try:
            message = pickle.loads(data)
            if message[0] == "buffer":
                _, fds, _, _ = socket.recv_fds(sock, 1, 1)
                _, ident, size = message
                maps[ident] = mmap.mmap(fds[0], size)
                os.close(fds[0])
            elif message[0] == "drop":
                maps.pop(message[1], None)
            elif message[0] == "safetensors":
                from safetensors.torch import save_file

                _, ident, specs, metadata, path = message
                save_file({name: _tensor(maps[ident], s) for name, s in specs.items()}, path, metadata)
            else:
                _, ident, skeleton, specs, path = message
                views = [_tensor(maps[ident], s) for s in specs]
                torch.save(apply_to_collection(skeleton, _Slot, lambda s, v=views: v[s.index]), path)
        except Exception:  # noqa: BLE001 (sent back and raised in the training process)
            reply = ("error", traceback.format_exc(limit=3).strip().splitlines()[-1])
        _send(sock, reply)


if __name__ == "__main__":
    from callbacks.serializer_process import _serve as serve  # the package's classes, not __main__'s (pickle)

    sys.stdout = sys.stderr  # nothing the helper prints can be mistaken for anything else
    serve(socket.socket(fileno=int(sys.argv[1])))
