"""ModularCheckpoint: every N epochs, one safetensors file per module group plus a metrics file.

Layout under `dirpath` (default `<run>/modular`):
    epoch_002/<group>.safetensors   raw weights as `raw/<name>`, EMA weights as `ema/<name>`; header
                                    metadata: epoch, group, dtype, which copies it holds
    metrics_epoch_002.json          what the analysis needs (see `epoch_metrics`)
    manifest.json                   every saved epoch: files, sizes, sha256; rewritten after the files
`weights`: `evaluated` (default) stores only the copy validation measured, the EMA weights when an
EMAWeightAveraging callback runs, else the raw ones: what the analysis and the crossover read, half the
disk of `both`, which adds the other copy (docs/checkpoints.md "Disk").
Every file is written to a temp name and renamed, so a kill mid-write leaves no file that looks valid
(the manifest only ever lists complete files). The tensors are copied to CPU memory at the epoch
boundary, on the training thread, into a shared-memory buffer kept for the fit (one snapshot's size);
the files are written from it by the checkpoint serializer process (callbacks/serializer_process.py),
the metrics file and the manifest (last) by the process's checkpoint writer thread
(callbacks/background_writer.py), which the next save, the end of fit, teardown and an exception wait
for. Epochs are 1-based counts of completed epochs: with
every_n_epochs=2 and 60 epochs, 2, 4, ..., 60 (30 checkpoints). safetensors loads without pickle.
Only the Lightning `last`/resume checkpoint keeps optimizer and scheduler state.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from safetensors.torch import save_file
from typing_extensions import override

from callbacks.background_writer import WRITER
from callbacks.dead_units import DeadUnitMonitor
from callbacks.ema import AveragedWeights
from callbacks.gradient_norms import GradientNormMonitor
from callbacks.module_groups import ModuleGroups, target_module
from callbacks.param_sampling import ParameterSampler
from callbacks.serializer_process import SERIALIZER
from callbacks.train_loss import epoch_train_loss
from redheart.io import atomic_write_json, atomic_write_with, nulls_for_non_finite, sha256_file
from redheart.run_folder import FORMAT, MANIFEST, group_file, metrics_file, new_manifest, read_manifest

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
log = logging.getLogger(__name__)
WEIGHTS = ("evaluated", "both")


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


class ModularCheckpoint(L.Callback):
    """Every `every_n_epochs` completed epochs, one safetensors file per module group plus a metrics file.

    It reads the gradient statistics through `GradientNormMonitor.take_interval()`, the dead-unit fractions
    through `DeadUnitMonitor.last` and the EMA weights through `AveragedWeights.averaged_state_dict()`.

    Args:
        dirpath: the modular/ folder of the run (redheart.run_folder names its files).
        groups: module groups, group -> parameter-name prefixes (conf/module_groups).
        every_n_epochs: save after every N-th completed epoch.
        dtype: stored precision, "float32" or "bfloat16".
        weights: "evaluated" stores the weights validation measured (the EMA ones when an averaging callback
            runs, else the raw ones); "both" also stores the raw weights beside the EMA ones (twice the disk).
        background: write the files in the background from a CPU snapshot (in the checkpoint serializer
            process, else on the writer thread); off: on the training thread.
    """
    def __init__(self, dirpath: str, groups: Mapping[str, Sequence[str]], every_n_epochs: int = 2,
                 dtype: str = "float32", weights: str = "evaluated", background: bool = True):
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
        self.dirpath = Path(dirpath)
        self.module_groups = ModuleGroups(groups)
        self.every_n_epochs = every_n_epochs
        self.dtype = dtype
        self.weights = weights
        self.background = background
        self._last_write: Future | None = None
        self.saved_epochs: list[int] = []
        self._sampler: ParameterSampler | None = None
        self._snapshot: dict | None = None
        self._interval_start = time.monotonic()
        self._fit_start = time.monotonic()

    @property
    def manifest_path(self) -> Path:
        return self.dirpath / MANIFEST

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Refuse strategies that shard parameters (rank zero alone could not read whole module groups);
        start the checkpoint serializer process for the background writes."""
        from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

        if isinstance(trainer.strategy, FSDPStrategy | ModelParallelStrategy):
            raise ValueError(f"ModularCheckpoint does not support {type(trainer.strategy).__name__}: parameters are "
                             "sharded across ranks, and each module group's file needs the whole tensors on rank "
                             "zero. Use trainer=ddp (weights replicated) or trainer=gpu_8gb (DeepSpeed ZeRO-2: "
                             "only the optimizer state is sharded); README 'Scaling out'.")
        if self.background and trainer.is_global_zero:  # rank zero writes; the helper imports torch by the first save
            SERIALIZER.start()

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = dict(target_module(pl_module).named_parameters())
        self._group_names = {g: list(m) for g, m in self.module_groups.partition(params.items()).items()}
        self._sampler = ParameterSampler(params)
        if self._snapshot is None:  # a resumed run keeps the snapshot of its last checkpoint
            self._snapshot = self._sampler.snapshot()
        self._interval_start = self._fit_start = time.monotonic()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if trainer.sanity_checking or epoch % self.every_n_epochs or epoch in self.saved_epochs:
            return
        self.save(trainer, pl_module, epoch)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        WRITER.wait()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        try:
            WRITER.wait()  # the writes queued before the failure still land whole
        except RuntimeError as err:  # the training's own exception is the one to report
            log.error("%s", err)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        try:
            WRITER.wait()
        finally:
            SERIALIZER.release(self._buffer_key)

    def _ema(self, trainer: L.Trainer) -> dict[str, torch.Tensor] | None:
        for callback in trainer.callbacks:
            state = callback.averaged_state_dict() if isinstance(callback, AveragedWeights) else None
            if state is not None:  # the averaged copy of the LightningModule
                prefix = "net." if any(k.startswith("net.") for k in state) else ""
                return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        return None

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        ema = self._ema(trainer)  # the weights validation measured when EMA runs
        raw = dict(target_module(pl_module).state_dict()) if ema is None or self.weights == "both" else None
        metrics = self.epoch_metrics(trainer, pl_module, epoch, ema is not None)
        if trainer.is_global_zero:
            self.write_snapshot(epoch, raw, ema, metrics)
        self.saved_epochs.append(epoch)

    def write_snapshot(self, epoch: int, raw: dict | None, ema: dict | None, metrics: dict) -> None:
        """Copy the tensors now, write them on the writer thread (or here when `background` is off).

        In the background the copy goes into a shared-memory buffer kept for the fit and the checkpoint
        serializer process writes the files from it (callbacks/serializer_process.py): safetensors'
        save_file on the writer thread holds the GIL while it copies every tensor into bytes, which slows
        the training thread. Where the helper cannot run, the writer thread writes a private CPU copy."""
        WRITER.wait_for(self._last_write)  # the previous checkpoint is on disk before this one's copy is taken
        staged = (SERIALIZER.stage(self._buffer_key, {"raw": raw, "ema": ema}, DTYPES[self.dtype])
                  if self.background else None)
        if staged is not None:
            copies = staged.restored()
            save = partial(SERIALIZER.save_safetensors, staged)
            self._last_write = WRITER.submit(lambda: self._write(epoch, copies["raw"], copies["ema"], metrics, save))
            return
        raw, ema = self._snapshot_tensors(raw), self._snapshot_tensors(ema)
        if self.background:
            self._last_write = WRITER.submit(lambda: self._write(epoch, raw, ema, metrics))
        else:
            self._write(epoch, raw, ema, metrics)

    @property
    def _buffer_key(self) -> tuple[str, int]:
        return ("modular", id(self))

    def _snapshot_tensors(self, state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        """CPU copies in the storage dtype: what the writer thread saves, whatever training does meanwhile."""
        if state is None:
            return None
        dtype = DTYPES[self.dtype]
        return {n: t.detach().to("cpu", dtype, copy=True) for n, t in state.items()}

    @rank_zero_only
    def _write(self, epoch: int, raw: dict | None, ema: dict | None, metrics: dict,
               save: Callable[[dict, str, dict], None] | None = None) -> None:
        """Write the group files (with `save`, default safetensors' save_file), the metrics file, the manifest."""
        save = save or save_file
        if raw is None and ema is None:
            raise ValueError("a modular checkpoint needs the raw or the EMA weights")
        dtype = DTYPES[self.dtype]
        files = {}
        for group, names in self._group_names.items():
            tensors = {}
            for prefix, state in (("raw", raw), ("ema", ema)):
                if state is not None:
                    tensors |= {f"{prefix}/{n}": state[n].detach().to("cpu", dtype).contiguous() for n in names}
            meta = {"format": FORMAT, "epoch": str(epoch), "group": group, "dtype": self.dtype,
                    "ema": str(ema is not None).lower(), "raw": str(raw is not None).lower()}
            path = atomic_write_with(group_file(self.dirpath, epoch, group),
                                     lambda tmp, t=tensors, m=meta: save(t, tmp, m))
            files[group] = {"path": str(path.relative_to(self.dirpath)), "bytes": path.stat().st_size,
                            "sha256": sha256_file(path), "tensors": len(tensors)}
        metrics_path = atomic_write_json(metrics_file(self.dirpath, epoch), nulls_for_non_finite(metrics))
        manifest = self.read_manifest()
        manifest["checkpoints"] = [c for c in manifest["checkpoints"] if c["epoch"] != epoch] + [{
            "epoch": epoch, "files": files, "metrics": metrics_path.name,
            "metrics_sha256": sha256_file(metrics_path), "ema": ema is not None, "raw": raw is not None,
            "dtype": self.dtype,
        }]
        manifest["checkpoints"].sort(key=lambda c: c["epoch"])
        atomic_write_json(self.manifest_path, manifest)  # last: it lists only complete files

    def read_manifest(self) -> dict[str, Any]:
        """The manifest so far (checked), or a new one before the first save."""
        if self.manifest_path.is_file():
            return read_manifest(self.dirpath).data
        return new_manifest(self.every_n_epochs, self.module_groups.groups)

    def epoch_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int, ema: bool) -> dict:
        """Everything the sweet-spot analysis reads for one checkpoint (no weights needed)."""
        logged = {k: float(v) for k, v in trainer.callback_metrics.items()
                  if torch.is_tensor(v) or isinstance(v, float)}
        val = {k[len("val/"):]: v for k, v in logged.items()
               if k.startswith("val/") and not k.startswith("val/module/")}
        modules: dict[str, dict[str, float]] = {}
        for key, value in logged.items():
            if key.startswith("val/module/"):
                prefix, metric = key[len("val/module/"):].rsplit("/", 1)
                modules.setdefault(prefix, {})[metric] = value
        new = self._sampler.snapshot()
        params = dict(target_module(pl_module).named_parameters())
        gradients = next((c.take_interval() for c in trainer.callbacks if isinstance(c, GradientNormMonitor)), {})
        dead = next((c.last for c in trainer.callbacks if isinstance(c, DeadUnitMonitor)), {})
        groups = {}
        for group, names in self._group_names.items():
            named = [n for n in names if n in params]
            ratio, _ = ParameterSampler.relative_change(self._snapshot, new, named)
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm([params[n].detach() for n in named])))
            grad = gradients.get(group, {})
            groups[group] = {"grad_norm_mean": grad.get("mean"), "grad_norm_max": grad.get("max"),
                             "grad_steps": grad.get("steps", 0), "update_ratio": ratio, "param_norm": float(norm),
                             "dead_unit_fraction": dead.get(group)}
        self._snapshot = new
        now = time.monotonic()
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        out = {
            "epoch": epoch, "global_step": trainer.global_step,
            "lr": [g["lr"] for g in optimizer.param_groups] if optimizer else None,
            "train_loss": epoch_train_loss(trainer, pl_module), "val_loss": logged.get("val/loss"),
            "val": val, "modules": modules, "groups": groups, "ema": ema,
            "val_confusion": getattr(pl_module, "confusion", {}).get("val"),  # confusion-matrix stability (analysis)
            "weights_evaluated": "ema" if ema else "raw",  # EMAWeightAveraging validates with the EMA weights
            "wall_time_s": now - self._interval_start, "elapsed_s": now - self._fit_start,
            "peak_rss_bytes": peak_rss_bytes(),
            "gpu_max_allocated_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
        }
        self._interval_start = now
        return out

    @override
    def state_dict(self) -> dict[str, Any]:
        """Saved epochs and the sampled weights of the last save (≤ 16 KiB per tensor), for update ratios."""
        snapshot = self._snapshot or {}
        return {"saved_epochs": list(self.saved_epochs),
                "samples": {n: v[0] for n, v in snapshot.items()}, "checksums": {n: v[1] for n, v in snapshot.items()}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved_epochs = list(state_dict.get("saved_epochs", []))
        samples, checksums = state_dict.get("samples", {}), state_dict.get("checksums", {})
        self._snapshot = {n: (samples[n], checksums[n]) for n in samples} or None
