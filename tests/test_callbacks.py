"""Callbacks on real (tiny) training runs: modular checkpoints with EMA, monitors, OOM back-off."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from torch import nn

from callbacks.dead_units import DeadUnitMonitor
from callbacks.module_groups import ModuleGroups
from callbacks.oom_backoff import OOMBackoffError
from redheart.io import sha256_file
from redheart.train import ResumeError, train
from redheart.training.lit_module import RedHeartLitModule

FAST = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64", "data.progress=false",
        "logger=none", "+trainer.enable_progress_bar=false", "test=false")


def read_group_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:  # safetensors: no pickle, nothing executed
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118 (safe_open is not iterable)


@pytest.fixture(scope="module")
def four_epoch_run(tmp_path_factory):
    """One tiny run of 4 epochs with the default callbacks; shared by the tests that only read it."""
    from tests.conftest import REPO_ROOT, compose_for

    tmp = tmp_path_factory.mktemp("run4")
    cfg = compose_for(tmp, *FAST, "trainer.max_epochs=4", "callbacks.modular_checkpoint.weights=both")
    metrics = train(cfg)
    return SimpleNamespace(dir=tmp / "run", cfg=cfg, metrics=metrics, root=REPO_ROOT)


def test_modular_checkpoints_every_two_epochs_hold_each_group_raw_and_ema(four_epoch_run):
    modular = four_epoch_run.dir / "modular"
    manifest = json.loads((modular / "manifest.json").read_text())
    assert [c["epoch"] for c in manifest["checkpoints"]] == [2, 4]
    groups = four_epoch_run.cfg.module_groups
    resume = torch.load(four_epoch_run.dir / "checkpoints" / "last.ckpt", map_location="cpu")
    assert resume["epoch"] == 3  # the resume checkpoint of the 4th epoch: same moment as modular epoch 4
    raw_model = {k[4:]: v for k, v in resume["current_model_state"].items()}  # EMA puts raw weights here
    ema_model = {k[4:]: v for k, v in resume["state_dict"].items()}
    seen: set[str] = set()
    for group in groups:
        entry = manifest["checkpoints"][1]["files"][group]
        path = modular / entry["path"]
        assert entry["bytes"] == path.stat().st_size and entry["sha256"] == sha256_file(path)
        tensors, meta = read_group_file(path)
        assert meta["epoch"] == "4" and meta["group"] == group and meta["ema"] == "true"
        raw = {k[4:]: v for k, v in tensors.items() if k.startswith("raw/")}
        ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema/")}
        assert set(raw) == set(ema) and len(raw) + len(ema) == len(tensors)
        assert all(ModuleGroups(groups).group_of(n) == group for n in raw)
        for name in raw:
            assert torch.equal(raw[name], raw_model[name]) and torch.equal(ema[name], ema_model[name])
        assert any(not torch.equal(raw[n], ema[n]) for n in raw)  # EMA really differs from the raw weights
        seen |= set(raw)
    assert seen == set(raw_model)  # every parameter in exactly one group file


def test_metrics_files_carry_what_the_analysis_needs(four_epoch_run):
    metrics = json.loads((four_epoch_run.dir / "modular" / "metrics_epoch_004.json").read_text())
    assert metrics["epoch"] == 4 and metrics["weights_evaluated"] == "ema"
    assert metrics["val_loss"] == metrics["val"]["loss"] and metrics["train_loss"] > 0 and metrics["lr"]
    assert {"emotion/f1", "emotion/acc", "bentham/rmse", "regret/mae", "surd/mae"} <= set(metrics["val"])
    assert "emotion_f1" in metrics["modules"]["analyzers.neural_emotion"]
    assert metrics["wall_time_s"] > 0 and metrics["peak_rss_bytes"] > 10**7
    steps_per_epoch = four_epoch_run.metrics["steps"] // 4
    for group, stats in metrics["groups"].items():
        assert stats["grad_steps"] == 2 * steps_per_epoch, group  # the 2-epoch interval
        assert 0 < stats["grad_norm_mean"] <= stats["grad_norm_max"]
        assert 0 < stats["update_ratio"] < 1 and stats["param_norm"] > 0
        assert 0 <= stats["dead_unit_fraction"] <= 1


def test_the_run_folder_describes_itself(four_epoch_run):
    run = json.loads((four_epoch_run.dir / "run.json").read_text())
    assert run["config"]["model"]["net"]["backbone"]["dim"] == 32 and run["config"]["seed"] == 42
    assert run["parameters"]["total"]["actual"] == four_epoch_run.metrics["parameters"]
    assert run["git_commit"] is None or len(run["git_commit"]) >= 40


def test_bf16_storage_halves_the_files(compose_cfg, tmp_path):
    train(compose_cfg(*FAST, "trainer.max_epochs=2", "callbacks.modular_checkpoint.dtype=bfloat16",
                      "~callbacks.ema"))
    manifest = json.loads((tmp_path / "run" / "modular" / "manifest.json").read_text())
    entry = manifest["checkpoints"][0]
    tensors, meta = read_group_file(tmp_path / "run" / "modular" / entry["files"]["backbone"]["path"])
    assert meta["dtype"] == "bfloat16" and meta["ema"] == "false"
    assert all(t.dtype == torch.bfloat16 for t in tensors.values()) and all(k.startswith("raw/") for k in tensors)


def test_module_groups_reject_unclaimed_parameters_and_shared_prefixes():
    with pytest.raises(ValueError, match=r"2 parameters belong to no module group: b\.weight, b\.bias"):
        net = nn.ModuleDict({"a": nn.Linear(1, 1), "b": nn.Linear(1, 1)})
        ModuleGroups({"a": ["a"]}).partition(net.named_parameters())
    with pytest.raises(ValueError, match="in both module_groups.x and .y"):
        ModuleGroups({"x": ["a"], "y": ["a"]})
    assert ModuleGroups({"g": ["analyzers.dsp"]}).group_of("analyzers.dsp_extra.w") is None  # whole names only


def test_dead_unit_fraction_counts_units_never_positive():
    net = nn.Sequential(nn.Linear(2, 4), nn.GELU())
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.tensor([-1.0, 1.0, -2.0, 0.5]))  # units 0 and 2 never positive
    module = SimpleNamespace(net=net, log_dict=lambda *a, **k: None)
    monitor = DeadUnitMonitor({"all": ["0", "1"]})
    trainer = SimpleNamespace(sanity_checking=False)
    monitor.on_validation_epoch_start(trainer, module)
    net(torch.randn(16, 2))
    monitor.on_validation_epoch_end(trainer, module)
    assert monitor.last == {"all": 0.5}
    net(torch.randn(4, 2))  # hooks are gone after validation: training pays nothing
    assert monitor._handles == []


def test_parameter_update_monitor_names_a_frozen_module(compose_cfg, monkeypatch):
    cfg = compose_cfg(*FAST, "trainer.max_epochs=1", "callbacks.parameter_updates.every_n_steps=5",
                      "+trainer.limit_train_batches=12", "+trainer.limit_val_batches=1")
    original = RedHeartLitModule.configure_optimizers

    def freeze_empathy(self):
        for p in self.net.phase.empathy.parameters():
            p.requires_grad_(False)
        return original(self)

    monkeypatch.setattr(RedHeartLitModule, "configure_optimizers", freeze_empathy)
    with pytest.warns(UserWarning, match=r"did not change in steps 0-5: phase\.empathy$"):
        train(cfg)


def test_gradient_norms_are_taken_before_clipping(compose_cfg, tmp_path):
    cfg = compose_cfg(*FAST, "trainer.max_epochs=2", "trainer.gradient_clip_val=0.001", "~callbacks.ema")
    train(cfg)
    stats = json.loads((tmp_path / "run" / "modular" / "metrics_epoch_002.json").read_text())["groups"]
    total = sum(s["grad_norm_mean"] ** 2 for s in stats.values()) ** 0.5
    assert total > 0.01  # clipped gradients would have a total norm of at most 0.001


def fail_when_batch_larger_than(monkeypatch, limit: int) -> None:
    """Make training_step raise CUDA's OOM error (the real exception type) for batches above `limit`."""
    original = RedHeartLitModule.training_step

    def training_step(self, batch, batch_idx):
        if len(batch["label"]) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(RedHeartLitModule, "training_step", training_step)


