"""Sweet-spot analysis speed: 30 checkpoints of the full preset (goal: ≤ 10 s, no weight file opened).

    python bench/analysis_speed.py [--repeats 3] [--quick] [--out DIR]

The metrics files do not grow with the model, so a synthetic run folder stands in for a 730M run:
30 metrics files with the full preset's 9 module groups and a manifest whose 270 weight-file entries
carry the full preset's sizes (≈ 5.9 GB per checkpoint) but whose files do not exist. Measured:
1. `python analyze.py ckpt_dir=<run> combine=false` as a whole process (interpreter, Hydra, imports,
   analysis, report, 12 PNGs), `--repeats` times: what a user waits for (combine=false: the crossover
   needs the weight files, which this run does not have; it is measured by bench/crossover_memory.py);
2. in one process, each stage of analyze(cfg): load, analyse, report, plots.
--quick: one repeat on 10 checkpoints (CI checks that the bench still runs). Figures go to stdout and
<out>/analysis_speed.json (default bench/results/, with --quick bench/results/quick/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from redheart.analysis.synthetic import FULL_BYTES, Plan, write_run  # noqa: E402
from redheart.io import atomic_write_json  # noqa: E402


def stages(run: Path, out: Path) -> dict[str, float]:
    """Seconds per stage of analyze(cfg), in this process (imports already paid)."""
    from hydra import compose, initialize_config_dir

    from redheart.analysis.plots import write_plots
    from redheart.analysis.report import render_report
    from redheart.analysis.run_metrics import load_run
    from redheart.analysis.settings import parse_settings
    from redheart.analysis.sweet_spot import find_sweet_spots

    os.environ.setdefault("REDHEART_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=[f"ckpt_dir={run}", "combine=false"])
    times = {}
    t0 = time.perf_counter()
    settings = parse_settings(cfg.analysis)
    loaded = load_run(run)
    times["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = find_sweet_spots(loaded, settings)
    times["analyse_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    render_report(result)
    json.dumps(result)
    times["report_and_json_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_plots(result, out / "visualizations")
    times["plots_s"] = time.perf_counter() - t0
    return {k: round(v, 3) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat, 10 checkpoints: seconds, for CI")
    parser.add_argument("--out", type=Path, default=None, help="folder of the JSON (default bench/results/)")
    args = parser.parse_args()
    out_dir = args.out or ROOT / "bench" / "results" / ("quick" if args.quick else "")
    repeats, plan = (1, Plan(epochs=list(range(2, 22, 2)), plateau=(8, 14), overfit=14)) if args.quick else \
        (args.repeats, Plan())
    load = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    with tempfile.TemporaryDirectory() as tmp:
        run = write_run(Path(tmp) / "full_run", plan)
        assert not list(run.rglob("*.safetensors")), "the synthetic run must hold no weight file"
        walls = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, str(ROOT / "analyze.py"), f"ckpt_dir={run}", "combine=false"],
                                  cwd=tmp, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if proc.returncode:
                raise SystemExit(f"analyze.py failed:\n{proc.stdout}\n{proc.stderr}")
        pngs = len(list((run / "analysis_results" / "visualizations").glob("*.png")))
        parts = stages(run, Path(tmp) / "stages")
    results = {
        "command": "python bench/analysis_speed.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min_at_start": round(load, 2)},
        "checkpoints": len(plan.epochs), "groups": len(FULL_BYTES),
        "manifest_weight_bytes_per_checkpoint": sum(FULL_BYTES.values()), "weight_files_on_disk": 0,
        "pngs": pngs,
        "process_wall_s": [round(w, 2) for w in walls], "process_wall_median_s": round(statistics.median(walls), 2),
        "goal_s": 10.0, "goal_met": max(walls) <= 10.0,
        "stages_in_process": parts,
    }
    print(json.dumps(results, indent=2))
    out = atomic_write_json(out_dir / "analysis_speed.json", results)
    print(f"wrote {out}")

if __name__ == "__main__":
    main()
