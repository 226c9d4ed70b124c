"""Crash and resume (after Lightning's test_ema_resume): crashes in epochs 1, 3 and 5, each resumed with
ckpt_path=last, end with the same weights, EMA weights and modular checkpoints as an uninterrupted run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from redheart.io import atomic_write_json
from redheart.train import train
from tests.conftest import compose_for
from tests.crash import SimulatedCrash

RUN = ("model=tiny", "model.net.dropout=0.2", "data.embedding.backend=hashing", "data.embedding.dim=64",
       "data.progress=false", "logger=none", "+trainer.enable_progress_bar=false", "test=false",
       "trainer.max_epochs=6", "trainer.deterministic=true", "+trainer.limit_train_batches=6",
       "+trainer.limit_val_batches=2")


def final_state(run: Path) -> tuple[dict, dict]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu")
    return ckpt["current_model_state"], ckpt["state_dict"]  # raw, EMA


def modular_tensors(run: Path) -> dict[int, dict[str, torch.Tensor]]:
    manifest = json.loads((run / "modular" / "manifest.json").read_text())
    out = {}
    for entry in manifest["checkpoints"]:
        out[entry["epoch"]] = {}
        for info in entry["files"].values():
            out[entry["epoch"]] |= load_file(run / "modular" / info["path"])
    return out


@pytest.mark.slow
def test_crashes_in_epochs_1_3_5_resume_to_the_uninterrupted_result(tmp_path):
    straight = tmp_path / "straight"
    train(compose_for(straight, *RUN))

    crashed = tmp_path / "crashed"
    for i, epoch in enumerate((1, 3, 5)):
        resume = ("ckpt_path=last",) if i else ()
        with pytest.raises(SimulatedCrash):
            train(compose_for(crashed, *RUN, *resume, "+callbacks.crash._target_=tests.crash.CrashAt",
                              f"+callbacks.crash.epoch={epoch}"))
    metrics = train(compose_for(crashed, *RUN, "ckpt_path=last"))
    assert metrics["epochs"] == 6

    raw_a, ema_a = final_state(straight / "run")
    raw_b, ema_b = final_state(crashed / "run")
    assert raw_a.keys() == raw_b.keys()
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)

    modular_a, modular_b = modular_tensors(straight / "run"), modular_tensors(crashed / "run")
    assert sorted(modular_b) == [2, 4, 6]  # none missing, none duplicated
    for epoch, tensors in modular_a.items():
        assert all(torch.equal(tensors[k], modular_b[epoch][k]) for k in tensors), epoch
    groups_a = json.loads((straight / "run" / "modular" / "metrics_epoch_006.json").read_text())["groups"]
    groups_b = json.loads((crashed / "run" / "modular" / "metrics_epoch_006.json").read_text())["groups"]
    for group, stats in groups_a.items():
        for key in ("grad_norm_mean", "grad_norm_max", "grad_steps", "update_ratio", "param_norm"):
            assert stats[key] == pytest.approx(groups_b[group][key], rel=1e-6), (group, key)
    # EpochHistory: every epoch once, in order, with the straight run's losses and gradient statistics
    history_a = json.loads((straight / "run" / "epoch_history.json").read_text())
    history_b = json.loads((crashed / "run" / "epoch_history.json").read_text())
    assert history_a["initial_param_sha256"] == history_b["initial_param_sha256"] is not None
    assert [r["epoch"] for r in history_b["epochs"]] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(history_a["epochs"], history_b["epochs"], strict=True):
        for key in ("train_loss", "val_loss", "lr", "efficiency", "stability"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), (a["epoch"], key)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-6)
    # the modular metrics carry the same epoch's train loss as the epoch records (not the previous epoch's)
    for epoch in (2, 4, 6):
        modular = json.loads((crashed / "run" / "modular" / f"metrics_epoch_{epoch:03d}.json").read_text())
        assert modular["train_loss"] == pytest.approx(history_b["epochs"][epoch - 1]["train_loss"], rel=1e-6)


def test_a_kill_during_a_write_leaves_no_file_that_looks_valid(tmp_path, monkeypatch):
    """The rename is the commit: killed before it, neither the target nor a stale temp name remains."""
    target = tmp_path / "manifest.json"
    atomic_write_json(target, {"version": 1})

    def killed(src, dst):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(target, {"version": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_lightning_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    from callbacks.atomic_checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    real_save = torch.save

    def dies_halfway(obj, f):
        real_save({"partial": True}, f)
        raise KeyboardInterrupt("killed during torch.save")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["state_dict"]["w"], torch.ones(3))  # the old, whole checkpoint
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """mkstemp creates 0600 files; results must be readable like any file the user creates."""
    from redheart.io import FILE_MODE

    path = atomic_write_json(tmp_path / "result.json", {"ok": True})
    assert path.stat().st_mode & 0o777 == FILE_MODE
