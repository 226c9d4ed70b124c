"""One LR job → one entry of the cumulative file, built from the job's folder and config.

The entry carries the job's per-epoch records (callbacks/epoch_history.py), the hash of its initial
weights, and a `signature`: a hash of every setting that changes the result except the learning rate.
Only entries with the same signature are compared or reused, so a later sweep with another model,
data set or epoch count never borrows points that are not comparable.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from redheart.run_folder import EPOCH_HISTORY, NAN_EVENT

LR_KEY = "optim.lr"  # the default swept LR; `lr_sweep.param` may name another (optim.encoder.lr)


def swept_param(cfg: DictConfig) -> str:
    """The LR a sweep varies: `lr_sweep.param` when the config sets it, else optim.lr."""
    return str(OmegaConf.select(cfg, "lr_sweep.param", default=None) or LR_KEY)
# Settings that do not change what a job learns (where it writes, how it reports).
NOT_IN_SIGNATURE = ("hydra", "paths", "run_name", "task_name", "ckpt_path", "callbacks", "logger", "test",
                    "lr_sweep", "optimized_metric", "optuna_trial", "threads")


def signature(job_cfg: DictConfig) -> str:
    """Short hash of the job config without its learning rate and its output settings."""
    param = swept_param(job_cfg)
    cfg = OmegaConf.to_container(job_cfg, resolve=False)
    for key in NOT_IN_SIGNATURE:
        cfg.pop(key, None)
    *parents, leaf = param.split(".")
    node = cfg
    for key in parents:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
        node.pop(leaf, None)
    cfg.get("data", {}).pop("progress", None)
    trainer = {k: v for k, v in cfg.pop("trainer", {}).items()
               if k in ("max_epochs", "max_steps", "accumulate_grad_batches", "gradient_clip_val",
                        "limit_train_batches")}
    cfg["trainer"] = trainer
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


def job_entry(job_cfg: DictConfig, job_dir: Path, sweep_dir: Path, status: str, error: str | None = None,
              stage: int | None = None) -> dict[str, Any]:
    """The cumulative-file entry of one finished (or failed) job."""
    history_path = Path(job_dir) / EPOCH_HISTORY
    history = json.loads(history_path.read_text(encoding="utf-8")) if history_path.is_file() else {}
    epochs = history.get("epochs", [])
    nan_event = Path(job_dir) / NAN_EVENT
    if status == "completed" and nan_event.is_file():  # stopped by the NaN guard: diverged, with its cause
        event = json.loads(nan_event.read_text(encoding="utf-8"))
        status, error = "diverged", f"step {event.get('step')}, epoch {event.get('epoch')}: {event.get('cause')}"
    return {
        "key": str(Path(job_dir).resolve()),
        "lr": float(OmegaConf.select(job_cfg, swept_param(job_cfg))),
        "signature": signature(job_cfg),
        "status": status if epochs or status != "completed" else "no_history",
        "error": error,
        "sweep_dir": str(Path(sweep_dir).resolve()),
        "job_dir": str(Path(job_dir).resolve()),
        "stage": stage,
        "initial_param_sha256": history.get("initial_param_sha256"),
        "epochs": epochs,
        "wall_time_s": sum(e.get("time_s") or 0.0 for e in epochs),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
