"""N training steps of the `full` preset on a CUDA device with trainer=gpu and trainer=gpu_8gb.

    python bench/gpu_full.py [--steps 20] [--batch-size 8] [--quick] [--out DIR]

One command, a few minutes: each trainer runs in a fresh child process (its own CUDA context and
memory statistics) the real Lightning Trainer composed from conf/ (`model=full trainer=<t>
precision=16-mixed callbacks=none logger=none`, random batches of cached-embedding shape), for
`--steps` optimizer steps, then writes one modular checkpoint (the real ModularCheckpoint, fp32,
synchronously) of the trained weights. `trainer=gpu_8gb` runs under
`torch.cuda.set_per_process_memory_fraction(8 GiB / card)`, so a large card allocates like an 8 GiB
one: an out-of-memory there is the finding, recorded, not hidden. Reported per trainer: median step
time after 3 warm-up steps, `torch.cuda.max_memory_allocated`, the process's peak RSS (ZeRO-Offload
keeps the optimizer in RAM), the checkpoint's snapshot (device to CPU: what the training thread
pays) and write time, and its size.

Without CUDA (CI, and --quick anywhere) the same code runs the `tiny` preset on the CPU with
`trainer=cpu precision=bf16-mixed` (fp16 AMP needs CUDA) so the script cannot rot; `trainer=gpu_8gb`
is then recorded as skipped (DeepSpeed runs on CUDA only). The JSON says which device ran what:
never read CPU figures as GPU ones. Output: <out>/gpu_full.json (--quick: gpu_full_quick.json).
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
import traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # `callbacks` package
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("REDHEART_ROOT", str(ROOT))

from full_step_memory import random_batch, run_in_child  # noqa: E402

from redheart.io import atomic_write_json  # noqa: E402

GIB = 1 << 30
WARMUP_STEPS = 3


def peak_rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))


def compose(preset: str, trainer: str, precision: str, output_dir: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    overrides = [f"model={preset}", f"trainer={trainer}", f"precision={precision}", "callbacks=none", "logger=none"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    return cfg, overrides


def _run(preset: str, trainer_name: str, precision: str, steps: int, batch_size: int, fraction_gib: float | None,
         queue) -> None:
    """In a fresh process: fit `steps` steps, time them, then one modular checkpoint."""
    out: dict = {"trainer": trainer_name, "preset": preset, "precision": precision}
    try:
        import hydra
        import lightning as L
        import torch

        from callbacks.modular_checkpoint import ModularCheckpoint
        from redheart.schema import TaskSchema
        from redheart.train import model_arguments
        from redheart.training.lit_module import RedHeartLitModule

        cuda = torch.cuda.is_available()
        if cuda:
            total = torch.cuda.get_device_properties(0).total_memory
            out["device"] = torch.cuda.get_device_name(0)
            out["device_memory_gib"] = round(total / GIB, 2)
            if fraction_gib is not None:
                torch.cuda.set_per_process_memory_fraction(min(1.0, fraction_gib * GIB / total), 0)
                out["memory_cap_gib"] = fraction_gib
        else:
            out["device"] = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
        with tempfile.TemporaryDirectory(prefix="gpu_full_") as tmp:
            cfg, overrides = compose(preset, trainer_name, precision, tmp)
            out["overrides"] = overrides
            L.seed_everything(0)
            module = RedHeartLitModule(**model_arguments(cfg, 384, TaskSchema()))
            out["params"] = sum(p.numel() for p in module.parameters())
            generator = torch.Generator().manual_seed(0)
            batches = [random_batch(batch_size, generator) for _ in range(4)]
            loader = torch.utils.data.DataLoader([batches[i % 4] for i in range(steps)], batch_size=None)
            times: list[float] = []

            class StepTimer(L.Callback):
                def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                    if cuda:
                        torch.cuda.synchronize()
                    self.t0 = time.perf_counter()

                def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                    if cuda:
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - self.t0)

            trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[StepTimer()], logger=False, max_steps=steps,
                                              max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
                                              enable_checkpointing=False, enable_progress_bar=False,
                                              enable_model_summary=False)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            trainer.fit(module, train_dataloaders=loader)
            measured = times[WARMUP_STEPS:] or times
            out |= {"steps": len(times), "step_seconds_median": statistics.median(measured),
                    "step_seconds": [round(t, 4) for t in times],
                    "loss": float(trainer.callback_metrics.get("train/loss", float("nan")))}
            if cuda:
                out["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3)
                out["max_memory_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 3)
            net = trainer.lightning_module.net
            writer = ModularCheckpoint(str(Path(tmp) / "modular"), cfg.module_groups, dtype="float32",
                                       background=False)
            partition = writer.module_groups.partition(net.named_parameters())
            writer._group_names = {g: list(m) for g, m in partition.items()}
            t0 = time.perf_counter()
            snapshot = writer._snapshot_tensors(dict(net.state_dict()))
            snapshot_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            writer._write(steps, None, snapshot, {"epoch": steps})
            write_s = time.perf_counter() - t0
            manifest = json.loads(writer.manifest_path.read_text())
            out["modular_checkpoint"] = {
                "snapshot_seconds": round(snapshot_s, 3), "write_seconds": round(write_s, 3),
                "gb": round(sum(f["bytes"] for f in manifest["checkpoints"][0]["files"].values()) / 1e9, 3),
                "note": "fp32, one copy (the default `weights: evaluated`); the write runs on the writer thread in "
                        "training, the snapshot on the training thread"}
        out["peak_rss_gib"] = round(peak_rss() / GIB, 3)
        out["ok"] = True
    except BaseException as err:  # an OOM under the 8 GiB cap is a result, not a crash of the bench
        out |= {"ok": False, "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                "traceback_tail": traceback.format_exc().splitlines()[-3:]}
        try:
            import torch

            if torch.cuda.is_available():
                out["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3)
        except Exception:  # noqa: BLE001
            pass
    queue.put(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per trainer (3 warm-up)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="tiny preset on the CPU, 6 steps (CI)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the JSON")
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available() and not args.quick
    steps = 6 if args.quick else args.steps
    if cuda:
        plan = [("full", "gpu", "16-mixed", None), ("full", "gpu_8gb", "16-mixed", 8.0)]
    else:
        plan = [("tiny", "cpu", "bf16-mixed", None)]
    started = time.perf_counter()
    runs = []
    for preset, trainer, precision, cap in plan:
        print(f"{trainer}: {preset} preset, {precision}, {steps} steps"
              + (f", memory capped at {cap:g} GiB" if cap else "") + " ...", flush=True)
        r = run_in_child(_run, preset, trainer, precision, steps, args.batch_size, cap)
        print("   ", {k: r.get(k) for k in ("ok", "step_seconds_median", "max_memory_allocated_gib", "peak_rss_gib",
                                            "error")}, flush=True)
        runs.append(r)
    if not cuda:
        runs.append({"trainer": "gpu_8gb", "ok": None, "skipped": "no CUDA device: DeepSpeed ZeRO-Offload runs on "
                                                                    "CUDA only" if not args.quick else "--quick"})
    result = {
        "command": "python bench/gpu_full.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ran_on": "cuda" if cuda else "cpu",
        "what": ("the full preset on the GPU" if cuda else
                 "CPU stand-in: the tiny preset with trainer=cpu (no GPU figures here)"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "cuda": torch.version.cuda},
        "steps": steps, "warmup_steps_excluded": WARMUP_STEPS, "batch_size": args.batch_size,
        "runs": runs, "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out) / ("gpu_full_quick.json" if args.quick else "gpu_full.json")
    atomic_write_json(out, result)
    print(f"wrote {out} ({result['wall_seconds']} s, ran on {result['ran_on']})")
    if any(r.get("ok") is False for r in runs if r["trainer"] != "gpu_8gb" or not cuda):
        raise SystemExit("a run failed: see the JSON")


if __name__ == "__main__":
    main()
