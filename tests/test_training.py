"""The LightningModule and train(cfg): losses options, parameter groups, a real short fit, checkpoints."""

from __future__ import annotations

import json
import warnings

import hydra
import pytest
import torch

from redheart.model.summary import ParameterCountError
from redheart.schema import TaskSchema
from redheart.train import model_arguments, train
from redheart.training.lit_module import RedHeartLitModule
from redheart.training.losses import symmetric_kl
from redheart.training.metrics import TaskMetrics
from redheart.training.param_groups import parameter_groups
from tests.conftest import compose_for
from tests.test_model import make_batch

FAST = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64", "data.progress=false")


def tiny_module(compose_cfg, *overrides: str) -> RedHeartLitModule:
    cfg = compose_cfg("model=tiny", *overrides)
    torch.manual_seed(0)
    return RedHeartLitModule(**model_arguments(cfg, 32, TaskSchema()))


def test_layerwise_lr_decays_backbone_layers_and_scales_analyzers(compose_cfg):
    module = tiny_module(compose_cfg, "model.net.backbone.layers=3")
    layerwise = {"enabled": True, "backbone_decay": 0.5, "analyzer_scale": 0.7}
    groups = parameter_groups(module.net, lr=1e-3, weight_decay=0.01, layerwise=layerwise)
    named = {id(p): n for n, p in module.net.named_parameters()}
    scale_of = {named[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    assert len(scale_of) == len(named)  # every parameter in exactly one group
    assert scale_of["backbone.encoder.layers.2.linear1.weight"] == 0.5
    assert scale_of["backbone.encoder.layers.0.linear1.weight"] == 0.5**3
    assert scale_of["backbone.tokenize.0.weight"] == 0.5**4 and scale_of["backbone.norm.weight"] == 1.0
    assert scale_of["heads.exchange.gate.0.weight"] == 1.0 and scale_of["phase.empathy.net.0.weight"] == 1.0
    assert scale_of["analyzers.neural_emotion.output.weight"] == 0.7 and scale_of["analyzers.kalman.transition"] == 0.7
    for g in groups:
        assert g["lr"] == pytest.approx(1e-3 * g["lr_scale"])
        no_decay = {named[id(p)] for p in g["params"] if p.ndim < 2}
        assert not no_decay or g["weight_decay"] == 0.0
    flat = parameter_groups(module.net, lr=1e-3, weight_decay=0.01)
    assert {g["lr_scale"] for g in flat} == {1.0}


def test_optimizer_and_warm_restart_scheduler_come_from_config(compose_cfg):
    module = tiny_module(compose_cfg, "optim.lr=3e-4", "model.layerwise_lr.enabled=true")
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert max(g["lr"] for g in optimizer.param_groups) == pytest.approx(3e-4)
    assert min(g["lr"] for g in optimizer.param_groups) < 3e-4  # decayed backbone layers
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts) and scheduler.T_0 == 10


def test_symmetric_kl_is_zero_for_equal_and_positive_for_different_distributions():
    logits = torch.randn(4, 7)
    assert symmetric_kl(logits, logits) == pytest.approx(0.0, abs=1e-6)
    assert symmetric_kl(logits, logits.flip(-1)) > 0.01
    assert symmetric_kl(logits, logits.flip(-1)) == pytest.approx(float(symmetric_kl(logits.flip(-1), logits)))


def test_rdrop_adds_a_consistency_term_between_two_dropout_passes(compose_cfg):
    batch = make_batch()
    plain = tiny_module(compose_cfg, "model.net.dropout=0.3")
    rdrop = tiny_module(compose_cfg, "model.net.dropout=0.3", "model.rdrop.enabled=true", "model.rdrop.alpha=5.0")
    logged = {}
    rdrop.log = lambda name, value, **kw: logged.__setitem__(name, value)
    rdrop.log_dict = lambda values, **kw: logged.update(values)
    plain.log = rdrop.log
    plain.log_dict = lambda values, **kw: None
    rdrop.train(), plain.train()
    loss = rdrop.training_step(batch, 0)
    assert logged["train/loss/rdrop_kl"] > 0 and torch.isfinite(loss)
    torch.manual_seed(1)
    single = plain.training_step(batch, 0)
    assert not torch.isclose(loss, single)


def test_metrics_leave_out_tasks_without_targets_instead_of_logging_nan(compose_cfg):
    module = tiny_module(compose_cfg)
    metrics = TaskMetrics(7, 10, {"heads.emotion": ("emotion", "intensity"), "heads.bentham": ("bentham",)})
    batch = make_batch()
    for task in ("intensity", "regret", "bentham", "surd"):
        batch[f"{task}_mask"] = torch.zeros_like(batch[f"{task}_mask"])  # an ISEAR-like batch: labels only
    with torch.no_grad():
        metrics.update(module.net(batch["embedding"]), batch)
    values = metrics.compute()
    assert {"emotion/acc", "emotion/f1", "emotion/ece", "module/heads.emotion/emotion_f1"} <= set(values)
    assert not any(k.startswith(("intensity", "bentham", "regret", "surd")) for k in values)
    assert "module/heads.emotion/intensity_mae" not in values
    assert sum(map(sum, metrics.confusion_matrix())) == len(batch["label"])


def test_a_short_fit_on_the_sample_lowers_validation_loss(compose_cfg):
    cfg = compose_cfg(*FAST, "optim.lr=1e-3", "trainer.max_epochs=4")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    torch.manual_seed(0)
    model = RedHeartLitModule(**model_arguments(cfg, datamodule.embedding_dim, datamodule.schema))
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False,
                                      enable_progress_bar=False, enable_model_summary=False)
    before = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
    trainer.fit(model, datamodule=datamodule)
    after = {k: float(v) for k, v in trainer.callback_metrics.items()}
    # untrained ≈ ln 7 + regression terms; the margin is wide so this is not a flaky threshold
    assert after["val/loss"] < 0.8 * before["val/loss"]
    assert after["val/emotion/f1"] > before["val/emotion/f1"] + 0.15
    assert after["val/module/analyzers.neural_emotion/emotion_f1"] > 2 / 7  # a module learns on its own


