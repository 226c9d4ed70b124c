"""LR sweep jobs (callbacks=sweep) compare epoch histories; they must not write checkpoints."""

from __future__ import annotations

from redheart.train import train

TINY = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=32", "data.progress=false",
        "data.max_samples=200", "trainer.max_epochs=1", "test=false")


def test_a_sweep_job_writes_no_checkpoint(compose_cfg, tmp_path):
    train(compose_cfg(*TINY, "callbacks=sweep"))
    run = tmp_path / "run"
    assert (run / "epoch_history.json").is_file()  # the job did train and record
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert not list(tmp_path.rglob("*.ckpt"))


def test_runs_show_no_lightning_advertisement(compose_cfg, caplog):
    with caplog.at_level("INFO"):
        train(compose_cfg(*TINY, "callbacks=sweep"))
    assert "Trainer" in caplog.text or caplog.records  # Lightning's info messages still arrive
    assert "💡" not in caplog.text
