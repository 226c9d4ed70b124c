"""Epoch time of `model=small` on the bundled sample with the default callbacks vs none.

    python bench/callback_overhead.py [--model small] [--epochs 7] [--repeats 2]

Goal: the callbacks of conf/callbacks/default.yaml (ModularCheckpoint every 2 epochs, EMA weight
averaging, parameter-update, gradient-norm and dead-unit monitors, LR monitor, OOM back-off, RNG
state, the resume ModelCheckpoint) cost at most 5% more epoch time than training without them.

Both arms run `redheart.train.train(cfg)` in this process on the real Hydra config (`data=sample`,
its prepared splits and embedding cache beside data/sample.jsonl, reused, so no re-encoding), the same
seed, `test=false`, `+trainer.enable_progress_bar=false`, each in a fresh temp output folder:
  with:    callbacks=default
  without: callbacks=none +trainer.enable_checkpointing=false   (no Lightning default checkpoint either)
Both use `logger=tensorboard`, the project default: LearningRateMonitor refuses to run without a
logger, so `logger=none` is impossible for the "with" arm, and TensorBoard (not a callback under test)
is kept identical in both arms. Arms alternate (with, without, with, without, ...) so machine noise
hits both alike.

An "epoch" is the time between consecutive `on_train_epoch_start` calls of a timing callback added
last to the Trainer (the last epoch ends at `on_train_end`): training batches + validation + every
checkpoint write. Data preparation, model build and the sanity check are outside. Epoch 0 is warm-up
and skipped. With ModularCheckpoint every 2 epochs, epochs alternate between with and without a
modular save, so the headline figure is per 2-epoch pair (1+2, 3+4, 5+6: one modular save each):
median pair time / 2, per arm, and the ratio with/without. Process CPU time is reported beside wall
time (less sensitive to other processes on the machine). Each callback hook is also timed (self time,
nested hooks such as the resume checkpoint's state_dict calls subtracted from their caller), so a
costly callback is named. Figures go to stdout and bench/results/callback_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # `callbacks` package, as train.py sees it
os.environ.setdefault("REDHEART_ROOT", str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import open_dict  # noqa: E402

import redheart.train as rt  # noqa: E402
from redheart.io import atomic_write_json  # noqa: E402

GOAL = 1.05
ARMS = {
    "with": ["callbacks=default"],
    "without": ["callbacks=none", "+trainer.enable_checkpointing=false"],
}
HOOKS = sorted({n for n in dir(L.Callback) if n.startswith("on_")} | {"setup", "teardown", "state_dict"})


class HookProfiler:
    """Self time of each wrapped callback hook: a nested wrapped call is subtracted from its caller."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []

    def wrap(self, callback: L.Callback) -> None:
        cls = type(callback)
        for hook in HOOKS:
            if getattr(cls, hook, None) is getattr(L.Callback, hook, None):
                continue  # the base class's no-op: nothing to time
            key = f"{cls.__name__}.{hook}"
            setattr(callback, hook, self._timed(key, getattr(callback, hook)))

    def _timed(self, key: str, fn):
        @wraps(fn)
        def timed(*args, **kwargs):
            frame = [time.perf_counter(), 0.0]  # start, time spent in nested wrapped hooks
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                total = time.perf_counter() - frame[0]
                self.totals[key] = self.totals.get(key, 0.0) + total - frame[1]
                self.calls[key] = self.calls.get(key, 0) + 1
                if self._stack:
                    self._stack[-1][1] += total
        return timed


class EpochTimer(L.Callback):
    """Wall and CPU time per training epoch (start to next start; the last one ends at on_train_end)."""

    def __init__(self, profiler: HookProfiler):
        self.profiler = profiler
        self.epochs: list[dict] = []
        self._open: dict | None = None

    @property
    def state_key(self) -> str:
        return "bench.EpochTimer"

    def _close(self) -> None:
        if self._open is not None:
            o = self._open
            hooks = {k: v - o["hooks"].get(k, 0.0) for k, v in self.profiler.totals.items()}
            self.epochs.append({"epoch": o["epoch"], "wall_s": time.perf_counter() - o["wall"],
                                "cpu_s": time.process_time() - o["cpu"],
                                "hooks_s": {k: v for k, v in hooks.items() if v > 0}})
            self._open = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._close()
        self._open = {"epoch": trainer.current_epoch, "wall": time.perf_counter(), "cpu": time.process_time(),
                      "hooks": dict(self.profiler.totals)}

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()


