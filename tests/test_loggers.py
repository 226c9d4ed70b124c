"""Every logger config (conf/logger/) composes and records a tiny epoch; none needs a network."""

from __future__ import annotations

import importlib.util

import pytest

from redheart.train import train

TINY = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=32", "data.progress=false",
        "data.max_samples=200", "trainer.max_epochs=1", "test=false", "callbacks=sweep")
# logger -> (package it needs, a file it must write under the run folder)
LOGGERS = {
    "tensorboard": ("tensorboard", "tensorboard/**/events.out.tfevents.*"),
    "csv": (None, "csv/metrics.csv"),
    "mlflow": ("mlflow", "mlflow.db"),
    "wandb": ("wandb", "wandb/offline-run-*/run-*.wandb"),
}


@pytest.mark.parametrize("name", list(LOGGERS))
def test_each_logger_records_a_tiny_epoch_offline(compose_cfg, tmp_path, monkeypatch, name):
    package, written = LOGGERS[name]
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (pip install -e '.[trackers]')")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))  # wandb's own cache and settings stay in the test folder
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    metrics = train(compose_cfg(*TINY, f"logger={name}"))
    assert metrics["epochs"] == 1
    assert list((tmp_path / "run").glob(written)), sorted(p.name for p in (tmp_path / "run").rglob("*"))[:40]
    if name == "mlflow":  # the store holds the run's metrics, not only an empty database
        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
        (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
        assert "val/loss" in run.data.metrics
