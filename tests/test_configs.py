"""The real Hydra config composes, its objects instantiate, and train(cfg) runs the data stage."""

from __future__ import annotations

import json
import subprocess
import sys

import hydra
import pytest
import torch
from lightning.pytorch import Trainer

from redheart.train import train
from tests.conftest import REPO_ROOT


def test_default_config_groups_instantiate(compose_cfg):
    cfg = compose_cfg()
    assert set(cfg) >= {"paths", "data", "optim", "trainer", "callbacks", "logger", "seed", "precision"}
    trainer = hydra.utils.instantiate(cfg.trainer)
    assert isinstance(trainer, Trainer) and trainer.max_epochs == 60
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = hydra.utils.instantiate(cfg.optim.optimizer)(params)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["lr"] == cfg.optim.lr
    scheduler = hydra.utils.instantiate(cfg.optim.scheduler)(optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)  # warm restarts (docs/design.md)
    assert (scheduler.T_0, scheduler.T_mult, scheduler.eta_min) == (10, 2, 1e-6)
    callbacks = [hydra.utils.instantiate(c) for c in cfg.callbacks.values()]
    assert callbacks and all(hasattr(c, "on_train_start") for c in callbacks)
    loggers = [hydra.utils.instantiate(c) for c in cfg.logger.values()]
    assert loggers[0].save_dir.startswith(cfg.paths.output_dir)


def test_command_line_overrides_reach_their_objects(compose_cfg):
    cfg = compose_cfg("optim.lr=5e-4", "precision=bf16-mixed", "trainer.max_epochs=4", "data.max_samples=300")
    assert hydra.utils.instantiate(cfg.optim.optimizer)([torch.nn.Parameter(torch.zeros(1))]).defaults["lr"] == 5e-4
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.max_epochs == 4
    assert cfg.data.max_samples == 300


@pytest.mark.parametrize("debug", ["default", "fdr", "limit", "overfit", "quick"])
def test_debug_configs_compose_onto_a_cpu_trainer(compose_cfg, debug):
    cfg = compose_cfg(f"debug={debug}")
    assert cfg.trainer.accelerator == "cpu" and cfg.task_name == "debug"
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs >= 1
    if debug == "fdr":
        assert trainer.fast_dev_run
    if debug == "quick":
        assert cfg.data.max_samples == 400


def test_isear_experiment_selects_the_table_adapter(compose_cfg):
    cfg = compose_cfg("experiment=isear")
    assert cfg.data.table.columns.text == "SIT" and cfg.data.on_invalid == "skip"
    assert cfg.data.path.endswith("shared/data/isear/isear.csv")


def test_train_runs_the_data_pipeline_on_the_sample(compose_cfg, tmp_path):
    cfg = compose_cfg("~model", "data.embedding.backend=hashing", "data.embedding.dim=32")
    metrics = train(cfg)
    assert "parameters" not in metrics  # no model: the data stage only
    counts = metrics["counts"]
    assert counts["read"] == counts["kept"] + counts["near_duplicates"] + counts["quarantined"]
    assert counts["quarantined"] == 12 and counts["near_duplicates"] >= 25  # the planted faults
    assert sum(metrics["split_sizes"].values()) == counts["kept"]
    assert metrics["first_batch"]["embedding"] == [cfg.data.batch_size, 32]
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["counts"] == counts


@pytest.mark.slow
def test_train_py_shim_runs_from_the_command_line(tmp_path):
    """The thin @hydra.main shim: a real process, the real config, output under hydra.run.dir."""
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "train.py", "data.embedding.backend=hashing", "data.max_samples=400", "model=tiny",
         "trainer.max_epochs=1", f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}",
         "data.progress=false"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report["counts"]["read"] == 400 and report["counts"]["reconciles"]
    assert (run_dir / ".hydra" / "config.yaml").exists() and "data ready" in (run_dir / "train.log").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and "test/emotion/f1" in metrics["test"]
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_train_py_reports_bad_data_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "fine", "label": 9}\n{"id": 2, "text": " ", "label": 0}\n')
    result = subprocess.run(
        [sys.executable, "train.py", "data=records", f"data.path={bad}", "data.embedding.backend=hashing",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "2 of 2 records are invalid" in output and "field 'label': is 9" in output and "Traceback" not in output


def _compose(config_name: str, *overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


PRESETS = sorted(p.stem for p in (REPO_ROOT / "conf" / "model").glob("*.yaml") if p.stem != "base")
EXPERIMENTS = [None] + sorted(p.stem for p in (REPO_ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_composed_experiment_names_the_same_module_groups_everywhere(preset, experiment):
    """conf/module_groups is the one list: training, analysis and crossover configs all name its groups."""
    from redheart.crossover.choices import RESERVED_KEYS

    overrides = [f"model={preset}"] + ([f"experiment={experiment}"] if experiment else [])
    train_groups = dict(_compose("train", *overrides).module_groups)
    analyze, combine = _compose("analyze"), _compose("combine")
    # `encoder` is a group only when encoder=finetune adds it; analysis and crossover always have its slot,
    # and analyze.py / combine.py take the groups of a run from its manifest
    default_groups = {g: p for g, p in train_groups.items() if g != "encoder"}
    every_group = {"encoder": ["encoder"], **default_groups}
    assert dict(analyze.module_groups) == dict(combine.module_groups) == default_groups
    analysis = analyze.analysis
    placed = [g for members in analysis.couplings.values() for g in members] + list(analysis.independent)
    assert sorted(placed) == sorted(every_group)  # each group in exactly one coupling or independent
    assert list(analysis.groups) == list(every_group)
    for cfg in (analyze, combine):
        assert [k for k in cfg.crossover if k not in RESERVED_KEYS] == list(every_group)
