"""Peak memory of the crossover assembly on a synthetic 30-checkpoint run of the `full` preset.

    python bench/crossover_memory.py [--model full|small|tiny] [--epochs 30] [--dir /tmp/...] [--keep]
                                     [--quick] [--out DIR]

--quick (CI, ~1 min, 1.5 GB of disk): `ours` only, every group from one `full` checkpoint. The peak is
the same as from 30 (the assembly reads the same 9 group files, one group at a time), and only at this
size is it meaningful: a smaller preset's weights vanish beside the interpreter's ~0.24 GB. Written as
crossover_memory_quick.json; like the full run it exits non-zero above the goal, so CI sees a drift.

1. A child process writes a synthetic run: run.json (the composed `model=<preset>` config), and 30
   modular checkpoints (epochs 2, 4, ..., 60) written by the real ModularCheckpoint in bfloat16, raw
   weights only (no EMA: 730,466,848 params x 2 B x 30 = 43.8 GB on disk for `full`). Each epoch's
   weights differ (a base draw plus an epoch offset), so every file has its own sha256.
2. Each group takes a different epoch (the design's example epochs), so the assembly reads 9 checkpoints.
3. Three fresh children (spawn; each peak RSS, ru_maxrss, is its own):
   - ours: `crossover_and_evaluate(..., evaluation disabled)`, what combine.py runs: manifest, sha256
     of the 9 files, header-only validation against the meta-device model, then one group at a time
     read lazily (safetensors, pread) and kept in its stored dtype, one save_file, provenance.json;
   - naive: what the original ParameterCrossover does with whole checkpoints: for each group, load
     its epoch's whole checkpoint (every group file, every tensor read into memory as torch.load of
     the original .pt files does: safetensors load_file with the pread backend), keep that group's
     tensors, drop the rest; then one save_file of the assembled dict (no model is built: in the
     original version the fp32 model comes on top). With the default mmap backend load_file would be
     lazy too (untouched tensors never become resident): safetensors already avoids the worst case;
   - into_model (for information, what the evaluation does per candidate): build the fp32 model and
     copy the same assembly into it group by group.
   Ours and naive must produce identical tensors (checked tensor by tensor).
"One model's weights" is the parameter bytes in the stored dtype (bf16: 2 B per parameter); the goal
is ours ≤ 1.3x that, interpreter and imports included. Figures go to stdout and
bench/results/crossover_memory.json (other presets: crossover_memory_<preset>.json). The synthetic run
is deleted at the end unless --keep. IO-heavy: ~45 GB written, ~4.5 GB read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # `callbacks` package
sys.path.insert(0, str(ROOT / "bench"))

from full_step_memory import result_path, run_in_child  # noqa: E402

from redheart.io import atomic_write_json  # noqa: E402

GOAL = 1.3
# the design's example epochs (backbone 44, heads 40, analyzers 46), then others spread over the run
EPOCHS_BY_GROUP = {"backbone": 44, "heads": 40, "neural_analyzers": 46, "dsp_kalman": 38, "advanced_emotion": 50,
                   "advanced_regret": 36, "advanced_bentham": 52, "advanced_surd": 42, "phase": 48}


def memory() -> dict:
    """RSS now and the process's peak RSS so far, in bytes, from /proc/self/status (VmRSS, VmHWM).

    VmHWM, not ru_maxrss: a spawned child is fork + exec, and Linux carries ru_maxrss across exec, so
    the child's ru_maxrss starts at the parent's RSS at fork time; VmHWM belongs to the new address space.
    """
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return {"rss": fields["VmRSS"], "peak": fields["VmHWM"]}


def composed_config(preset: str, run_dir: Path) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    os.environ.setdefault("REDHEART_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={preset}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return OmegaConf.to_container(cfg, resolve=True)


def _generate(run_dir: str, config: dict, epochs: list[int], queue) -> None:
    """Write run.json, metrics.json and one bf16 modular checkpoint per epoch with the real writer."""
    import torch
    from omegaconf import OmegaConf

    from callbacks.modular_checkpoint import ModularCheckpoint
    from redheart.crossover.rebuild import build_net

    run = Path(run_dir)
    atomic_write_json(run / "run.json", {"config": config})
    atomic_write_json(run / "metrics.json", {"embedding_dim": 384})
    net = build_net(OmegaConf.create(config), 384, device="meta")
    writer = ModularCheckpoint(str(run / "modular"), config["module_groups"], dtype="bfloat16", weights="evaluated")
    writer._group_names = {g: list(m) for g, m in writer.module_groups.partition(net.named_parameters()).items()}
    generator = torch.Generator().manual_seed(0)
    base = {n: torch.randn(t.shape, generator=generator).to(torch.bfloat16) for n, t in net.state_dict().items()}
    started = time.perf_counter()
    for epoch in epochs:
        state = {n: t + epoch * 0.01 for n, t in base.items()}
        writer._write(epoch, state, None, {"epoch": epoch, "weights_evaluated": "raw"})
        del state
    params = sum(t.numel() for t in base.values())
    queue.put({"params": params, "seconds": time.perf_counter() - started,
               "bytes": sum(p.stat().st_size for p in (run / "modular").rglob("*.safetensors"))})


def _ours(run_dir: str, out_dir: str, epochs_by_group: dict, queue) -> None:
    import torch  # noqa: F401  (the interpreter baseline of both approaches)

    from redheart.crossover.run import crossover_and_evaluate

    stages = {"import": memory()}
    started = time.perf_counter()
    result = crossover_and_evaluate({**epochs_by_group, "weights": "raw"}, {"enabled": False}, Path(run_dir), None,
                                    Path(out_dir))
    stages["done"] = memory()
    queue.put({"seconds": time.perf_counter() - started, "stages": stages, "output": result["crossover"],
               "tensors": result["tensor_count"]})


def _naive(run_dir: str, out_path: str, epochs_by_group: dict, queue) -> None:
    import torch  # noqa: F401
    from safetensors.torch import load_file, save_file

    stages = {"import": memory()}
    started = time.perf_counter()
    from redheart.run_folder import MODULAR_DIR, group_of, read_manifest

    manifest = read_manifest(Path(run_dir) / MODULAR_DIR)
    by_epoch = {c["epoch"]: c for c in manifest.checkpoints}
    assembled = {}
    for group, epoch in epochs_by_group.items():
        whole = {}
        for info in by_epoch[epoch]["files"].values():  # the whole checkpoint of that epoch, read into memory
            whole.update(load_file(str(Path(run_dir) / MODULAR_DIR / info["path"]), backend="pread"))
        only = {group: manifest.groups[group]}
        assembled.update({k[len("raw/"):]: v for k, v in whole.items() if group_of(k[len("raw/"):], only)})
        del whole
        stages[f"after_{group}"] = memory()
    save_file(assembled, out_path)
    stages["done"] = memory()
    queue.put({"seconds": time.perf_counter() - started, "stages": stages, "tensors": len(assembled)})


def _into_model(run_dir: str, epochs_by_group: dict, queue) -> None:
    import torch

    from redheart.crossover.assemble import expected_tensors, load_into, plan_assembly
    from redheart.crossover.checkpoints import RunCheckpoints
    from redheart.crossover.rebuild import build_net, run_config

    stages = {"import": memory()}
    started = time.perf_counter()
    checkpoints = RunCheckpoints(run_dir)
    cfg = run_config(checkpoints.run_dir)
    net = build_net(cfg, 384, device="cpu")
    stages["model"] = memory()
    plan = plan_assembly(checkpoints, {g: (e,) for g, e in epochs_by_group.items()}, "raw",
                         expected_tensors(net))
    load_into(net, checkpoints, plan)
    stages["done"] = memory()
    model_bytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    queue.put({"seconds": time.perf_counter() - started, "stages": stages, "model_bytes": model_bytes,
               "dtype": str(next(net.parameters()).dtype), "torch": torch.__version__})


def same_tensors(a: str, b: str) -> bool:
    from safetensors import safe_open

    with safe_open(a, "pt", backend="pread") as fa, safe_open(b, "pt", backend="pread") as fb:
        keys = set(fa.keys())  # noqa: SIM118 (safe_open is not iterable)
        if keys != set(fb.keys()):  # noqa: SIM118
            return False
        import torch

        return all(torch.equal(fa.get_tensor(k), fb.get_tensor(k)) for k in sorted(keys))


def _peak(stages: dict, weights: int) -> dict:
    peak, base = stages["done"]["peak"], stages["import"]["rss"]
    return {"peak_rss_gb": round(peak / 1e9, 3), "baseline_rss_gb": round(base / 1e9, 3),
            "ratio_to_weights": round(peak / weights, 3), "ratio_minus_baseline": round((peak - base) / weights, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="full", help="model preset; small/tiny for a smoke test")
    parser.add_argument("--epochs", type=int, default=30, help="checkpoints 2, 4, ..., 2N (default 30: up to 60)")
    parser.add_argument("--dir", default=None, help="where the synthetic run goes (default: a temp dir in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic run")
    parser.add_argument("--quick", action="store_true", help="ours only, from one full-preset checkpoint (CI)")
    parser.add_argument("--out", default=None, help="folder for the JSON (default bench/results)")
    args = parser.parse_args()
    epochs_by_group = dict(EPOCHS_BY_GROUP)
    if args.quick:
        args.model, args.epochs = "full", 1
        epochs_by_group = {g: 2 for g in epochs_by_group}
    if args.epochs * 2 < max(epochs_by_group.values()):
        parser.error(f"--epochs must reach epoch {max(epochs_by_group.values())}")
    name = "crossover_memory_quick" if args.quick else "crossover_memory"
    out = (Path(args.out) / f"{name}.json" if args.out and not args.out.endswith(".json")
           else result_path(name, "full" if args.quick else args.model, args.out))
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="crossover_memory_"))
    run_dir = work / "run"
    gb = 1e9
    naive = into = identical = None
    try:
        epochs = list(range(2, 2 * args.epochs + 1, 2))
        t0 = time.perf_counter()
        generated = run_in_child(_generate, str(run_dir), composed_config(args.model, run_dir), epochs)
        print(f"synthetic run: {len(epochs)} checkpoints, {generated['bytes'] / gb:.2f} GB in {run_dir} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        ours = run_in_child(_ours, str(run_dir), str(work / "ours"), epochs_by_group)
        print(f"ours: peak {ours['stages']['done']['peak'] / gb:.3f} GB", flush=True)
        if not args.quick:
            naive_path = work / "naive.safetensors"
            naive = run_in_child(_naive, str(run_dir), str(naive_path), epochs_by_group)
            print(f"naive: peak {naive['stages']['done']['peak'] / gb:.3f} GB", flush=True)
            identical = same_tensors(ours["output"], str(naive_path))
            into = run_in_child(_into_model, str(run_dir), epochs_by_group)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    weights = generated["params"] * 2  # bf16 storage
    import torch

    result = {
        "command": "python bench/crossover_memory.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "model": args.model, "quick": args.quick, "params": generated["params"], "checkpoints": len(epochs),
        "storage_dtype": "bfloat16", "disk_gb": round(generated["bytes"] / gb, 2),
        "generate_seconds": round(generated["seconds"], 1), "epochs_by_group": epochs_by_group,
        "weights_gb": round(weights / gb, 3), "goal_ratio": GOAL,
        "ours": _peak(ours["stages"], weights) | {"seconds": round(ours["seconds"], 1),
                                                  "meets_goal": ours["stages"]["done"]["peak"] / weights <= GOAL},
    }
    if naive is not None:
        result["naive"] = _peak(naive["stages"], weights) | {
            "seconds": round(naive["seconds"], 1),
            "stages_gb": {k: round(v["peak"] / gb, 3) for k, v in naive["stages"].items()}}
        result["naive_over_ours"] = round(naive["stages"]["done"]["peak"] / ours["stages"]["done"]["peak"], 2)
        result["identical_output"] = identical
    if into is not None:
        result["into_model"] = {"model_dtype": into["dtype"], "model_gb": round(into["model_bytes"] / gb, 3),
                                "peak_rss_gb": round(into["stages"]["done"]["peak"] / gb, 3),
                                "after_model_rss_gb": round(into["stages"]["model"]["rss"] / gb, 3),
                                "ratio_to_model": round(into["stages"]["done"]["peak"] / into["model_bytes"], 3),
                                "seconds": round(into["seconds"], 1)}
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))
    if identical is False:
        raise SystemExit("ours and naive assembled different tensors")
    atomic_write_json(out, result)
    print(f"wrote {out}")
    if not result["ours"]["meets_goal"]:
        raise SystemExit(f"crossover assembly peak: {result['ours']['ratio_to_weights']:.3f}x the weights, over "
                         f"the goal {GOAL}x")


if __name__ == "__main__":
    main()