def compose_cfg(model: str, epochs: int, arm: str, output_dir: Path):
    GlobalHydra.instance().clear()
    overrides = [f"model={model}", "data=sample", "logger=tensorboard", "test=false", "seed=42",
                 f"trainer.max_epochs={epochs}", "+trainer.enable_progress_bar=false", "data.progress=false",
                 *ARMS[arm]]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg, overrides


def one_run(model: str, epochs: int, arm: str) -> dict:
    """Fit once in a fresh temp folder; per-epoch times, per-hook self times, checkpoint sizes."""
    profiler = HookProfiler()
    timer = EpochTimer(profiler)
    original = rt.build_trainer
    captured: dict = {}

    def build_trainer(cfg, **kw):
        trainer = original(cfg, **kw)
        for cb in trainer.callbacks:
            profiler.wrap(cb)
        trainer.callbacks.append(timer)
        captured["callbacks"] = [type(cb).__name__ for cb in trainer.callbacks]
        return trainer

    with tempfile.TemporaryDirectory(prefix=f"callback_overhead_{arm}_") as tmp:
        cfg, overrides = compose_cfg(model, epochs, arm, Path(tmp) / "run")
        rt.build_trainer = build_trainer
        try:
            t0 = time.perf_counter()
            metrics = rt.train(cfg)
            total = time.perf_counter() - t0
        finally:
            rt.build_trainer = original
        run = Path(tmp) / "run"
        manifest_path = run / "modular" / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
        resume = sorted((run / "checkpoints").glob("resume-*.ckpt")) if (run / "checkpoints").is_dir() else []
        sizes = {
            "modular_checkpoint_bytes": [sum(f["bytes"] for f in c["files"].values()) for c in manifest["checkpoints"]]
            if manifest else [],
            "modular_epochs": [c["epoch"] for c in manifest["checkpoints"]] if manifest else [],
            "resume_checkpoint_bytes": resume[-1].stat().st_size if resume else None,
        }
    return {"arm": arm, "overrides": overrides, "epochs": timer.epochs, "fit_total_s": total,
            "callbacks": captured.get("callbacks"), "params": metrics.get("parameters"),
            "steps": metrics.get("steps"), "val_loss": metrics.get("fit", {}).get("val/loss"),
            "hook_calls": profiler.calls, **sizes}


def pair_times(epochs: list[dict], key: str) -> list[float]:
    """Per-epoch time over consecutive pairs (1+2, 3+4, ...) of the measured epochs, / 2."""
    return [(epochs[i][key] + epochs[i + 1][key]) / 2 for i in range(0, len(epochs) - 1, 2)]