def test_oom_halves_the_micro_batch_and_doubles_accumulation(compose_cfg, tmp_path, monkeypatch):
    cfg = compose_cfg(*FAST, "trainer.max_epochs=2", "data.batch_size=64")
    fail_when_batch_larger_than(monkeypatch, 16)
    metrics = train(cfg)
    stats = json.loads((tmp_path / "run" / "oom_stats.json").read_text())
    assert [(s["batch_size"], s["accumulate_grad_batches"]) for s in stats] == [(64, 1), (32, 2)]
    assert stats[-1]["action"] == {"batch_size": 16, "accumulate_grad_batches": 4}  # effective batch stays 64
    assert stats[0]["global_step"] == 0 and "simulated" in stats[0]["error"]
    assert metrics["epochs"] == 2 and metrics["steps"] == 2 * 20  # 1,240 records / 64 per optimizer step


def test_oom_below_a_micro_batch_of_one_stops_with_a_clear_message(compose_cfg, tmp_path, monkeypatch):
    cfg = compose_cfg(*FAST, "trainer.max_epochs=1", "data.batch_size=4")
    fail_when_batch_larger_than(monkeypatch, 0)
    with pytest.raises(OOMBackoffError, match=r"micro-batch 1 × accumulation 4, after 2 back-offs"):
        train(cfg)
    assert json.loads((tmp_path / "run" / "oom_stats.json").read_text())[-1]["action"] == "stop"


def test_a_fresh_run_never_reuses_a_run_folder_and_last_must_exist(compose_cfg, tmp_path):
    cfg = compose_cfg(*FAST, "trainer.max_epochs=1")
    with pytest.raises(ResumeError, match="ckpt_path=last, but there is no run in .*run_name"):
        train(compose_cfg(*FAST, "ckpt_path=last"))
    train(cfg)
    with pytest.raises(ResumeError, match="already holds a run .*resume it with ckpt_path=last"):
        train(cfg)
