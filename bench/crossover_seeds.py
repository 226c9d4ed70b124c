"""Does the crossover beat best single, over seeds? ISEAR, frozen encoder, small preset, 3 seeds.

    python bench/crossover_seeds.py [--quick] [--out DIR] [--seeds 1 2 3] [--epochs 16]

Per seed: `train.py experiment=isear` with a fixed LR (5e-4, what the ISEAR LR sweep chose; no sweep,
which would cost more than the runs) for `--epochs` epochs (16: ISEAR overfits by epoch ~6, so 60 is far
past it), then `analyze.py` (sweet spots, crossover, evaluation). From each run's evaluation.json: the
test Δ vs best single with its paired-bootstrap 95% CI, per task and metric, for the crossover, the
greedy crossover, the per-group plateau average, the greedy soup and EMA; then mean ± sd over seeds.
A run folder already holding its last checkpoint is not trained again (only re-analysed).
`--quick`: the bundled sample, tiny preset, hashing embeddings, 4 epochs, 2 seeds (seconds, not a result).
Writes <out>/crossover_seeds.json (default bench/results/).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from redheart.io import atomic_write_json  # noqa: E402

CANDIDATES = ("crossover", "greedy_crossover", "per_group_plateau_average", "plateau_average", "greedy_soup", "ema")
ISEAR = ROOT.parent / "shared" / "data" / "isear" / "isear.csv"


def run(args: list[str], log: Path) -> float:
    start = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run([sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        print(f"crossover_seeds: {' '.join(args[:2])} exited with {result.returncode}; see {log}", file=sys.stderr)
        raise SystemExit(2)
    return time.monotonic() - start


def train_and_analyse(seed: int, work: Path, quick: bool, epochs: int, train_only: bool = False) -> dict:
    run_dir = work / "crossover_seeds" / "runs" / f"seed_{seed}"
    data = (["data.embedding.backend=hashing", "data.embedding.dim=64", "model=tiny"] if quick
            else ["experiment=isear", f"data.path={ISEAR}", "model=small"])
    common = [*data, "task_name=crossover_seeds", f"paths.log_dir={work}", f"seed={seed}", "optim.lr=5e-4",
              f"trainer.max_epochs={epochs}", "logger=none", "test=false", "data.progress=false",
              "+trainer.enable_progress_bar=false"]
    seconds = {}
    last = run_dir / "modular" / f"metrics_epoch_{epochs:03d}.json"
    if not last.is_file():
        seconds["train"] = run(["train.py", *common, f"run_name=seed_{seed}"], work / f"train_seed_{seed}.log")
    if train_only:
        return {"run_dir": str(run_dir), "seconds": seconds}
    seconds["analyse"] = run(["analyze.py", f"ckpt_dir={run_dir}"], work / f"analyse_seed_{seed}.log")
    results = run_dir / "analysis_results"
    evaluation = json.loads((results / "evaluation.json").read_text(encoding="utf-8"))
    analysis = json.loads((results / "module_metrics.json").read_text(encoding="utf-8"))
    return {"run_dir": str(run_dir), "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "evaluation": evaluation, "group_overfitting_epochs": analysis.get("group_overfitting_epochs")}


def deltas(evaluation: dict) -> dict:
    """candidate -> task -> metric -> {difference, ci_low, ci_high, better_beyond_ci, worse_beyond_ci}."""
    out: dict = {}
    for task, by_candidate in evaluation["tasks"].items():
        for name in CANDIDATES:
            entry = by_candidate.get(name)
            if entry is None:
                continue
            for metric, ci in entry["vs_best_single"].items():
                out.setdefault(name, {}).setdefault(task, {})[metric] = {
                    k: ci[k] for k in ("difference", "ci_low", "ci_high", "better_beyond_ci", "worse_beyond_ci")}
    return out


def summary(per_seed: dict[int, dict]) -> dict:
    """mean ± sd of each Δ over seeds, and whether it beat best single beyond its CI on every seed."""
    out: dict = {}
    first = next(iter(per_seed.values()))
    for name, tasks in first.items():
        for task, metrics in tasks.items():
            for metric in metrics:
                values = [s[name][task][metric] for s in per_seed.values() if metric in s.get(name, {}).get(task, {})]
                diffs = [v["difference"] for v in values if v["difference"] is not None]
                out.setdefault(name, {}).setdefault(task, {})[metric] = {
                    "mean": statistics.fmean(diffs) if diffs else None,
                    "sd": statistics.stdev(diffs) if len(diffs) > 1 else 0.0 if diffs else None,
                    "seeds": len(diffs), "better_beyond_ci_every_seed": all(v["better_beyond_ci"] for v in values),
                    "better_beyond_ci_seeds": sum(v["better_beyond_ci"] for v in values),
                    "worse_beyond_ci_seeds": sum(v["worse_beyond_ci"] for v in values)}
    return out


MAIN_METRIC = {"emotion": ("macro_f1", 100, "points"), "intensity": ("mae", 1, ""), "regret": ("mae", 1, ""),
               "bentham": ("mae", 1, ""), "surd": ("mae", 1, "")}


def markdown(result: dict) -> str:
    """The docs/results.md table: per task and candidate, Δ vs best single (mean ± sd over seeds) of the
    task's main metric, and on how many seeds any metric of the task was better / worse beyond its CI."""
    seeds = result["seeds"]
    lines = ["| task (metric) | candidate | " + " | ".join(f"seed {s}" for s in seeds)
             + " | mean ± sd | better beyond CI (any metric) | worse beyond CI (any metric) |",
             "|---|---|" + "---:|" * (len(seeds) + 3)]
    for task, (metric, scale, unit) in MAIN_METRIC.items():
        for name in CANDIDATES:
            summary = result["summary"].get(name, {}).get(task)
            if not summary:
                continue
            cells = []
            for s in seeds:
                ci = result["per_seed"][str(s)]["delta_vs_best_single"].get(name, {}).get(task, {}).get(metric)
                cells.append("—" if not ci or ci["difference"] is None else
                             f"{scale * ci['difference']:+.{1 if scale == 100 else 3}f}"
                             + ("" if ci["ci_low"] is None else
                                f" [{scale * ci['ci_low']:+.{1 if scale == 100 else 3}f}, "
                                f"{scale * ci['ci_high']:+.{1 if scale == 100 else 3}f}]"))
            m = summary[metric]
            mean = "—" if m["mean"] is None else (f"{scale * m['mean']:+.{1 if scale == 100 else 3}f} ± "
                                                  f"{scale * m['sd']:.{1 if scale == 100 else 3}f}")
            per_seed = [result["per_seed"][str(s)]["delta_vs_best_single"].get(name, {}).get(task, {}) for s in seeds]
            better = sum(any(v["better_beyond_ci"] for v in d.values()) for d in per_seed)
            worse = sum(any(v["worse_beyond_ci"] for v in d.values()) for d in per_seed)
            lines.append(f"| {task} ({metric}{', ' + unit if unit else ''}) | {name} | " + " | ".join(cells)
                         + f" | {mean} | {better}/{len(seeds)} | {worse}/{len(seeds)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="bundled sample, tiny preset, 4 epochs, 2 seeds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--work", type=Path, default=None, help="where the runs go (default: outputs/bench)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-only", action="store_true", help="train the runs, analyse nothing")
    args = parser.parse_args(argv)
    if not args.quick and not ISEAR.is_file():
        print(f"crossover_seeds: ISEAR not found at {ISEAR} (it is not bundled; see its README)", file=sys.stderr)
        raise SystemExit(2)
    seeds = args.seeds or ([1, 2] if args.quick else [1, 2, 3])
    epochs = args.epochs or (4 if args.quick else 16)
    work = (args.work or ROOT / "outputs" / ("bench_quick" if args.quick else "bench")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    runs = {}
    for seed in seeds:  # the JSON is rewritten after every seed: a run cut short keeps the seeds it finished
        runs[seed] = train_and_analyse(seed, work, args.quick, epochs, args.train_only)
        if not args.train_only:
            path = write_result(args, list(runs), epochs, runs, seeds)
    if args.train_only:
        print(json.dumps({s: r["seconds"] for s, r in runs.items()}))
        return
    print(markdown(json.loads(path.read_text(encoding="utf-8"))))
    print(f"wrote {path}")


def write_result(args: argparse.Namespace, seeds: list[int], epochs: int, runs: dict[int, dict],
                 planned: list[int]) -> Path:
    per_seed = {seed: deltas(r["evaluation"]) for seed, r in runs.items()}
    result = {
        "bench": "crossover_seeds", "quick": args.quick, "seeds": seeds, "seeds_planned": planned,
        "complete": seeds == planned, "epochs": epochs, "lr": 5e-4,
        "data": "bundled sample" if args.quick else "ISEAR", "preset": "tiny" if args.quick else "small",
        "encoder": "frozen (cached sentence embeddings)", "candidates": list(CANDIDATES),
        "per_seed": {str(s): {"best_single_epoch": runs[s]["evaluation"]["best_single_epoch"],
                              "choices": runs[s]["evaluation"]["choices"],
                              "recommendation": runs[s]["evaluation"].get("recommendation"),
                              "selection_check": runs[s]["evaluation"].get("selection_check"),
                              "group_overfitting_epochs": runs[s].get("group_overfitting_epochs"),
                              "seconds": runs[s]["seconds"], "delta_vs_best_single": per_seed[s]}
                     for s in seeds},
        "summary": (overview := summary(per_seed)),
        "beat_best_single_beyond_ci_on_every_seed": {
            task: sorted(f"{name}/{metric}" for name, tasks in overview.items()
                         for metric, v in tasks.get(task, {}).items() if v["better_beyond_ci_every_seed"])
            for task in ("emotion", "intensity", "regret", "bentham", "surd")},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
    }
    return atomic_write_json(args.out / "crossover_seeds.json", result)


if __name__ == "__main__":
    main()
