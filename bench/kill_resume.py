"""Kill and resume, >= 10 SIGKILLs of a real `train.py` process, each resumed with ckpt_path=last: timings.

    python bench/kill_resume.py [--seed 0] [--time-kills 4] [--workdir DIR] [--quick] [--out DIR]

The tiny deterministic run of tests/kill_harness.py (8 epochs, a modular and a resume checkpoint every
epoch) is killed once per moment of a seeded plan (`plan` there): inside the write of a modular
safetensors file, a metrics file, the manifest, epoch_history.json and the Lightning resume checkpoint
(temp file written, not renamed), inside Lightning's relink of last.ckpt, during start-up, at random
times in random epochs, and inside the final metrics.json write. After each kill every file and the
manifest are checked and the newest whole checkpoint must be at most one epoch behind; at the end the
weights, EMA weights and modular checkpoints must equal an uninterrupted run's. tests/test_kill_resume.py
runs the same plan (seed 0, 12 kills) in CI and asserts; this script is for the wall times, other seeds
and longer plans (--time-kills). --quick (CI): the first kill of the plan only. Figures go to stdout
and <out>/kill_resume.json (default bench/results/, with --quick bench/results/quick/); the exit status
is 1 when a check failed or fewer kills happened than planned (at least 10 without --quick).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # `tests.kill_harness`, `callbacks`

from redheart.io import atomic_write_json  # noqa: E402
from tests.kill_harness import KillResume, plan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-kills", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="one kill: tens of seconds, for CI")
    parser.add_argument("--out", type=Path, default=None, help="folder of the JSON (default bench/results/)")
    args = parser.parse_args()
    out_dir = args.out or ROOT / "bench" / "results" / ("quick" if args.quick else "")
    moments = plan(args.seed, 0)[:1] if args.quick else plan(args.seed, args.time_kills)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kill_resume_") as tmp:
        workdir = args.workdir or Path(tmp)
        harness = KillResume(workdir, seed=args.seed)
        start = time.monotonic()
        harness.run_reference()
        harness.run_killed(moments)
        harness.check_final()
        total = time.monotonic() - start
    result = {
        "command": " ".join(["python bench/kill_resume.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg()},
        "quick": args.quick, "seed": args.seed, "plan": [str(m) for m in moments],
        **harness.summary(),
        "max_epochs_lost": max((k["epochs_lost"] for k in harness.kills), default=None),
        "total_wall_s": round(total, 1),
        "passed": not harness.problems and len(harness.kills) >= (len(moments) if args.quick else 10),
    }
    out = atomic_write_json(out_dir / "kill_resume.json", result)
    for k in result["kills"]:
        at = "not killed" if k["killed_at_s"] is None else f"at {k['killed_at_s']:5.2f} s"
        print(f"kill {k['attempt']:2d} {k['moment']:<34} {at}"
              f" in {k['paused_in'] or '-':<38} finished {k['epochs_finished']},"
              f" resumes from {k['resumes_from_epoch']}, lost {k['epochs_lost']};"
              f" last.ckpt {k['last_ckpt']}; temp files left {len(k['temp_files_left'])}")
    print(f"{result['kill_count']} kills, max epochs lost {result['max_epochs_lost']}; reference run "
          f"{result['reference_wall_s']} s, killed run {result['killed_run_wall_s']} s over "
          f"{len(result['attempts'])} processes; total {result['total_wall_s']} s; load before {load_before}")
    print("problems:" if harness.problems else "no problems", *harness.problems, sep="\n  ")
    print(f"-> {out}")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
