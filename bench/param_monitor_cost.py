"""Cost of one ParameterUpdateMonitor window check at the `full` preset, against one forward+backward.

    python bench/param_monitor_cost.py [--model full] [--batch-size 8] [--repeats 3] [--quick] [--out DIR]

The monitor (callbacks/parameter_updates.py) must stay cheap at 730M parameters: no full copy of the
weights (2.9 GB fp32) per window. Before the fix in callbacks/param_sampling.py: sampler build 37 s and
5.84 GB retained (randperm views); float64 checksum. A fresh child process (spawn, so its RSS is its
own) builds the LitModule from the real Hydra config (`model=<preset>`, as train(cfg) does for 384-dim
embeddings and the default schema), then, in this one process:
  1. ParameterSampler(params) as the monitor's on_fit_start builds it (once per fit): time, index bytes;
  2. one window check, as on_train_batch_end does it: `snapshot()` of every parameter, then
     `ParameterSampler.relative_change` for every module of redheart.model.net.MODULE_TREE
     (median of --repeats); the snapshot's two parts timed separately, as `snapshot()` does them: the
     sampled gather and `bit_checksum` of each whole tensor;
  3. one forward+backward at --batch-size (training_step + loss.backward(), grads set to None
     before each, as Lightning's zero_grad does; one warm-up, median of 2), the baseline of the ratio;
  4. the gradient check of on_before_optimizer_step (per module: foreach_norm of its grads), with
     the grads of that backward in place.
Memory: the snapshot's own bytes (sampled fp32 values) and the sampler's indices (nominal, and the
storage they keep alive), against a full fp32 copy (params × 4 B); and the RSS above the pre-check
level during the check, sampled every ~1 ms by a thread (any per-tensor transient shows up there).
Timing ratios only, measured in the same process; other processes' CPU use during each phase is read
from /proc/stat and reported (on 2 cores a busy neighbour distorts torch timings badly).
--quick (CI): the tiny preset, batch 2, one repeat. Figures go to stdout and <out>/param_monitor_cost.json
(default bench/results/, with --quick bench/results/quick/; other presets: _<preset>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # `callbacks` package
sys.path.insert(0, str(ROOT / "bench"))

from full_step_memory import module_arguments, random_batch, result_path, run_in_child  # noqa: E402

from callbacks.parameter_updates import modules_without_gradient  # noqa: E402
from redheart.io import atomic_write_json  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def busy_cpu_seconds() -> float:
    """CPU seconds all processes have used so far (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class RssPeak:
    """Peak RSS above the level at entry, polled by a thread (torch ops release the GIL)."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._stop = False
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.extra = self.peak - self.base


class Phase:
    """Wall time of a block, with the cores other processes used meanwhile."""

    def __enter__(self):
        self.t0, self.c0, self.b0 = time.perf_counter(), time.process_time(), busy_cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        own = time.process_time() - self.c0
        self.foreign_cores = max(0.0, busy_cpu_seconds() - self.b0 - own) / self.seconds


def _measure(module_args: dict, batch_size: int, repeats: int, queue) -> None:
    import warnings

    import lightning  # noqa: F401
    import torch

    warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached: logging is a no-op
    from callbacks.module_groups import target_module
    from callbacks.param_sampling import ParameterSampler, bit_checksum
    from callbacks.parameter_updates import _has_submodule
    from redheart.model.net import MODULE_TREE
    from redheart.training.lit_module import RedHeartLitModule

    torch.manual_seed(0)
    module = RedHeartLitModule(**module_args).train()
    net = target_module(module)
    params = dict(net.named_parameters())
    n_params = sum(p.numel() for p in params.values())
    modules = [m for m in MODULE_TREE if _has_submodule(net, m)]
    members = {m: [n for n in params if n == m or n.startswith(m + ".")] for m in modules}
    largest = max(params.items(), key=lambda kv: kv[1].numel())
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "params": n_params,
           "tensors": len(params), "modules": len(modules),
           "covered_params": sum(params[n].numel() for names in members.values() for n in names),
           "largest_tensor": {"name": largest[0], "numel": largest[1].numel()}}

    # 1. the sampler, built once per fit (on_fit_start)
    with RssPeak() as mem, Phase() as ph:
        sampler = ParameterSampler(params)  # the monitor's default sample_per_tensor=4096
    storages = {i.untyped_storage().data_ptr(): i.untyped_storage().nbytes() for i in sampler.indices.values()}
    out["sampler_build"] = {"seconds": ph.seconds, "rss_extra_peak_bytes": mem.extra,
                            "rss_retained_bytes": rss_bytes() - mem.base,
                            "index_bytes": sum(i.numel() * i.element_size() for i in sampler.indices.values()),
                            # the storage the index tensors keep alive (equals index_bytes unless they are views)
                            "index_storage_bytes": sum(storages.values())}

    # 2. the window check: snapshot + relative_change per module (first snapshot = on_train_start's)
    with RssPeak() as mem, Phase() as ph:
        old = sampler.snapshot()
    out["first_snapshot"] = {"seconds": ph.seconds, "rss_extra_peak_bytes": mem.extra}
    out["snapshot_bytes"] = sum(v.numel() * v.element_size() for v, _ in old.values())
    snap, change, peaks, foreign = [], [], [], []
    for _ in range(repeats):
        with RssPeak() as mem, Phase() as ph:
            new = sampler.snapshot()
        snap.append(ph.seconds)
        peaks.append(mem.extra)
        foreign.append(ph.foreign_cores)
        with Phase() as ph:
            ratios = {m: ParameterSampler.relative_change(old, new, names) for m, names in members.items()}
        change.append(ph.seconds)
        old = new
    assert not any(changed for _, changed in ratios.values())  # no step between: nothing changed
    # the snapshot's two parts, separately, as ParameterSampler.snapshot does them
    gather, checksum, checksum_peaks = [], [], []
    with torch.no_grad():
        for _ in range(repeats):
            with Phase() as ph:
                _ = {n: p.detach().reshape(-1)[sampler.indices[n]].float().clone() for n, p in params.items()}
            gather.append(ph.seconds)
            with RssPeak() as mem, Phase() as ph:
                _ = {n: bit_checksum(p) for n, p in params.items()}
            checksum.append(ph.seconds)
            checksum_peaks.append(mem.extra)
    out["check"] = {"snapshot_s": snap, "relative_change_s": change, "snapshot_rss_extra_peak_bytes": peaks,
                    "foreign_cores": foreign, "gather_s": gather, "checksum_s": checksum,
                    "checksum_rss_extra_peak_bytes": checksum_peaks}

    # 3. forward + backward, grads None before each (Lightning's zero_grad(set_to_none=True))
    batch = random_batch(batch_size, torch.Generator().manual_seed(0))
    fwd_bwd, fb_foreign = [], []
    for i in range(3):
        module.zero_grad(set_to_none=True)
        with Phase() as ph:
            loss = module.training_step(batch, 0)
            loss.backward()
        if i:  # the first one is warm-up
            fwd_bwd.append(ph.seconds)
            fb_foreign.append(ph.foreign_cores)
        else:
            out["fwd_bwd_warmup_s"] = ph.seconds
    out["fwd_bwd_s"], out["fwd_bwd_foreign_cores"] = fwd_bwd, fb_foreign

    # 4. on_before_optimizer_step's gradient check, grads in place
    grad_check = []
    for _ in range(repeats):
        with Phase() as ph:
            no_grad = modules_without_gradient(params, members)
        grad_check.append(ph.seconds)
    out["grad_check_s"], out["modules_without_grad"] = grad_check, sorted(no_grad)
    out["peak_rss_bytes"] = rss_bytes()
    queue.put(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="full", help="model preset (conf/model/*.yaml); small/tiny for a smoke test")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="window checks timed (median)")
    parser.add_argument("--every-n-steps", type=int, default=100, help="the monitor's window (conf: parameter_updates)")
    parser.add_argument("--quick", action="store_true", help="tiny preset, batch 2, 1 repeat: seconds, for CI")
    parser.add_argument("--out", default=None, help="folder of the JSON (default bench/results/)")
    args = parser.parse_args()
    if args.quick:
        args.model, args.batch_size, args.repeats = "tiny", 2, 1
    out = result_path("param_monitor_cost", args.model, args.out, args.quick)
    load = os.getloadavg()[0]
    r = run_in_child(_measure, module_arguments(args.model), args.batch_size, args.repeats)

    med = statistics.median
    c = r["check"]
    snapshot_s, change_s = med(c["snapshot_s"]), med(c["relative_change_s"])
    check_s = snapshot_s + change_s
    fwd_bwd_s = med(r["fwd_bwd_s"])
    grad_check_s = med(r["grad_check_s"])
    full_copy = r["params"] * 4
    gb = 1e9
    result = {
        "command": "python bench/param_monitor_cost.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "torch_threads": r["threads"], "python": platform.python_version(),
                    "torch": r["torch"], "load_average_1min_at_start": round(load, 2)},
        "quick": args.quick, "model": args.model, "params": r["params"], "tensors": r["tensors"],
        "modules": r["modules"],
        "params_covered_by_modules": r["covered_params"], "batch_size": args.batch_size,
        "every_n_steps": args.every_n_steps, "largest_tensor": r["largest_tensor"],
        # time: one window check (snapshot + relative_change of every module) vs one forward+backward
        "window_check_s": round(check_s, 4), "snapshot_s": round(snapshot_s, 4),
        "relative_change_s": round(change_s, 5),
        "snapshot_parts_s": {"sampled_gather": round(med(c["gather_s"]), 4),
                             "bit_checksum": round(med(c["checksum_s"]), 4)},
        "fwd_bwd_s": round(fwd_bwd_s, 3), "fwd_bwd_warmup_s": round(r["fwd_bwd_warmup_s"], 3),
        "ratio_check_to_fwd_bwd": round(check_s / fwd_bwd_s, 4),
        "grad_check_s": round(grad_check_s, 4),  # on_before_optimizer_step, window-closing step only
        "ratio_check_plus_grad_check_to_fwd_bwd": round((check_s + grad_check_s) / fwd_bwd_s, 4),
        "amortized_per_step_vs_fwd_bwd": round((check_s + grad_check_s) / (args.every_n_steps * fwd_bwd_s), 6),
        "sampler_build_s": round(r["sampler_build"]["seconds"], 3),  # once per fit (on_fit_start)
        # memory
        "snapshot_bytes": r["snapshot_bytes"], "sampler_index_bytes": r["sampler_build"]["index_bytes"],
        "full_copy_bytes": full_copy,
        "ratio_snapshot_to_full_copy": round(r["snapshot_bytes"] / full_copy, 7),
        "ratio_snapshot_plus_index_to_full_copy": round(
            (r["snapshot_bytes"] + r["sampler_build"]["index_bytes"]) / full_copy, 7),
        # the storage the sampler's indices actually keep alive, and the RSS its build left behind
        "sampler_index_storage_bytes": r["sampler_build"]["index_storage_bytes"],
        "ratio_index_storage_to_full_copy": round(r["sampler_build"]["index_storage_bytes"] / full_copy, 4),
        "sampler_build_rss_retained_bytes": r["sampler_build"]["rss_retained_bytes"],
        "sampler_build_rss_extra_peak_bytes": r["sampler_build"]["rss_extra_peak_bytes"],
        # transient during a snapshot (max over repeats) and during the isolated bit_checksum pass
        "snapshot_rss_extra_peak_bytes": max(c["snapshot_rss_extra_peak_bytes"]),
        "first_snapshot": {"seconds": round(r["first_snapshot"]["seconds"], 4),  # on_train_start's, not timed above
                           "rss_extra_peak_bytes": r["first_snapshot"]["rss_extra_peak_bytes"]},
        "bit_checksum_rss_extra_peak_bytes": max(c["checksum_rss_extra_peak_bytes"]),
        "largest_tensor_fp32_bytes": r["largest_tensor"]["numel"] * 4,
        "peak_rss_gb_at_end": round(r["peak_rss_bytes"] / gb, 3),
        "foreign_cores": {"snapshots": [round(x, 2) for x in c["foreign_cores"]],
                          "fwd_bwd": [round(x, 2) for x in r["fwd_bwd_foreign_cores"]]},
        "modules_without_grad": r["modules_without_grad"],
        "raw": {"snapshot_s": c["snapshot_s"], "relative_change_s": c["relative_change_s"], "fwd_bwd_s": r["fwd_bwd_s"],
                "grad_check_s": r["grad_check_s"], "gather_s": c["gather_s"], "bit_checksum_s": c["checksum_s"],
                "snapshot_rss_extra_peak_bytes": c["snapshot_rss_extra_peak_bytes"],
                "bit_checksum_rss_extra_peak_bytes": c["checksum_rss_extra_peak_bytes"]},
    }
    print(json.dumps(result, indent=2))
    atomic_write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