def summarise(runs: list[dict], skip: int) -> dict:
    out = {}
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        measured = [[e for e in r["epochs"] if e["epoch"] >= skip] for r in rs]
        flat = [e for m in measured for e in m]
        s = {"runs": len(rs), "measured_epochs_per_run": len(measured[0]),
             "epoch_wall_s": [[round(e["wall_s"], 3) for e in m] for m in measured],
             "epoch_cpu_s": [[round(e["cpu_s"], 3) for e in m] for m in measured]}
        for key in ("wall_s", "cpu_s"):
            pairs = [p for m in measured for p in pair_times(m, key)]
            s[f"median_pair_{key}"] = round(statistics.median(pairs), 4)  # per epoch, over 2-epoch pairs
            s[f"median_epoch_{key}"] = round(statistics.median(e[key] for e in flat), 4)
            s[f"mean_epoch_{key}"] = round(statistics.mean(e[key] for e in flat), 4)
        hooks: dict[str, float] = {}
        for e in flat:
            for k, v in e["hooks_s"].items():
                hooks[k] = hooks.get(k, 0.0) + v
        s["hook_self_s_per_epoch"] = {k: round(v / len(flat), 5) for k, v in sorted(hooks.items(), key=lambda kv: -kv[1])
                                      if v / len(flat) >= 1e-4}
        per_callback: dict[str, float] = {}
        for k, v in hooks.items():
            per_callback[k.split(".")[0]] = per_callback.get(k.split(".")[0], 0.0) + v / len(flat)
        s["callback_self_s_per_epoch"] = {k: round(v, 4) for k, v in sorted(per_callback.items(), key=lambda kv: -kv[1])}
        out[arm] = s
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small", help="model preset (conf/model/*.yaml)")
    parser.add_argument("--epochs", type=int, default=7, help="epochs per fit; epoch 0 is warm-up (odd: whole pairs)")
    parser.add_argument("--repeats", type=int, default=2, help="fits per arm, alternating with/without")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "callback_overhead.json"))
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error("--epochs must be >= 3 (one warm-up epoch, then at least one 2-epoch pair)")

    warnings.filterwarnings("ignore", category=UserWarning)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "redheart", "callbacks"):
        logging.getLogger(name).setLevel(logging.WARNING)
    rt.git_commit = lambda root: None  # run.json: no `git status` (it may touch the index) in a benchmark

    runs = []
    for rep in range(args.repeats):
        for arm in ARMS:  # with, without, with, without, ...
            print(f"[{rep + 1}/{args.repeats}] {arm} callbacks: {args.epochs} epochs ...", flush=True)
            r = one_run(args.model, args.epochs, arm)
            walls = ", ".join(f"{e['wall_s']:.2f}" for e in r["epochs"])
            print(f"    epoch wall s: {walls}", flush=True)
            runs.append(r)

    skip = 1
    arms = summarise(runs, skip)
    w, wo = arms["with"], arms["without"]
    with_runs = [r for r in runs if r["arm"] == "with"]
    modular_save_s = [e["hooks_s"].get("ModularCheckpoint.on_validation_end", 0.0)
                      for r in with_runs for e in r["epochs"] if (e["epoch"] + 1) % 2 == 0]
    resume_save_s = [e["hooks_s"].get("ModelCheckpoint.on_validation_end", 0.0) + e["hooks_s"].get("ModelCheckpoint.on_train_epoch_end", 0.0)
                     for r in with_runs for e in r["epochs"]]
    ratio = w["median_pair_wall_s"] / wo["median_pair_wall_s"]
    result = {
        "command": "python bench/callback_overhead.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__},
        "model": args.model, "params": runs[0]["params"], "epochs_per_fit": args.epochs, "warmup_epochs_skipped": skip,
        "repeats_per_arm": args.repeats, "steps_per_fit": runs[0]["steps"],
        "arms": {a: {"overrides": ARMS[a], "callbacks": next(r["callbacks"] for r in runs if r["arm"] == a)} for a in ARMS},
        "epoch_definition": "on_train_epoch_start to the next one (last: on_train_end): train + val + checkpoint writes",
        "headline": "median over 2-epoch pairs (one modular save each) of per-epoch wall time",
        "with_s": w["median_pair_wall_s"], "without_s": wo["median_pair_wall_s"],
        "ratio_with_to_without": round(ratio, 4),
        "ratio_cpu_with_to_without": round(w["median_pair_cpu_s"] / wo["median_pair_cpu_s"], 4),
        "ratio_median_epoch_wall": round(w["median_epoch_wall_s"] / wo["median_epoch_wall_s"], 4),
        "ratio_mean_epoch_wall": round(w["mean_epoch_wall_s"] / wo["mean_epoch_wall_s"], 4),
        "goal_ratio": GOAL, "meets_goal": ratio <= GOAL,
        "modular_checkpoint": {
            "save_seconds_median": round(statistics.median(modular_save_s), 4) if modular_save_s else None,
            "save_seconds": [round(s, 4) for s in modular_save_s],
            "bytes_per_checkpoint": with_runs[0]["modular_checkpoint_bytes"][0] if with_runs[0]["modular_checkpoint_bytes"] else None,
            "epochs_saved_per_fit": with_runs[0]["modular_epochs"],
        },
        "resume_checkpoint": {"save_seconds_median": round(statistics.median(resume_save_s), 4),
                              "bytes": with_runs[0]["resume_checkpoint_bytes"]},
        "per_arm": arms,
        "runs": [{k: r[k] for k in ("arm", "fit_total_s", "steps", "val_loss")} for r in runs],
    }
    atomic_write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("with_s", "without_s", "ratio_with_to_without", "ratio_cpu_with_to_without",
                                             "ratio_median_epoch_wall", "meets_goal", "modular_checkpoint",
                                             "resume_checkpoint")}, indent=2))
    print("callback self time per epoch (s):", json.dumps(w["callback_self_s_per_epoch"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
