"""Epoch time of `model=small` on the bundled sample with the default callbacks vs none.

    python bench/callback_overhead.py [--design gated] [--fits 2] [--pairs 6] [--model small]
                                      [--max-foreign-cores 0.3] [--quick] [--out DIR]
    python bench/callback_overhead.py --design fits [--epochs 7] [--repeats 3] [--ema-check] ...

Goal: every callback of conf/callbacks/default.yaml (the JSON lists them) costs at most 5% more epoch
time than training without them.

Why two designs: this 2-core VM's speed drifts by 10-20% over minutes, and separate fits with and
without callbacks (`--design fits`, the first design) are a minute apart: within one run of it on
2026-12-03, adjacent couples of fits gave ratios from 0.97 to 1.19 (its headline: 1.04). `--design gated`
(default) measures both states inside each fit, tens of seconds apart: every default callback is in
the Trainer, and after a warm-up of 3 epochs (epoch 0 and the first pair, whose checkpoint save maps
the shared buffer once per fit) their per-step and per-epoch hooks are switched off and on by 2-epoch
pairs (off, on, off, on, ...). An off pair is training without callbacks: every gated hook returns at
once, nothing is saved or averaged, validation runs on the raw weights, and the LightningModule clips
with Lightning's own norm because the gradient-norm monitor did not run. Set-up, teardown, state and
checkpoint plumbing hooks are never gated (`ungated_hooks` in the JSON). Each pair holds one checkpoint
epoch (its first), so a save's background write ends inside its own pair. Headline: for each on pair,
its time over the mean of the off pairs beside it (which cancels a linear drift), median over on
pairs, with a 95% bootstrap interval. Left out of both arms: Lightning's dispatch of the hooks to the
callback objects (microseconds) and the one-off first save.

Common to both: `redheart.train.train(cfg)` runs in this process on the real Hydra config (`data=sample`,
its prepared splits and embedding cache beside data/sample.jsonl, reused), seed 42, `test=false`,
`logger=tensorboard` (LearningRateMonitor needs a logger; TensorBoard is not a callback under test), in
a fresh temp output folder. An "epoch" is the time between consecutive `on_train_epoch_start` calls of a
timing callback (the last epoch ends at `on_train_end`): training batches + validation + checkpoint
writes; data preparation, model build and the sanity check are outside. Time is compared per 2-epoch
pair (1+2, 3+4, ...: one modular save each). Each callback hook is also timed (self time, nested hooks
subtracted from their caller), so a costly callback is named. Process CPU time is reported beside wall
time.

`--design fits`: arms alternate, each a separate fit: with: callbacks=default; without: callbacks=none
+trainer.enable_checkpointing=false. Epoch 0 is skipped; the headline is the ratio of the arms' median
pair times, and `ratio_per_repeat` gives each couple of adjacent fits. --ema-check adds one fit with
the EMA updated after every step to compare its validation loss with the default's.

--quick: `tiny`, one short fit, no waiting for a quiet machine (CI: the bench runs, the figure means
little); written as callback_overhead_quick.json.

Machine noise: on 2 cores, one other busy process (a test run) makes torch's threads wait on each other
many times over. So each fit starts only once other processes use under --max-foreign-cores (waits up
to 5 min), the CPU used by other processes during every epoch is read from /proc/stat, and pairs with a
contended epoch are left out (all are used, and said so, when too few clean ones remain).
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
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import open_dict  # noqa: E402

import redheart.train as rt  # noqa: E402
from redheart.io import atomic_write_json  # noqa: E402
from redheart.run_folder import MANIFEST, MODULAR_DIR, read_manifest  # noqa: E402

GOAL = 1.05
GATED_WARMUP = 3  # epoch 0 and the first pair, whose checkpoint save maps the shared buffer (a one-off)
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


# hooks that run whatever the gate says: set-up, teardown, state and checkpoint plumbing, the sanity check
UNGATED = {"setup", "teardown", "state_dict", "load_state_dict", "on_fit_start", "on_fit_end", "on_train_start",
           "on_train_end", "on_sanity_check_start", "on_sanity_check_end", "on_exception", "on_save_checkpoint",
           "on_load_checkpoint"}


class Gate:
    """Whether the default callbacks' per-step and per-epoch hooks run in the current epoch (--design gated)."""

    def __init__(self) -> None:
        self.on = True


