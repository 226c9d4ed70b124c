"""Epochs count from 1 everywhere: resume checkpoint names, modular folders, epoch_history, TensorBoard."""

from __future__ import annotations

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from redheart.train import train

TINY = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=32", "data.progress=false",
        "data.max_samples=200", "trainer.max_epochs=2", "test=false", "callbacks.modular_checkpoint.every_n_epochs=1",
        "trainer.log_every_n_steps=1", "callbacks.parameter_updates.every_n_steps=2")


def test_after_two_epochs_every_file_and_log_says_epoch_2(compose_cfg, tmp_path):
    cfg = compose_cfg(*TINY)
    metrics = train(cfg)
    run = tmp_path / "run"
    assert metrics["epochs"] == 2
    assert sorted(p.name for p in (run / "checkpoints").glob("resume-*.ckpt")) == ["resume-epoch=002.ckpt"]
    assert (run / "checkpoints" / "last.ckpt").resolve().name == "resume-epoch=002.ckpt"
    assert sorted(p.name for p in (run / "modular").glob("epoch_*") if p.is_dir()) == ["epoch_001", "epoch_002"]
    history = json.loads((run / "epoch_history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    (events,) = (run / "tensorboard").rglob("events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload().Scalars
    assert {e.value for e in scalars("epoch")} == {1.0, 2.0}
    val_steps = [e.step for e in scalars("val/loss")]
    epoch_at = {e.step: e.value for e in scalars("epoch")}
    assert [epoch_at[s] for s in val_steps] == [1.0, 2.0]  # the val loss of the first epoch is logged as epoch 1
    # the monitors hand their per-step values to the logger themselves, at the x of Lightning's own step values
    step_losses = [e.step for e in scalars("train/loss_step")]
    assert step_losses == list(range(6))  # 3 batches per epoch, every step logged
    for group in cfg.module_groups:
        assert [e.step for e in scalars(f"grad_norm/{group}")] == step_losses
    assert [e.step for e in scalars("param_update/backbone")] == [1, 3, 5]  # every 2nd optimizer step
