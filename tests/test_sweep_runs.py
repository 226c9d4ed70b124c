"""LR sweeps end to end: the hierarchical sweeper's stage logic on a cheap task (tests/sweep_app), the
joblib launcher, then real tiny runs of train.py: a plain multirun, the hierarchical sweeper and Optuna
(pruning, resume)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from omegaconf import OmegaConf

from redheart.sweep.cumulative import CumulativeResults
from redheart.sweep.optimal import register_resolver
from tests.conftest import REPO_ROOT, compose_for
from tests.sweep_app.app import OPTIMUM

APP = REPO_ROOT / "tests" / "sweep_app" / "app.py"
TINY = ["model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64", "data.progress=false",
        "data.max_samples=400", "trainer.max_epochs=1", "callbacks.modular_checkpoint.every_n_epochs=1"]


def multirun(script: Path, sweep_dir: Path, *overrides: str, expect: int = 0) -> str:
    result = subprocess.run([sys.executable, str(script), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == expect, output[-3000:]
    return output


def launched(sweep_dir: Path) -> list[float]:
    return [float(x) for x in (sweep_dir / "runs.log").read_text().split()]


def png_shape(path: Path) -> tuple[int, ...]:
    return matplotlib.image.imread(path).shape


def test_hierarchical_sweeper_runs_five_stages_of_five_reusing_points_and_keeping_gaps(tmp_path):
    first = tmp_path / "first"
    multirun(APP, first, "hydra/sweeper=hierarchical_lr", "fail_above=4e-4")
    stages = json.loads((first / "stages.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == [0, 1, 2, 3, 4] and all(len(s["planned"]) == 5 for s in stages)
    ran = launched(first)
    assert len(ran) == len(set(ran)), "an LR was run twice"
    planned_new = [p["lr"] for s in stages for p in s["planned"] if not (p["reused"] or p["skipped"])]
    assert sorted(ran) == sorted(planned_new)
    assert all(s["planned"][2]["reused"] for s in stages[1:])  # each later stage is centred on a tested LR
    ordered = sorted(ran)
    assert all(b / a >= 1.1 * (1 - 1e-9) for a, b in zip(ordered, ordered[1:], strict=False))
    for s in stages[1:]:  # narrowing around the best so far
        assert s["range"][0] < s["centre"] < s["range"][1]
    widths = [math.log(s["range"][1] / s["range"][0]) for s in stages]
    assert all(b < a for a, b in zip(widths, widths[1:], strict=False))
    for s, stage in enumerate(stages):  # job folders stage{s}/{i}, one per launched LR
        dirs = sorted(p.name for p in (first / f"stage{s}").iterdir()) if (first / f"stage{s}").exists() else []
        expected = [str(i) for i, p in enumerate(stage["planned"]) if not (p["reused"] or p["skipped"])]
        assert dirs == expected
        assert png_shape(first / f"stage{s}_scores.png")[0] > 100
    entries = CumulativeResults(first / "lr_sweep_cumulative.json").read()
    failed = [e for e in entries if e["status"] == "failed"]
    assert [e["lr"] for e in failed] == [pytest.approx(5e-4)] and "diverged" in failed[0]["error"]
    optimal = json.loads((first / "optimal_lr.json").read_text())
    assert max(optimal["lr"], OPTIMUM) / min(optimal["lr"], OPTIMUM) < 1.1
    assert optimal["unscored"][0]["lr"] == pytest.approx(5e-4)

    # A second sweep sharing the cumulative file reuses every earlier point instead of re-running it.
    second = tmp_path / "second"
    multirun(APP, second, "hydra/sweeper=hierarchical_lr", "fail_above=4e-4",
             f"lr_sweep.cumulative_file={first / 'lr_sweep_cumulative.json'}")
    again = launched(second) if (second / "runs.log").exists() else []
    assert not set(again) & set(ran)
    stage0 = json.loads((second / "stages.json").read_text())["stages"][0]
    assert all(p["reused"] for p in stage0["planned"])
    assert len(CumulativeResults(first / "lr_sweep_cumulative.json").read()) == len(ran) + len(again)


def test_joblib_workers_record_through_the_file(tmp_path):
    sweep = tmp_path / "sweep"
    multirun(APP, sweep, "hydra/launcher=parallel", "optim.lr=1e-5,1e-4,1e-3,3e-3")
    entries = CumulativeResults(sweep / "lr_sweep_cumulative.json").read()
    assert sorted(e["lr"] for e in entries) == [1e-5, 1e-4, 1e-3, 3e-3]
    assert {e["job_dir"] for e in entries} == {str((sweep / str(i)).resolve()) for i in range(4)}
    assert json.loads((sweep / "optimal_lr.json").read_text())["lr"] == 1e-4


@pytest.mark.slow
def test_plain_multirun_of_train_py_starts_every_job_from_the_same_weights(tmp_path):
    sweep = tmp_path / "sweep"
    multirun(REPO_ROOT / "train.py", sweep, *TINY, "trainer.max_epochs=2", "optim.lr=1e-4,2e-3",
             f"data.cache_dir={tmp_path / 'cache'}")
    entries = sorted(CumulativeResults(sweep / "lr_sweep_cumulative.json").read(), key=lambda e: e["lr"])
    assert [e["lr"] for e in entries] == [1e-4, 2e-3] and all(e["status"] == "completed" for e in entries)
    assert entries[0]["initial_param_sha256"] == entries[1]["initial_param_sha256"] is not None
    assert entries[0]["signature"] == entries[1]["signature"]
    for e in entries:
        assert [r["epoch"] for r in e["epochs"]] == [1, 2]
        record = e["epochs"][-1]
        assert record["lr"] <= e["lr"] and record["val_loss"] > 0 and record["train_loss"] > 0
        assert record["grad_norm"]["steps"] > 0 and record["grad_norm"]["max"] >= record["grad_norm"]["mean"] > 0
        assert 0 < record["stability"] <= 1 and record["time_s"] > 0 and "f1" in record["val"]
    # the larger LR moves the weights further: the runs differ after the same start
    assert entries[0]["epochs"][-1]["val_loss"] != entries[1]["epochs"][-1]["val_loss"]
    optimal = json.loads((sweep / "optimal_lr.json").read_text())
    assert optimal["lr"] in (1e-4, 2e-3) and len(optimal["scores"]) == 2 and optimal["reason"]
    assert png_shape(sweep / "lr_curves.png")[1] > 500
    # the main run picks the chosen LR up through the resolver
    register_resolver()
    cfg = compose_for(tmp_path, f"optim.lr=${{optimal_lr:{sweep / 'optimal_lr.json'}}}")
    assert OmegaConf.to_container(cfg.optim.optimizer, resolve=True)["lr"] == optimal["lr"]


@pytest.mark.slow
def test_hierarchical_sweeper_drives_real_training_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    multirun(REPO_ROOT / "train.py", sweep, *TINY, "hydra/sweeper=hierarchical_lr", "hydra.sweeper.stages=2",
             "hydra.sweeper.points_per_stage=3", f"data.cache_dir={tmp_path / 'cache'}")
    entries = CumulativeResults(sweep / "lr_sweep_cumulative.json").read()
    assert sorted({e["stage"] for e in entries}) == [0, 1] and len(entries) == 5  # 3 + 3 with the centre reused
    assert len({e["initial_param_sha256"] for e in entries}) == 1
    assert all((Path(e["job_dir"]) / "modular" / "manifest.json").is_file() for e in entries)
    assert json.loads((sweep / "optimal_lr.json").read_text())["lr"] in [e["lr"] for e in entries]


def test_hierarchical_stages_go_through_submitit_and_the_slurm_config_composes(tmp_path):
    """submitit's local executor runs each job in its own process, as SLURM would; only the executor differs."""
    sweep = tmp_path / "sweep"
    multirun(APP, sweep, "hydra/sweeper=hierarchical_lr", "hydra/launcher=submitit_local", "hydra.sweeper.stages=2",
             "hydra.sweeper.points_per_stage=3")
    entries = CumulativeResults(sweep / "lr_sweep_cumulative.json").read()
    assert sorted(e["stage"] for e in entries) == [0, 0, 0, 1, 1]
    assert list((sweep / ".submitit").iterdir())  # the jobs really went through submitit
    result = subprocess.run([sys.executable, "train.py", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                             "--cfg", "hydra", "--package", "hydra.launcher"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    launcher = OmegaConf.create(result.stdout)
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu" and launcher.gpus_per_node == 1


@pytest.mark.slow
def test_optuna_sweep_prunes_a_bad_trial_and_resumes_its_sqlite_study(tmp_path):
    import optuna

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    storage = f"sqlite:///{sweep / 'optuna.db'}"  # where the sweeper keeps its study by default
    # Arranged: trial 0 a good LR, trial 1 one 50x smaller, which after its first epoch is worse than
    # trial 0 was then, so the median pruner (active after 1 finished trial, from epoch 0) stops it.
    seeded = optuna.create_study(study_name="lr", storage=storage, direction="minimize")
    seeded.enqueue_trial({"optim.lr": 5e-4})
    seeded.enqueue_trial({"optim.lr": 1e-5})
    args = [*TINY, "experiment=lr_optuna", "trainer.max_epochs=2", f"data.cache_dir={tmp_path / 'cache'}",
            "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0"]
    multirun(REPO_ROOT / "train.py", sweep, *args, "hydra.sweeper.n_trials=2")
    trials = optuna.load_study(study_name="lr", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    assert trials[1].last_step == 0 and trials[1].params["optim.lr"] == 1e-5
    assert sorted(trials[1].intermediate_values) == [0] and sorted(trials[0].intermediate_values) == [0, 1]
    assert not (sweep / "trial1" / "metrics.json").exists()  # stopped after epoch 0, never tested
    entries = {e["lr"]: e for e in CumulativeResults(sweep / "lr_sweep_cumulative.json").read()}
    assert entries[5e-4]["status"] == "completed" and "TrialPruned" in entries[1e-5]["error"]
    results = json.loads((sweep / "optuna_results.json").read_text())
    assert results["best"]["number"] == 0 and results["best"]["value"] == pytest.approx(trials[0].value)

    # The same sweep folder again: the study goes on from trial 2 (TPE sees trials 0 and 1).
    multirun(REPO_ROOT / "train.py", sweep, *args, "hydra.sweeper.n_trials=3")
    trials = optuna.load_study(study_name="lr", storage=storage).trials
    assert [t.number for t in trials] == [0, 1, 2] and trials[2].state.name in ("COMPLETE", "PRUNED")
    assert 1e-5 <= trials[2].params["optim.lr"] <= 5e-4 and (sweep / "trial2" / ".hydra").is_dir()
    assert len(CumulativeResults(sweep / "lr_sweep_cumulative.json").read()) == 3
    # Nothing left to do: a third run with the same n_trials launches no job.
    multirun(REPO_ROOT / "train.py", sweep, *args, "hydra.sweeper.n_trials=3")
    assert len(optuna.load_study(study_name="lr", storage=storage).trials) == 3


@pytest.mark.slow
def test_optuna_sweeper_runs_parallel_trials_through_joblib_and_tops_up_on_a_rerun(tmp_path):
    import optuna

    sweep = tmp_path / "sweep"
    args = ["hydra/sweeper=optuna", "hydra/launcher=parallel", "hydra.sweeper.n_jobs=2", "hydra.sweeper.seed=0",
            "+hydra.sweeper.params={optim.lr: 'tag(log, interval(1e-5, 1e-3))'}"]
    multirun(APP, sweep, *args, "hydra.sweeper.n_trials=4")
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    trials = optuna.load_study(study_name="lr", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert sorted(launched(sweep)) == sorted(t.params["optim.lr"] for t in trials)
    assert {p.name for p in sweep.glob("trial*")} == {"trial0", "trial1", "trial2", "trial3"}
    results = json.loads((sweep / "optuna_results.json").read_text())
    assert results["best"]["value"] == min(t.value for t in trials)
    multirun(APP, sweep, *args, "hydra.sweeper.n_trials=6")  # two more, numbered on
    trials = optuna.load_study(study_name="lr", storage=storage).trials
    assert [t.number for t in trials] == list(range(6)) and len(launched(sweep)) == 6
    assert len(CumulativeResults(sweep / "lr_sweep_cumulative.json").read()) == 6
