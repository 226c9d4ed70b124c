"""How many CPU threads torch may use, in the training process, its DataLoader workers and sweep jobs.

torch starts one intra-op thread per core and its threads spin-wait on each other: with another busy
process on a 2-core machine a training step of `small` went from 0.27 s (1 thread) to 7 s (2 threads).
So the count is chosen, not left to torch:

- `threads: N` (train.yaml) → N;
- `threads: null` (default) → OMP_NUM_THREADS when set (joblib's loky workers get it too), else the
  cores this process may run on (its CPU affinity, not the machine's count) divided by the jobs that
  run at once (`hydra/launcher=parallel` with n_jobs: 2 on 2 cores → 1 thread each, not 2);
- DataLoader workers: the cores the training threads leave free, shared among the workers, at least 1.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch

from redheart.errors import ConfigError

log = logging.getLogger(__name__)


class ThreadsSettingError(ConfigError):
    """`threads` or OMP_NUM_THREADS is not a positive integer (train.py prints it in one line, exit 2)."""


def available_cores() -> int:
    """Cores this process may run on (taskset, cgroup cpusets), which os.cpu_count() ignores."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _positive_int(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or (isinstance(value, float) and not value.is_integer()) or isinstance(value, bool):
        raise ThreadsSettingError(f"{what} must be a positive integer, got {value!r}")
    return number


def resolve_threads(setting: int | None, env: Mapping[str, str] | None = None, cores: int | None = None,
                    parallel_jobs: int = 1) -> tuple[int, str]:
    """(intra-op threads, where the number came from) for the `threads` setting; see the module docstring."""
    env = os.environ if env is None else env
    if setting is not None:
        return _positive_int(setting, "threads"), "threads setting"
    if env.get("OMP_NUM_THREADS", "").strip():
        return _positive_int(env["OMP_NUM_THREADS"].strip(), "OMP_NUM_THREADS"), "OMP_NUM_THREADS"
    cores = available_cores() if cores is None else cores
    jobs = max(1, parallel_jobs)
    source = f"{cores} available cores" + (f" / {jobs} parallel jobs" if jobs > 1 else "")
    return max(1, cores // jobs), source


def worker_threads(main_threads: int, num_workers: int, cores: int | None = None) -> int:
    """Threads per DataLoader worker: the cores the training threads leave, shared, at least 1."""
    cores = available_cores() if cores is None else cores
    return max(1, (cores - main_threads) // max(1, num_workers))


def parallel_jobs(hydra_cfg: Any | None, cores: int | None = None) -> int:
    """Jobs that run at once on this machine: the joblib launcher's n_jobs in a multirun, else 1."""
    if hydra_cfg is None or str(hydra_cfg.get("mode", "")) != "RunMode.MULTIRUN":
        return 1
    launcher = hydra_cfg.get("launcher") or {}
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1  # basic launcher: one job at a time; SLURM: each job has its own node share
    n_jobs = int(launcher.get("n_jobs") or 1)
    cores = available_cores() if cores is None else cores
    return cores if n_jobs < 0 else max(1, min(n_jobs, cores))  # joblib: -1 = one job per core


def configure_threads(setting: int | None, hydra_cfg: Any | None = None) -> dict[str, Any]:
    """Resolve and apply the intra-op thread count (before any data is encoded or model built)."""
    threads, source = resolve_threads(setting, parallel_jobs=parallel_jobs(hydra_cfg))
    torch.set_num_threads(threads)
    log.info("torch intra-op threads: %d (%s)", threads, source)
    return {"threads": threads, "source": source}


def init_worker(worker_id: int, threads: int, seed_rank: int | None = None) -> None:
    """DataLoader worker_init_fn: set the worker's threads (torch gives each worker 1) and, as Lightning
    does when seed_everything(workers=True) is on, seed it (Lightning skips loaders that have their own)."""
    torch.set_num_threads(threads)
    if seed_rank is not None:
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id, rank=seed_rank)
