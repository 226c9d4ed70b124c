"""`make demo` / `python -m redheart.demo`: the whole pipeline on the bundled sample, step by step.

1. data report (validation, dedup, split, embeddings)   python train.py '~model'
2. a short hierarchical LR sweep                        python train.py -m hydra/sweeper=hierarchical_lr ...
3. the main run with the chosen LR, 60 epochs,          python train.py optim.lr='${optimal_lr:<sweep>}'
   a modular checkpoint every 2 epochs
4. sweet spots, crossover, evaluation, final report     python analyze.py ckpt_dir=<run>

Each step is the same command a researcher would type (printed before it runs), so the demo shows
the entry points rather than hiding them; any step failing stops the demo with its exit code.
Extra `key=value` arguments go to every train.py step (e.g. `model=tiny trainer.max_epochs=4`);
`task_name=NAME` (default `demo`) names the output folder outputs/NAME/, and `paths.log_dir=DIR`
moves it to DIR/NAME/. `make isear` runs this same pipeline on ISEAR:
`python -m redheart.demo experiment=isear task_name=isear data.path=...`.

`sweep=full|short|off` (default full) sizes step 2: `short` sweeps 2 LRs for a third of one epoch each,
`off` skips it and trains with the configured LR. The fine-tuned encoder (`experiment=isear_finetune`,
`make isear-finetune`) uses `short`, on the encoder's LR (`sweep_param=optim.encoder.lr`): each of its
epochs costs minutes on 2 cores, where the frozen model's cost seconds.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from redheart.run_folder import ANALYSIS_DIR

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ["hydra/sweeper=hierarchical_lr", "callbacks=sweep", "hydra.sweeper.stages=2",
         "hydra.sweeper.points_per_stage=3", "trainer.max_epochs=3"]
SHORT_SWEEP = ["hydra/sweeper=hierarchical_lr", "callbacks=sweep", "hydra.sweeper.stages=1",
               "hydra.sweeper.points_per_stage=2", "trainer.max_epochs=1", "+trainer.limit_train_batches=0.34"]
DEMO_KEYS = ("sweep", "sweep_param", "sweep_range")  # the demo's own options, not passed to train.py


def step(title: str, args: list[str]) -> float:
    print(f"\n=== {title}\n$ python {' '.join(args)}\n", flush=True)
    start = time.monotonic()
    result = subprocess.run([sys.executable, *args], cwd=ROOT)
    if result.returncode != 0:
        print(f"\ndemo stopped: '{title}' exited with {result.returncode}", file=sys.stderr)
        raise SystemExit(result.returncode)
    return time.monotonic() - start


def override_of(args: list[str], key: str, default: str) -> str:
    """The value of `key=` among the arguments (the last one wins, as in Hydra), else `default`."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{key}=")]
    return values[-1] if values else default


def main(argv: list[str] | None = None) -> None:
    extra = list(sys.argv[1:] if argv is None else argv)
    task = override_of(extra, "task_name", "demo")
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    # train.py writes under paths.log_dir (conf/paths: <root>/outputs); the steps run in ROOT
    outputs = ROOT / override_of(extra, "paths.log_dir", "outputs") / task
    sweep_dir, run_name = outputs / "lr_sweeps" / stamp, stamp
    run_dir = outputs / "runs" / run_name
    sweep = override_of(extra, "sweep", "full")
    if sweep not in ("full", "short", "off"):
        print(f"error: sweep={sweep}: choose full, short or off", file=sys.stderr)
        raise SystemExit(2)
    param = override_of(extra, "sweep_param", "optim.lr")
    low_high = override_of(extra, "sweep_range", "")
    own_keys = ("task_name=", *(f"{k}=" for k in DEMO_KEYS))
    common = [f"task_name={task}", *(a for a in extra if not a.startswith(own_keys))]
    times = {"data report": step("1/4 data report", ["train.py", "~model", *common, f"run_name={stamp}_data"])}
    chosen = []
    if sweep != "off":
        plan = SWEEP if sweep == "full" else SHORT_SWEEP
        what = "2 stages x 3 LRs, 3 epochs each" if sweep == "full" else "2 LRs, a third of an epoch each"
        options = [f"hydra.sweeper.param={param}", f"lr_sweep.param={param}"] if param != "optim.lr" else []
        options += [f"hydra.sweeper.lr_range=[{low_high}]"] if low_high else []
        times["LR sweep"] = step(f"2/4 hierarchical LR sweep of {param} ({what})",
                                 ["train.py", "-m", *plan, *options, *common, f"hydra.sweep.dir={sweep_dir}"])
        chosen = [f"{param}=${{optimal_lr:{sweep_dir}}}"]
    times["main run"] = step("3/4 main run" + (" with the chosen LR" if chosen else ""),
                             ["train.py", *common, f"run_name={run_name}", *chosen])
    times |= {
        "analysis": step("4/4 sweet spots, crossover, evaluation", ["analyze.py", f"ckpt_dir={run_dir}"]),
    }
    results = run_dir / ANALYSIS_DIR
    # Wall times depend on the machine's load (threads contend on a shared machine): printed with it.
    print(f"\n=== elapsed time per stage (load average {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} CPUs)")
    for name, seconds in [*times.items(), ("total", sum(times.values()))]:
        print(f"{name:<12} {seconds:7.0f} s")
    print(f"\nfinal report     {results / 'final_report.md'}")
    print(f"sweet spots      {results / 'analysis_report.md'}")
    print(f"plots            {results / 'visualizations'}, {results / 'comparison.png'}, {sweep_dir / 'lr_curves.png'}")
    print(f"data report      {outputs / 'runs' / (stamp + '_data') / 'data_report.json'}")
    print(f"TensorBoard logs {run_dir / 'tensorboard'}")
    hint = "   (or: make tensorboard, for all of outputs/)" if outputs.parent == ROOT / "outputs" else ""
    print(f"view them with   {tensorboard_command()} --logdir {outputs}{hint}")


def tensorboard_command() -> str:
    """TensorBoard of this interpreter's environment: a bare `tensorboard` is not on PATH outside the venv."""
    script = Path(sys.executable).parent / "tensorboard"
    return shlex.quote(str(script)) if script.is_file() else f"{shlex.quote(sys.executable)} -m tensorboard.main"

if __name__ == "__main__":
    main()