def gate_is_on(epoch: int, warmup: int) -> bool:
    """Warm-up epochs on; then 2-epoch pairs off, on, off, on, ... (each pair holds one checkpoint epoch)."""
    return epoch < warmup or ((epoch - warmup) // 2) % 2 == 1


class HookProfiler:
    """Self time of each wrapped callback hook: a nested wrapped call is subtracted from its caller."""

    def __init__(self, gate: Gate | None = None):
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []
        self.gate = gate

    def wrap(self, callback: L.Callback) -> None:
        cls = type(callback)
        for hook in HOOKS:
            if getattr(cls, hook, None) is getattr(L.Callback, hook, None):
                continue  # the base class's no-op: nothing to time
            key = f"{cls.__name__}.{hook}"
            setattr(callback, hook, self._timed(key, getattr(callback, hook)))

    def _timed(self, key: str, fn):
        gated = self.gate is not None and key.rsplit(".", 1)[1] not in UNGATED

        @wraps(fn)
        def timed(*args, **kwargs):
            if gated and not self.gate.on:
                return None  # the callback is switched off for this epoch (--design gated)
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

    def __init__(self, profiler: HookProfiler, warmup: int = 1):
        self.profiler = profiler
        self.warmup = warmup  # with a gate: the epochs before the first off pair
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
                                "foreign_cores": foreign / wall, "callbacks_on": o["on"],
                                "hooks_s": {k: v for k, v in hooks.items() if v > 0}})
            self._open = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._close()
        gate = self.profiler.gate
        if gate is not None:  # this timer runs first, so every callback's hooks of this epoch see the new state
            gate.on = gate_is_on(trainer.current_epoch, self.warmup)
        self._open = {"epoch": trainer.current_epoch, "on": gate is None or gate.on, "wall": time.perf_counter(),
                      "cpu": time.process_time(), "busy": busy_cpu_seconds(), "hooks": dict(self.profiler.totals)}

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


def one_run(model: str, epochs: int, arm: str, gated_warmup: int | None = None) -> dict:
    """Fit once in a fresh temp folder; per-epoch times, per-hook self times, checkpoint sizes. With
    `gated_warmup`, the callbacks are switched off and on by 2-epoch pairs after that many epochs."""
    profiler = HookProfiler(Gate() if gated_warmup is not None else None)
    timer = EpochTimer(profiler, gated_warmup or 1)
    original = rt.build_trainer
    captured: dict = {}

    def build_trainer(cfg, **kw):
        trainer = original(cfg, **kw)
        for cb in trainer.callbacks:
            profiler.wrap(cb)
        if gated_warmup is not None:
            trainer.callbacks.insert(0, timer)  # first: it sets the gate before any other epoch-start hook
        else:
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
    return [round(median_pair(a) / median_pair(b), 4) for a, b in zip(with_runs, without_runs, strict=True)]


def hook_breakdown(epochs: list[dict]) -> dict:
    """Mean self time per epoch of each hook (those >= 0.1 ms) and of each callback, and their total."""
    hooks: dict[str, float] = {}
    for e in epochs:
        for k, v in e["hooks_s"].items():
            hooks[k] = hooks.get(k, 0.0) + v / len(epochs)
    per_callback: dict[str, float] = {}
    for k, v in hooks.items():
        per_callback[k.split(".")[0]] = per_callback.get(k.split(".")[0], 0.0) + v
    return {"hook_self_s_per_epoch": {k: round(v, 5) for k, v in sorted(hooks.items(), key=lambda kv: -kv[1])
                                      if v >= 1e-4},
            "callback_self_s_per_epoch": {k: round(v, 4)
                                          for k, v in sorted(per_callback.items(), key=lambda kv: -kv[1])},
            "callback_self_s_per_epoch_total": round(sum(per_callback.values()), 4)}


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
        s.update(hook_breakdown(flat))
        out[arm] = s
    return out


def gated_summary(runs: list[dict], warmup: int, max_foreign: float) -> dict:
    """Each "on" pair against the mean of the "off" pairs beside it in the same fit (before and after),
    which cancels a machine whose speed drifts over minutes; pairs touched by another busy process are
    left out. Headline: the median of those ratios, with a 95% bootstrap interval (2,000 resamples)."""
    ratios, all_ratios, on_walls, off_walls, on_cpu, off_cpu, on_epochs = [], [], [], [], [], [], []
    for r in runs:
        measured = [e for e in r["epochs"] if e["epoch"] >= warmup]
        ps = [(a, b) for a, b in pairs(measured) if a["callbacks_on"] == b["callbacks_on"]]
        clean = [all(e["foreign_cores"] <= max_foreign for e in p) for p in ps]
        wall = [(a["wall_s"] + b["wall_s"]) / 2 for a, b in ps]
        for i, (a, b) in enumerate(ps):
            (on_walls if a["callbacks_on"] else off_walls).append(wall[i])
            (on_cpu if a["callbacks_on"] else off_cpu).append((a["cpu_s"] + b["cpu_s"]) / 2)
            if not a["callbacks_on"]:
                continue
            on_epochs += [a, b]
            beside = [j for j in (i - 1, i + 1) if 0 <= j < len(ps) and not ps[j][0]["callbacks_on"]]
            if beside:
                all_ratios.append(wall[i] / statistics.mean(wall[j] for j in beside))
                if clean[i] and all(clean[j] for j in beside):
                    ratios.append(all_ratios[-1])
    clean_count = len(ratios)
    used = "clean" if clean_count >= 2 or clean_count == len(all_ratios) else "all (too few clean)"
    ratios = ratios if used == "clean" else all_ratios
    rng = np.random.default_rng(0)
    boot = [float(np.median(rng.choice(ratios, len(ratios)))) for _ in range(2000)] if ratios else []
    breakdown = hook_breakdown(on_epochs)
    return {
        "ratio": round(statistics.median(ratios), 4) if ratios else None,
        "ratio_ci95": [round(float(np.percentile(boot, q)), 4) for q in (2.5, 97.5)] if boot else None,
        "ratio_per_on_pair": [round(x, 4) for x in ratios], "on_pairs_used": used,
        "on_pairs_touched_by_another_busy_process": len(all_ratios) - clean_count,
        "on_pairs": len(on_walls), "off_pairs": len(off_walls),
        "median_on_pair_wall_s": round(statistics.median(on_walls), 4),
        "median_off_pair_wall_s": round(statistics.median(off_walls), 4),
        "ratio_cpu_medians": round(statistics.median(on_cpu) / statistics.median(off_cpu), 4),
        **breakdown,
        "epochs": [[{**{k: (round(v, 3) if isinstance(v, float) else v) for k, v in e.items() if k != "hooks_s"},
                     "hooks_total_s": round(sum(e["hooks_s"].values()), 4)} for e in r["epochs"]] for r in runs],
    }


