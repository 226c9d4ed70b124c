"""Epoch time of `model=small` on the bundled sample with the default callbacks vs none.

    python bench/callback_overhead.py [--model small] [--epochs 7] [--repeats 3] [--max-foreign-cores 0.3]
                                      [--ema-check] [--quick] [--out DIR]

--quick: `tiny`, 3 epochs, one fit per arm, no waiting for a quiet machine (CI: the bench runs, the
figure means little); written as callback_overhead_quick.json. --ema-check adds one fit with the EMA
updated after every step (update_every_n_steps=1) to compare its validation loss with the default's.

Goal: every callback of conf/callbacks/default.yaml (the JSON lists them) costs at most 5% more epoch
time than training without them. Checkpoint files are written on a background thread (only the CPU
snapshot is on the training thread), so their cost shows as the snapshot's hook time plus whatever the
writer thread takes from training on a busy machine.

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
costly callback is named.

Machine noise: on 2 cores, one other busy process (a test run) makes torch's two intra-op threads
wait on each other and an epoch of `small` goes from ~4 s to 90-180 s, CPU time included. So each fit
starts only once other processes use under --max-foreign-cores (waits up to 5 min), the CPU used by
other processes during every epoch is read from /proc/stat, and pairs with a contended epoch are left
out of the medians (all pairs are used, and said so, when fewer than 2 clean ones remain).
Figures go to stdout and bench/results/callback_overhead.json.
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
from redheart.run_folder import MANIFEST, MODULAR_DIR, read_manifest  # noqa: E402

GOAL = 1.05
ARMS = {
    "with": ["callbacks=default"],
    "without": ["callbacks=none", "+trainer.enable_checkpointing=false"],
}
# one extra fit (--ema-check): the EMA updated after every optimizer step, as before update_every_n_steps
EMA_EVERY_STEP = ["callbacks=default", "callbacks.ema.update_every_n_steps=1"]
HOOKS = sorted({n for n in dir(L.Callback) if n.startswith("on_")} | {"setup", "teardown", "state_dict"})


def busy_cpu_seconds() -> float:
    """CPU seconds all processes have used so far (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_cores: float, window: float = 3.0, timeout: float = 300.0) -> float:
    """Wait (up to `timeout` s) until other processes use under `max_cores` cores; the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        b0, c0 = busy_cpu_seconds(), time.process_time()
        time.sleep(window)
        if (busy_cpu_seconds() - b0 - (time.process_time() - c0)) / window < max_cores:
            break
    return time.perf_counter() - t0


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
            wall, cpu = time.perf_counter() - o["wall"], time.process_time() - o["cpu"]
            foreign = max(0.0, busy_cpu_seconds() - o["busy"] - cpu)
            self.epochs.append({"epoch": o["epoch"], "wall_s": wall, "cpu_s": cpu,
                                "foreign_cores": foreign / wall,
                                "hooks_s": {k: v for k, v in hooks.items() if v > 0}})
            self._open = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._close()
        self._open = {"epoch": trainer.current_epoch, "wall": time.perf_counter(), "cpu": time.process_time(),
                      "busy": busy_cpu_seconds(), "hooks": dict(self.profiler.totals)}

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()


def compose_cfg(model: str, epochs: int, arm: str, output_dir: Path):
    GlobalHydra.instance().clear()
    overrides = [f"model={model}", "data=sample", "logger=tensorboard", "test=false", "seed=42",
                 f"trainer.max_epochs={epochs}", "+trainer.enable_progress_bar=false", "data.progress=false",
                 *(EMA_EVERY_STEP if arm == "ema_every_step" else ARMS[arm])]
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
        manifest = read_manifest(run / MODULAR_DIR).data if (run / MODULAR_DIR / MANIFEST).is_file() else None
        resume = sorted((run / "checkpoints").glob("resume-*.ckpt")) if (run / "checkpoints").is_dir() else []
        sizes = {
            "modular_checkpoint_bytes": [sum(f["bytes"] for f in c["files"].values()) for c in manifest["checkpoints"]]
            if manifest else [],
            "modular_epochs": [c["epoch"] for c in manifest["checkpoints"]] if manifest else [],
            "resume_checkpoint_bytes": resume[-1].stat().st_size if resume else None,
            "resume_every_n_epochs": (cfg.callbacks.resume_checkpoint.every_n_epochs
                                      if "resume_checkpoint" in (cfg.get("callbacks") or {}) else None),
        }
    return {"arm": arm, "overrides": overrides, "epochs": timer.epochs, "fit_total_s": total,
            "callbacks": captured.get("callbacks"), "params": metrics.get("parameters"),
            "steps": metrics.get("steps"), "val_loss": metrics.get("fit", {}).get("val/loss"),
            "hook_calls": profiler.calls, **sizes}


def default_callbacks() -> dict[str, str]:
    """Every callback of conf/callbacks/default.yaml: name -> class (what the "with" arm runs)."""
    from omegaconf import OmegaConf

    conf = OmegaConf.load(ROOT / "conf" / "callbacks" / "default.yaml")
    return {name: str(c["_target_"]) for name, c in conf.items() if c is not None and "_target_" in c}


def pairs(epochs: list[dict]) -> list[tuple[dict, dict]]:
    """Consecutive pairs (1+2, 3+4, ...) of the measured epochs: one modular save in each."""
    return [(epochs[i], epochs[i + 1]) for i in range(0, len(epochs) - 1, 2)]


def repeat_ratios(runs: list[dict], skip: int) -> list[float]:
    """Per repeat, the with-fit's median pair time over that of the without-fit run right after it (all
    pairs): how far one adjacent couple of fits can stray from the headline."""
    def median_pair(run: dict) -> float:
        measured = [e for e in run["epochs"] if e["epoch"] >= skip]
        return statistics.median((a["wall_s"] + b["wall_s"]) / 2 for a, b in pairs(measured))
    with_runs = [r for r in runs if r["arm"] == "with"]
    without_runs = [r for r in runs if r["arm"] == "without"]
    return [round(median_pair(a) / median_pair(b), 4) for a, b in zip(with_runs, without_runs, strict=False)]


def summarise(runs: list[dict], skip: int, max_foreign: float) -> dict:
    """Per arm: epoch times, the pair medians (clean pairs only: other processes under `max_foreign` cores)."""
    out = {}
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        measured = [[e for e in r["epochs"] if e["epoch"] >= skip] for r in rs]
        all_pairs = [p for m in measured for p in pairs(m)]
        clean = [p for p in all_pairs if all(e["foreign_cores"] <= max_foreign for e in p)]
        used = clean if len(clean) >= 2 else all_pairs
        s = {"runs": len(rs), "measured_epochs_per_run": len(measured[0]),
             "pairs": len(all_pairs), "clean_pairs": len(clean),
             "pairs_used": "clean" if used is clean else "all (too few clean)",
             "epoch_wall_s": [[round(e["wall_s"], 3) for e in m] for m in measured],
             "epoch_cpu_s": [[round(e["cpu_s"], 3) for e in m] for m in measured],
             "epoch_foreign_cores": [[round(e["foreign_cores"], 2) for e in m] for m in measured]}
        for key in ("wall_s", "cpu_s"):
            s[f"median_pair_{key}"] = round(statistics.median((a[key] + b[key]) / 2 for a, b in used), 4)
            flat = [e for p in used for e in p]
            s[f"median_epoch_{key}"] = round(statistics.median(e[key] for e in flat), 4)
            s[f"mean_epoch_{key}"] = round(statistics.mean(e[key] for e in flat), 4)
        flat = [e for p in used for e in p]
        hooks: dict[str, float] = {}
        for e in flat:
            for k, v in e["hooks_s"].items():
                hooks[k] = hooks.get(k, 0.0) + v
        s["hook_self_s_per_epoch"] = {k: round(v / len(flat), 5)
                                      for k, v in sorted(hooks.items(), key=lambda kv: -kv[1])
                                      if v / len(flat) >= 1e-4}
        per_callback: dict[str, float] = {}
        for k, v in hooks.items():
            per_callback[k.split(".")[0]] = per_callback.get(k.split(".")[0], 0.0) + v / len(flat)
        s["callback_self_s_per_epoch"] = {k: round(v, 4)
                                          for k, v in sorted(per_callback.items(), key=lambda kv: -kv[1])}
        s["callback_self_s_per_epoch_total"] = round(sum(per_callback.values()), 4)
        out[arm] = s
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small", help="model preset (conf/model/*.yaml)")
    parser.add_argument("--epochs", type=int, default=7, help="epochs per fit; epoch 0 is warm-up (odd: whole pairs)")
    parser.add_argument("--repeats", type=int, default=3, help="fits per arm, alternating with/without")
    parser.add_argument("--max-foreign-cores", type=float, default=0.3,
                        help="an epoch during which other processes used more cores than this is left out of the "
                             "medians (on 2 cores one busy neighbour slows torch's threads many times over)")
    parser.add_argument("--ema-check", action="store_true",
                        help="one more fit with the EMA updated every step: its val loss beside the default's")
    parser.add_argument("--quiet-timeout", type=float, default=300.0,
                        help="seconds to wait for a quiet machine before each fit (then it runs anyway)")
    parser.add_argument("--quick", action="store_true", help="tiny, 3 epochs, 1 repeat, no waiting (CI)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the JSON")
    args = parser.parse_args()
    quiet_timeout = args.quiet_timeout
    if args.quick:
        args.model, args.epochs, args.repeats, quiet_timeout = "tiny", 3, 1, 0.0
    out_path = Path(args.out) / ("callback_overhead_quick.json" if args.quick else "callback_overhead.json")
    if args.epochs < 3:
        parser.error("--epochs must be >= 3 (one warm-up epoch, then at least one 2-epoch pair)")

    warnings.filterwarnings("ignore", category=UserWarning)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "redheart", "callbacks"):
        logging.getLogger(name).setLevel(logging.WARNING)
    rt.git_commit = lambda root: None  # run.json: no `git status` (it may touch the index) in a benchmark

    runs = []
    for rep in range(args.repeats):
        for arm in ARMS:  # with, without, with, without, ...
            waited = wait_for_quiet(args.max_foreign_cores, timeout=quiet_timeout)
            print(f"[{rep + 1}/{args.repeats}] {arm} callbacks: {args.epochs} epochs "
                  f"(waited {waited:.0f} s for a quiet machine) ...", flush=True)
            r = one_run(args.model, args.epochs, arm)
            r["waited_s"] = round(waited, 1)
            busy = args.max_foreign_cores
            print("    epoch wall s: " + ", ".join(f"{e['wall_s']:.2f}" + ("*" if e["foreign_cores"] > busy else "")
                                                 for e in r["epochs"]), flush=True)
            runs.append(r)

    ema_check = None
    if args.ema_check:
        waited = wait_for_quiet(args.max_foreign_cores, timeout=quiet_timeout)
        every = one_run(args.model, args.epochs, "ema_every_step")
        default_loss = next(r["val_loss"] for r in runs if r["arm"] == "with")
        ema_check = {"overrides": EMA_EVERY_STEP, "val_loss_every_step": every["val_loss"],
                     "val_loss_default": default_loss,
                     "relative_difference": (default_loss - every["val_loss"]) / every["val_loss"],
                     "note": "same seed and data; the validation loss of the EMA weights after the last epoch"}
        print(f"EMA every step: val loss {every['val_loss']:.5f}; default: {default_loss:.5f}", flush=True)

    skip = 1
    arms = summarise(runs, skip, args.max_foreign_cores)
    w, wo = arms["with"], arms["without"]
    with_runs = [r for r in runs if r["arm"] == "with"]
    modular_save_s = [e["hooks_s"].get("ModularCheckpoint.on_validation_end", 0.0)
                      for r in with_runs for e in r["epochs"]
                      if (e["epoch"] + 1) % 2 == 0 and e["foreign_cores"] <= args.max_foreign_cores]
    resume_save_s = [e["hooks_s"].get("ResumeCheckpoint.on_validation_end", 0.0)
                     + e["hooks_s"].get("ResumeCheckpoint.on_train_epoch_end", 0.0)
                     for r in with_runs for e in r["epochs"] if e["foreign_cores"] <= args.max_foreign_cores]
    ratio = w["median_pair_wall_s"] / wo["median_pair_wall_s"]
    per_repeat = repeat_ratios(runs, skip)
    result = {
        "command": "python bench/callback_overhead.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__},
        "model": args.model, "params": runs[0]["params"], "epochs_per_fit": args.epochs, "warmup_epochs_skipped": skip,
        "repeats_per_arm": args.repeats, "steps_per_fit": runs[0]["steps"], "max_foreign_cores": args.max_foreign_cores,
        "arms": {a: {"overrides": ARMS[a], "callbacks": next(r["callbacks"] for r in runs if r["arm"] == a)}
                 for a in ARMS},
        "default_callbacks": default_callbacks(), "ema_check": ema_check, "quick": args.quick,
        "quiet_timeout_s": quiet_timeout,
        "epoch_definition": "on_train_epoch_start to the next one (last: on_train_end): "
                            "train + val + checkpoint writes",
        "headline": "median over 2-epoch pairs (one modular save each) of per-epoch wall time",
        "with_s": w["median_pair_wall_s"], "without_s": wo["median_pair_wall_s"],
        "ratio_with_to_without": round(ratio, 4),
        "ratio_cpu_with_to_without": round(w["median_pair_cpu_s"] / wo["median_pair_cpu_s"], 4),
        "ratio_median_epoch_wall": round(w["median_epoch_wall_s"] / wo["median_epoch_wall_s"], 4),
        "ratio_mean_epoch_wall": round(w["mean_epoch_wall_s"] / wo["mean_epoch_wall_s"], 4),
        # the spread between adjacent fits: each repeat's with-fit against the without-fit run right after it
        "ratio_per_repeat": per_repeat,
        "goal_ratio": GOAL, "meets_goal": ratio <= GOAL,
        # wall-time difference per epoch and how much of it the callbacks' own hooks explain
        "extra_s_per_epoch": round(w["median_pair_wall_s"] - wo["median_pair_wall_s"], 4),
        "callback_hooks_s_per_epoch": w["callback_self_s_per_epoch_total"],
        "callback_self_s_per_epoch": w["callback_self_s_per_epoch"],
        "callback_share_of_without_epoch": {k: round(v / wo["median_pair_wall_s"], 4)
                                            for k, v in w["callback_self_s_per_epoch"].items()},
        "modular_checkpoint": {
            "save_seconds_median": round(statistics.median(modular_save_s), 4) if modular_save_s else None,
            "save_seconds": [round(s, 4) for s in modular_save_s],
            "bytes_per_checkpoint": (with_runs[0]["modular_checkpoint_bytes"][0]
                                     if with_runs[0]["modular_checkpoint_bytes"] else None),
            "epochs_saved_per_fit": with_runs[0]["modular_epochs"],
        },
        "resume_checkpoint": {"save_seconds_median": (round(statistics.median(resume_save_s), 4)
                                                      if resume_save_s else None),
                              "bytes": with_runs[0]["resume_checkpoint_bytes"],
                              "every_n_epochs": with_runs[0]["resume_every_n_epochs"]},
        "per_arm": arms,
        "runs": [{k: r[k] for k in ("arm", "fit_total_s", "steps", "val_loss", "waited_s")} for r in runs],
    }
    atomic_write_json(out_path, result)
    print(json.dumps({k: result[k] for k in ("with_s", "without_s", "ratio_with_to_without", "ratio_per_repeat",
                                             "ratio_cpu_with_to_without",
                                             "ratio_median_epoch_wall", "meets_goal", "extra_s_per_epoch",
                                             "callback_hooks_s_per_epoch", "callback_self_s_per_epoch",
                                             "modular_checkpoint", "resume_checkpoint")}, indent=2))
    print(f"clean pairs: with {w['clean_pairs']}/{w['pairs']}, without {wo['clean_pairs']}/{wo['pairs']}")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