def test_train_fits_tests_and_writes_a_checkpoint_that_loads_with_torch_defaults(compose_cfg, tmp_path):
    cfg = compose_cfg(*FAST, "trainer.max_epochs=2")
    metrics = train(cfg)
    run = tmp_path / "run"
    assert metrics["parameters"] == json.loads((run / "parameters.json").read_text())["total"]["actual"]
    assert metrics["epochs"] == 2 and "test/emotion/f1" in metrics["test"]
    assert sum(map(sum, metrics["test_confusion"])) == metrics["split_sizes"]["test"]
    assert json.loads((run / "metrics.json").read_text())["test"] == metrics["test"]
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu")  # torch's default: weights_only=True, no pickled code runs
    assert state["hyper_parameters"]["net"]["input_dim"] == 64 and state["global_step"] == metrics["steps"]
    reloaded = RedHeartLitModule.load_from_checkpoint(ckpt, map_location="cpu")
    fresh = RedHeartLitModule(**state["hyper_parameters"])
    fresh.load_state_dict(state["state_dict"])  # strict: every key present, none extra
    x = torch.randn(3, 64)
    reloaded.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(x)["final"]["emotion"], fresh(x)["final"]["emotion"])


def test_sixteen_bit_mixed_precision_runs_on_cpu_as_bf16(compose_cfg):
    cfg = compose_cfg(*FAST, "precision=16-mixed", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                      "+trainer.limit_val_batches=1", "test=false", "logger=none", "callbacks=none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(cfg)
    assert any("bf16-mixed" in str(w.message) for w in caught)
    assert metrics["fit"]["train/loss_epoch"] > 0


def test_train_stops_before_building_weights_when_the_full_preset_is_off(compose_cfg, tmp_path):
    cfg = compose_cfg(*FAST[1:], "model=full", "model.net.heads.width=512")
    with pytest.raises(ParameterCountError, match="heads"):
        train(cfg)
    table = json.loads((tmp_path / "run" / "parameters.json").read_text())
    assert "group heads" in table["failures"]


def test_the_same_seed_gives_the_same_run_and_another_seed_does_not(tmp_path):
    common = (*FAST, "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "logger=none", "callbacks=none",
              "trainer.deterministic=true")
    first = train(compose_for(tmp_path / "a", *common))["test"]
    again = train(compose_for(tmp_path / "b", *common))["test"]
    other = train(compose_for(tmp_path / "c", *common, "seed=7"))["test"]
    assert first == again
    assert first["test/loss"] != other["test/loss"]