def run_gated(args, quiet_timeout: float) -> dict:
    """--design gated: `--fits` fits with every default callback, switched off and on by 2-epoch pairs."""
    warmup, epochs = GATED_WARMUP, GATED_WARMUP + 4 * args.pairs
    runs = []
    for fit in range(args.fits):
        waited = wait_for_quiet(args.max_foreign_cores, timeout=quiet_timeout)
        print(f"[{fit + 1}/{args.fits}] {epochs} epochs, callbacks off/on by pairs after {warmup} "
              f"(waited {waited:.0f} s for a quiet machine) ...", flush=True)
        r = one_run(args.model, epochs, "with", gated_warmup=warmup)
        r["waited_s"] = round(waited, 1)
        print("    epoch wall s: " + ", ".join(f"{e['wall_s']:.2f}" + ("" if e["callbacks_on"] else "(off)")
                                             for e in r["epochs"]), flush=True)
        runs.append(r)
    summary = gated_summary(runs, warmup, args.max_foreign_cores)
    ratio = summary["ratio"]
    return {
        "design": "gated",
        "design_note": "one fit per repeat with every default callback; after the warm-up epochs (the first "
                       "checkpoint save, which maps its shared buffer, is in them) their per-step and per-epoch "
                       "hooks are switched off and on by 2-epoch pairs (off, on, off, ...; each pair holds one "
                       "checkpoint epoch, whose background write ends within the pair). Off: every gated hook "
                       "returns at once and the LightningModule clips with Lightning's own norm, as with no "
                       "callbacks.",
        "warmup_epochs": warmup, "epochs_per_fit": epochs, "fits": args.fits, "steps_per_fit": runs[0]["steps"],
        "params": runs[0]["params"], "callbacks": runs[0]["callbacks"], "ungated_hooks": sorted(UNGATED),
        "headline": "median over on pairs of (on pair time / mean of the off pairs beside it), per-epoch wall",
        "ratio_with_to_without": ratio, "ratio_ci95": summary["ratio_ci95"],
        "goal_ratio": GOAL, "meets_goal": ratio is not None and ratio <= GOAL,
        "with_s": summary["median_on_pair_wall_s"], "without_s": summary["median_off_pair_wall_s"],
        "ratio_cpu_with_to_without": summary["ratio_cpu_medians"],
        "callback_hooks_s_per_epoch": summary["callback_self_s_per_epoch_total"],
        "callback_self_s_per_epoch": summary["callback_self_s_per_epoch"],
        "gated": summary,
        "runs": [{k: r[k] for k in ("fit_total_s", "steps", "val_loss", "waited_s")} for r in runs],
    }


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
    parser.add_argument("--design", choices=("gated", "fits"), default="gated",
                        help="gated: callbacks switched off/on by 2-epoch pairs within each fit (default); "
                             "fits: separate fits with and without callbacks, alternating")
    parser.add_argument("--fits", type=int, default=2, help="gated: fits to run")
    parser.add_argument("--pairs", type=int, default=6, help="gated: off/on pair couples per fit")
    parser.add_argument("--quick", action="store_true", help="tiny, few epochs, one fit (per arm), no waiting (CI)")
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
    if args.design == "gated":
        if args.quick:
            args.fits, args.pairs = 1, 1
        result = {"command": "python bench/callback_overhead.py " + " ".join(sys.argv[1:]),
                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                              "python": platform.python_version(), "torch": torch.__version__,
                              "lightning": L.__version__},
                  "model": args.model, "quick": args.quick, "max_foreign_cores": args.max_foreign_cores,
                  "default_callbacks": default_callbacks(), **run_gated(args, quiet_timeout)}
        atomic_write_json(out_path, result)
        print(json.dumps({k: result[k] for k in ("with_s", "without_s", "ratio_with_to_without", "ratio_ci95",
                                                 "ratio_cpu_with_to_without", "meets_goal",
                                                 "callback_hooks_s_per_epoch", "callback_self_s_per_epoch")},
                         indent=2))
        print("ratios per on pair:", result["gated"]["ratio_per_on_pair"])
        return

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
