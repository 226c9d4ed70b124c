"""What one resume-checkpoint save costs the training thread: torch.save on the writer thread vs in the helper.

    python bench/checkpoint_writer.py [--model small] [--repeats 7] [--steps 15] [--quick]

The "training" is the real net of `model=<preset>` (its embedding input, batch 64) doing forward,
backward and an Adam step on the main thread, one thread, as on the 2-core machine. Its checkpoint is
what Lightning saves for a resume: weights, an EMA copy of them, Adam's two moments. Each trial runs
`--steps` steps and, at the first one, calls the production `AsyncAtomicCheckpointIO.save_checkpoint`
(callbacks/atomic_checkpoint_io.py) with `serialize_in="thread"` or `"process"`, then waits for the
write; a trial without a save is the baseline. Trials alternate (none, thread, process, none, ...) so
machine noise hits all three alike.

Reported per mode, medians over repeats: `stage_s`, the time the save call takes on the training thread
(the snapshot copy); `lost_s`, how much longer the steps that ran beside the write took than the
median of the same trial's later steps (GIL contention: torch.save on a thread holds the GIL while it
copies tensors into the file); `total_s = stage_s + lost_s`, what one save costs training. Mode
"none" sums its first 3 steps the same way: the noise floor of `lost_s`. Written to
bench/results/checkpoint_writer.json (--quick: the tiny preset, 1 repeat, checkpoint_writer_quick.json,
for CI).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("REDHEART_ROOT", str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from callbacks.atomic_checkpoint_io import AsyncAtomicCheckpointIO  # noqa: E402
from callbacks.background_writer import WRITER  # noqa: E402
from redheart.io import atomic_write_json  # noqa: E402

MODES = ("none", "thread", "process")
EMBEDDING_DIM = 384  # all-MiniLM-L6-v2's sentence vector, what the frozen path feeds the net


def build(model: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}", "data=sample"])
    net = instantiate(cfg.model.net, input_dim=EMBEDDING_DIM)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    return net, optimizer


def step(net, optimizer, batch: torch.Tensor) -> None:
    out = net(embedding=batch)
    loss = sum(v.float().mean() for v in out.values() if torch.is_tensor(v) and v.is_floating_point())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def checkpoint(net, optimizer, ema: dict) -> dict:
    return {"state_dict": ema, "current_model_state": net.state_dict(), "optimizer_states": [optimizer.state_dict()],
            "epoch": 1, "global_step": 10}


def trial(mode: str, io: dict, net, optimizer, ema, batch, steps: int, folder: Path) -> dict:
    """`steps` timed steps; with a save at the first. Steps while the write runs are compared with the
    median of the later steps of the same trial (a baseline from the same minute: no drift between them)."""
    times, stage = [], 0.0
    overlapping = 0 if mode == "none" else 1  # the step after the save call starts beside the write
    future = None
    for i in range(steps):
        t0 = time.perf_counter()
        if i == 0 and mode != "none":
            io[mode].save_checkpoint(checkpoint(net, optimizer, ema), folder / f"{mode}.ckpt")
            stage = time.perf_counter() - t0
            future = io[mode]._last_save
        s0 = time.perf_counter()
        step(net, optimizer, batch)
        times.append(time.perf_counter() - s0)
        if future is not None and not future.done():
            overlapping = i + 1  # this step ran (at least partly) while the file was being written
    if mode == "none":
        overlapping = 3  # the noise floor: the same sum over steps that had no write beside them
    WRITER.wait()
    if steps - overlapping < 3:
        raise SystemExit(f"error: the {mode} write outlasted {overlapping} of {steps} steps; pass a larger --steps")
    rest = statistics.median(times[overlapping:])
    return {"stage_s": stage, "overlapping_steps": overlapping, "step_s": rest,
            "lost_s": sum(times[:overlapping]) - overlapping * rest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=15, help="training steps per trial (the write must end within)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if args.quick:
        args.model, args.repeats, args.steps = "tiny", 1, 8
    load_before = os.getloadavg()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net, optimizer = build(args.model)
    batch = torch.randn(64, EMBEDDING_DIM)
    for _ in range(5):
        step(net, optimizer, batch)  # Adam's state exists, caches are warm
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    ckpt_bytes = sum(t.numel() * t.element_size() for t in (*ema.values(), *net.state_dict().values()))
    ckpt_bytes += sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                      if torch.is_tensor(t))
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="checkpoint_writer_") as tmp:
        io = {m: AsyncAtomicCheckpointIO(serialize_in=m) for m in ("thread", "process")}
        for m in ("thread", "process"):  # warm-up: the helper's start, the process buffer's first pages
            trial(m, io, net, optimizer, ema, batch, args.steps, Path(tmp))
        for _ in range(args.repeats):
            for mode in MODES:
                runs[mode].append(trial(mode, io, net, optimizer, ema, batch, args.steps, Path(tmp)))
        for m in io.values():
            m.teardown()
    modes = {}
    for mode in MODES:
        stage = statistics.median(r["stage_s"] for r in runs[mode])
        lost = statistics.median(r["lost_s"] for r in runs[mode])
        modes[mode] = {"stage_s": round(stage, 4), "lost_s": round(lost, 4), "total_s": round(stage + lost, 4),
                       "lost_s_runs": [round(r["lost_s"], 4) for r in runs[mode]],
                       "overlapping_steps": [r["overlapping_steps"] for r in runs[mode]],
                       "step_s": round(statistics.median(r["step_s"] for r in runs[mode]), 4)}
    result = {
        "command": "python bench/checkpoint_writer.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in os.getloadavg()]},
        "model": args.model, "checkpoint_bytes": ckpt_bytes, "steps_per_trial": args.steps, "repeats": args.repeats,
        "modes": modes, "quick": args.quick,
        "saving_s_per_save": round(modes["thread"]["total_s"] - modes["process"]["total_s"], 4),
    }
    name = "checkpoint_writer_quick.json" if args.quick else "checkpoint_writer.json"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / name, result)
    print(json.dumps({k: result[k] for k in ("model", "checkpoint_bytes", "modes",
                                             "saving_s_per_save")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
