"""CPU thread counts: the `threads` setting, OMP_NUM_THREADS, the process's cores, parallel sweep jobs,
and the per-worker value DataLoader workers really run with."""

from __future__ import annotations

import os

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from redheart.threads import available_cores, parallel_jobs, resolve_threads, worker_threads
from tests.conftest import compose_for


def test_an_explicit_setting_wins_over_the_environment_and_the_cores():
    assert resolve_threads(3, env={"OMP_NUM_THREADS": "1"}, cores=2) == (3, "threads setting")


def test_null_respects_omp_num_threads_then_the_cores_shared_by_parallel_jobs():
    assert resolve_threads(None, env={"OMP_NUM_THREADS": "2"}, cores=16, parallel_jobs=4) == (2, "OMP_NUM_THREADS")
    assert resolve_threads(None, env={}, cores=16)[0] == 16
    assert resolve_threads(None, env={"OMP_NUM_THREADS": " "}, cores=16, parallel_jobs=4)[0] == 4
    threads, source = resolve_threads(None, env={}, cores=2, parallel_jobs=2)  # 2 jobs on 2 cores: 1 each
    assert threads == 1 and source == "2 available cores / 2 parallel jobs"
    assert resolve_threads(None, env={}, cores=2, parallel_jobs=3)[0] == 1  # never 0


@pytest.mark.parametrize("bad", [0, -2, 1.5, "two", True])
def test_a_bad_count_is_refused_with_its_name(bad):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        resolve_threads(bad, env={})
    with pytest.raises(ValueError, match="OMP_NUM_THREADS must be a positive integer"):
        resolve_threads(None, env={"OMP_NUM_THREADS": str(bad)})


def test_available_cores_follows_the_process_affinity_not_the_machine():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    assert available_cores() == len(os.sched_getaffinity(0)) <= (os.cpu_count() or 1)


def test_parallel_jobs_come_from_the_joblib_launcher_in_a_multirun_only():
    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}
    assert parallel_jobs(OmegaConf.create({"mode": "RunMode.MULTIRUN", "launcher": joblib}), cores=8) == 2
    assert parallel_jobs(OmegaConf.create({"mode": "RunMode.MULTIRUN", "launcher": {**joblib, "n_jobs": -1}}),
                         cores=8) == 8
    assert parallel_jobs(OmegaConf.create({"mode": "RunMode.MULTIRUN", "launcher": {**joblib, "n_jobs": 32}}),
                         cores=8) == 8
    assert parallel_jobs(OmegaConf.create({"mode": "RunMode.RUN", "launcher": joblib}), cores=8) == 1
    basic = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
    assert parallel_jobs(OmegaConf.create({"mode": "RunMode.MULTIRUN", "launcher": basic}), cores=8) == 1
    assert parallel_jobs(None) == 1


def test_the_parallel_launcher_config_is_recognised(tmp_path):
    cfg = compose_for(tmp_path, "hydra/launcher=parallel")  # the job config holds no hydra node: build one
    launcher = OmegaConf.load(os.path.join(os.environ["REDHEART_ROOT"], "conf/hydra/launcher/parallel.yaml"))
    assert cfg.threads is None and launcher.n_jobs == 2
    hydra_like = OmegaConf.create({"mode": "RunMode.MULTIRUN", "launcher": {
        "_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": launcher.n_jobs}})
    assert resolve_threads(None, env={}, cores=2, parallel_jobs=parallel_jobs(hydra_like, cores=2))[0] == 1


def test_worker_threads_share_the_cores_the_training_threads_leave():
    assert worker_threads(2, 2, cores=2) == 1
    assert worker_threads(8, 4, cores=16) == 2
    assert worker_threads(1, 1, cores=4) == 3


class ThreadsSeen(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor(torch.get_num_threads())


def test_datamodule_workers_run_with_their_per_worker_value(tmp_path, monkeypatch):
    from redheart.data.datamodule import RedHeartDataModule
    from redheart.threads import init_worker

    monkeypatch.setattr("redheart.data.datamodule.worker_threads", lambda main, workers: 3)
    dm = RedHeartDataModule(path=str(tmp_path / "unused.jsonl"), embedding={"backend": "hashing", "dim": 8},
                            num_workers=2, batch_size=1, progress=False)
    dm.datasets = {"train": ThreadsSeen()}
    loader = dm.train_dataloader()
    assert loader.worker_init_fn.func is init_worker
    assert {int(x) for x in loader} == {3}  # torch alone would give each worker 1 thread
    plain = DataLoader(ThreadsSeen(), num_workers=2)
    assert {int(x) for x in plain} == {1}


@pytest.mark.slow
def test_train_py_with_a_bad_thread_count_exits_2_in_one_line(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    result = subprocess.run([sys.executable, "train.py", "threads=0", "~model", f"hydra.run.dir={tmp_path}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output and "ThreadsSettingError: threads must be a positive integer, got 0" in output
