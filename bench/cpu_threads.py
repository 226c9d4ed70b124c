"""Training-step time with torch's default CPU threads vs the `threads` setting, alone and under load.

    python bench/cpu_threads.py [--quick] [--out DIR] [--steps 12] [--setting 1]

Each arm runs in a fresh process: a training step of the `model=small` net (tiny with --quick) on a
synthetic batch of 64 MiniLM-sized embeddings (forward, multi-task loss, backward, AdamW), the median
of `--steps` steps after 3 warm-up steps. Arms:
  default: torch's own thread count (OMP_NUM_THREADS removed from the environment: one per core);
  setting: `threads: <--setting>` applied as train() does (redheart.threads.configure_threads);
each alone, then beside a competing busy process (one core spinning in pure Python, as another job
on the machine would). `threads: null` resolves to the process's cores, i.e. the default arm's count,
when OMP_NUM_THREADS is unset; the setting matters on a shared machine. The JSON holds the medians
and the ratios default / setting, the load average before and after, and the core count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("REDHEART_ROOT", str(ROOT))

WARMUP = 3
INPUT_DIM = 384  # all-MiniLM-L6-v2, the default encoder
BATCH = 64


def step_times(model: str, steps: int, setting: int | None) -> dict:
    """In this process: build the net, time `steps` training steps, return the per-step seconds."""
    import torch
    from hydra import compose, initialize_config_dir

    from redheart.schema import TaskSchema
    from redheart.threads import configure_threads
    from redheart.train import model_arguments
    from redheart.training.lit_module import RedHeartLitModule

    if setting is not None:
        configure_threads(setting)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}"])
    schema = TaskSchema.from_config()
    torch.manual_seed(0)
    module = RedHeartLitModule(**model_arguments(cfg, INPUT_DIM, schema))
    module.train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    nb, ns = len(schema.bentham_names), len(schema.surd_names)
    batch = {"embedding": torch.randn(BATCH, INPUT_DIM), "label": torch.randint(0, len(schema.class_names), (BATCH,)),
             "intensity": torch.rand(BATCH), "intensity_mask": torch.ones(BATCH, dtype=torch.bool),
             "regret": torch.rand(BATCH), "regret_mask": torch.ones(BATCH, dtype=torch.bool),
             "bentham": torch.rand(BATCH, nb), "bentham_mask": torch.ones(BATCH, nb, dtype=torch.bool),
             "surd": torch.rand(BATCH, ns), "surd_mask": torch.ones(BATCH, ns, dtype=torch.bool)}
    times = []
    for i in range(WARMUP + steps):
        t0 = time.perf_counter()
        loss, _ = module._loss(module.net(batch["embedding"]), batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= WARMUP:
            times.append(time.perf_counter() - t0)
    return {"threads": torch.get_num_threads(), "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "steps": steps}


def run_arm(model: str, steps: int, setting: int | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    args = [sys.executable, __file__, "--worker", "--model", model, "--steps", str(steps)]
    if setting is not None:
        args += ["--arm-threads", str(setting)]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"arm failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny preset, 4 steps (seconds; CI)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--setting", type=int, default=1, help="the `threads` value compared with the default")
    parser.add_argument("--model", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arm-threads", type=int, default=None, help=argparse.SUPPRESS)  # None: torch's default
    args = parser.parse_args()
    model = args.model or ("tiny" if args.quick else "small")
    steps = args.steps or (4 if args.quick else 12)
    if args.worker:
        print(json.dumps(step_times(model, steps, args.arm_threads)))
        return

    from redheart.io import atomic_write_json
    from redheart.threads import available_cores

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_before = load()
    arms: dict[str, dict] = {}
    for competing in (False, True):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competing else None
        try:
            if busy is not None:
                time.sleep(1.0)  # let the spinner take its core
            for name, setting in (("default", None), ("setting", args.setting)):
                key = f"{name}_{'busy' if competing else 'alone'}"
                arms[key] = run_arm(model, steps, setting)
                print(f"{key:16s} threads {arms[key]['threads']}: median step {arms[key]['median_s']:.4f} s",
                      flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    ratios = {
        "alone_default_over_setting": arms["default_alone"]["median_s"] / arms["setting_alone"]["median_s"],
        "busy_default_over_setting": arms["default_busy"]["median_s"] / arms["setting_busy"]["median_s"],
        "default_busy_over_alone": arms["default_busy"]["median_s"] / arms["default_alone"]["median_s"],
        "setting_busy_over_alone": arms["setting_busy"]["median_s"] / arms["setting_alone"]["median_s"],
    }
    result = {
        "bench": "cpu_threads", "quick": args.quick, "model": model, "steps": steps, "warmup": WARMUP,
        "batch": BATCH, "setting": args.setting, "cores_available": available_cores(),
        "cpu_count": os.cpu_count(), "competing": "1 process spinning in pure Python",
        "arms": arms, "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "load_before": load_before, "load_after": load(), "started": started, "torch": __import__("torch").__version__,
        "python": platform.python_version(), "command": " ".join(["python", "bench/cpu_threads.py", *sys.argv[1:]]),
    }
    atomic_write_json(args.out / "cpu_threads.json", result)
    print(json.dumps(result["ratios"], indent=2))


if __name__ == "__main__":
    main()
