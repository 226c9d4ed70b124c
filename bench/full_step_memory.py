"""Peak memory of one training step of the `full` preset on CPU, against parameters × 16 bytes.

    python bench/full_step_memory.py [--model full|small|tiny] [--batch-size 8] [--quick] [--out DIR]

Theory for fp32 training with AdamW: every parameter needs 16 bytes: its weight (4), its gradient
(4) and AdamW's two moments (8). Activations of a batch of 8 cached embeddings are negligible next to
that, so peak RSS should be theory plus the interpreter's own baseline; the goal is peak ≤ 1.15 ×
theory (730,466,848 parameters: 11.69 GB theory, goal 13.44 GB).

A fresh child process (spawn) imports torch and lightning, builds the LitModule from the real Hydra
config (`model=<preset>`, `optim=adamw`), then runs one step as Lightning's automatic optimization
does: training_step → backward → optimizer.step() (AdamW state allocated) → zero_grad(set_to_none).
Its peak RSS (ru_maxrss) is its own; RSS and peak are also read at each stage to show where the
memory goes. The step time is for information only: the first step also pays for page-faulting the
fresh gradients and AdamW state, and other processes on the machine change it. --quick (CI): the tiny
preset, batch 2. Figures go to stdout and <out>/full_step_memory.json (default bench/results/, with
--quick bench/results/quick/; other presets: full_step_memory_<preset>.json, so a smoke test never
overwrites the real figures).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from queue import Empty

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from redheart.io import atomic_write_json  # noqa: E402

BYTES_PER_PARAM = 4 + 4 + 8  # fp32 weight + gradient + AdamW exp_avg and exp_avg_sq
GOAL = 1.15


def module_arguments(preset: str) -> dict:
    """LitModule kwargs exactly as train(cfg) builds them, for 384-dim embeddings and the default schema."""
    from hydra import compose, initialize_config_dir

    from redheart.schema import TaskSchema
    from redheart.train import model_arguments

    os.environ.setdefault("REDHEART_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={preset}"])
    return model_arguments(cfg, 384, TaskSchema())


def random_batch(size: int, generator) -> dict:
    import torch

    def uniform(*shape):
        return torch.rand(*shape, generator=generator)

    def mask(*shape):
        return torch.rand(*shape, generator=generator) < 0.8

    return {"embedding": torch.randn(size, 384, generator=generator),
            "label": torch.randint(0, 7, (size,), generator=generator), "index": torch.arange(size),
            "intensity": uniform(size), "intensity_mask": mask(size),
            "regret": uniform(size), "regret_mask": mask(size), "bentham": uniform(size, 10),
            "bentham_mask": mask(size, 10), "surd": uniform(size, 4), "surd_mask": mask(size, 4)}


def memory() -> dict:
    """Current RSS (/proc/self/status VmRSS) and peak RSS so far (ru_maxrss), both in bytes."""
    with open("/proc/self/status") as fh:
        rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return {"rss": rss * 1024, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def _one_step(module_args: dict, batch_size: int, queue) -> None:
    import warnings

    import lightning  # noqa: F401  (part of the interpreter baseline, as in training)
    import torch

    stages = {"import": memory()}
    warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached: logging is a no-op
    from redheart.training.lit_module import RedHeartLitModule

    torch.manual_seed(0)
    t0 = time.perf_counter()
    module = RedHeartLitModule(**module_args).train()
    build_seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in module.parameters())
    stages["model"] = memory()
    optimizer = module.configure_optimizers()["optimizer"]
    batch = random_batch(batch_size, torch.Generator().manual_seed(0))
    stages["optimizer"] = memory()

    seconds = {}

    def stage(name: str, t0: float) -> float:
        seconds[name], stages[name] = time.perf_counter() - t0, memory()
        return time.perf_counter()

    t = time.perf_counter()
    loss = module.training_step(batch, 0)
    t = stage("forward", t)
    loss.backward()
    t = stage("backward", t)
    optimizer.step()
    t = stage("step", t)
    optimizer.zero_grad(set_to_none=True)
    stage("zero_grad", t)
    state_bytes = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                      if torch.is_tensor(v) and v.ndim > 0)
    queue.put({"params": params, "loss": loss.item(), "build_seconds": build_seconds, "seconds": seconds,
               "optimizer_state_bytes": state_bytes, "stages": stages, "torch": torch.__version__,
               "optimizer_defaults": {k: v for k, v in optimizer.defaults.items()
                                      if k in ("foreach", "fused", "capturable", "differentiable", "amsgrad")}})


def result_path(name: str, preset: str, out: str | Path | None, quick: bool = False) -> Path:
    """<out>/<name>.json for the full preset, <name>_<preset>.json for smoke runs (never overwritten).

    `out` is the folder (default bench/results/, bench/results/quick/ for --quick), or a *.json file path.
    """
    file = f"{name}.json" if preset == "full" else f"{name}_{preset}.json"
    if out is None:
        return ROOT / "bench" / "results" / ("quick" if quick else "") / file
    return Path(out) if Path(out).suffix == ".json" else Path(out) / file


def run_in_child(target, *args) -> dict:
    """Run target(*args, queue) in a fresh spawned process (its peak RSS is its own); return what it queued."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, queue))
    child.start()
    while True:  # a child that dies (an exception, the OOM killer) queues nothing: fail instead of waiting forever
        try:
            result = queue.get(timeout=1.0)
            break
        except Empty:
            if not child.is_alive():
                raise SystemExit(f"{target.__name__} failed in its child process (exit code "
                                 f"{child.exitcode})") from None
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="full", help="model preset (conf/model/*.yaml); small/tiny for a smoke test")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="tiny preset, batch 2: seconds, for CI")
    parser.add_argument("--out", default=None, help="folder of the JSON (default bench/results/)")
    args = parser.parse_args()
    if args.quick:
        args.model, args.batch_size = "tiny", 2
    out = result_path("full_step_memory", args.model, args.out, args.quick)
    load = os.getloadavg()[0]
    r = run_in_child(_one_step, module_arguments(args.model), args.batch_size)

    gb = 1e9
    theory = r["params"] * BYTES_PER_PARAM
    baseline, peak = r["stages"]["import"]["rss"], r["stages"]["zero_grad"]["peak"]
    result = {
        "command": "python bench/full_step_memory.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": r["torch"],
                    "load_average_1min_at_start": round(load, 2)},
        "quick": args.quick, "model": args.model, "batch_size": args.batch_size, "params": r["params"],
        "theory_gb": round(theory / gb, 3), "peak_rss_gb": round(peak / gb, 3),
        "baseline_rss_gb": round(baseline / gb, 3),
        "ratio_peak_to_theory": round(peak / theory, 3),
        "ratio_peak_minus_baseline_to_theory": round((peak - baseline) / theory, 3),
        "goal_ratio": GOAL, "meets_goal": peak / theory <= GOAL,
        "step_seconds": round(sum(r["seconds"].values()), 2), "build_seconds": round(r["build_seconds"], 1),
        "stage_seconds": {k: round(v, 3) for k, v in r["seconds"].items()},
        "optimizer": r["optimizer_defaults"], "optimizer_state_gb": round(r["optimizer_state_bytes"] / gb, 3),
        # per stage: RSS now and peak so far, GB; the stage whose peak jumps is where memory goes
        "stages_gb": {k: {"rss": round(v["rss"] / gb, 3), "peak": round(v["peak"] / gb, 3)}
                      for k, v in r["stages"].items()},
    }
    print(json.dumps(result, indent=2))
    atomic_write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
