"""The module tree: exact seed figures on the meta device, presets, every module real and learning."""

from __future__ import annotations

import hydra
import pytest
import torch

from redheart.model.dsp_kalman import DynamicKalmanFilter
from redheart.model.net import MODULE_TASKS, MODULE_TREE, PARAMETER_COUNT_GROUPS
from redheart.model.summary import ParameterCountError, build_on_meta, main, parameter_table, verify
from redheart.training.losses import multitask_loss

WEIGHTS = {"emotion": 1.0, "intensity": 0.5, "bentham": 1.0, "regret": 0.5, "surd": 0.5}


def make_batch(n: int = 8, dim: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch with every target present (masks all true)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "embedding": torch.randn(n, dim, generator=g),
        "label": torch.arange(n) % 7,
        "intensity": torch.rand(n, generator=g), "intensity_mask": torch.ones(n, dtype=torch.bool),
        "regret": torch.rand(n, generator=g), "regret_mask": torch.ones(n, dtype=torch.bool),
        "bentham": torch.rand(n, 10, generator=g), "bentham_mask": torch.ones(n, 10, dtype=torch.bool),
        "surd": torch.rand(n, 4, generator=g), "surd_mask": torch.ones(n, 4, dtype=torch.bool),
    }


@pytest.fixture
def tiny_net(compose_cfg):
    cfg = compose_cfg("model=tiny")
    torch.manual_seed(0)
    return hydra.utils.instantiate(cfg.model.net, input_dim=32)


def test_full_preset_has_exactly_the_seed_parameter_count_on_the_meta_device(compose_cfg):
    cfg = compose_cfg("model=full")
    net = build_on_meta(cfg.model.net)
    assert all(p.device.type == "meta" for p in net.parameters())
    table = parameter_table(net, dict(cfg.model.param_targets))
    assert table["total"]["actual"] == 730_466_848 and table["failures"] == []
    assert table["modules"]["backbone"]["actual"] == 90_624_132
    for prefix, row in table["modules"].items():
        assert abs(row["relative"]) <= 0.01, prefix
    assert table["groups"]["heads"]["actual"] == pytest.approx(153.1e6, rel=0.01)


def test_summary_cli_prints_the_table_and_fails_off_target(capsys):
    assert main(["model=full"]) == 0
    printed = capsys.readouterr().out
    assert "730,466,848" in printed and "NeuralRegretAnalyzer" in printed and "OFF" not in printed
    assert main(["model=full", "model.net.analyzers.neural_regret.depth=4"]) == 1
    assert "OFF" in capsys.readouterr().out


def test_a_preset_off_its_targets_is_a_clear_error(compose_cfg):
    cfg = compose_cfg("model=full", "model.net.backbone.layers=6")
    table = parameter_table(build_on_meta(cfg.model.net), dict(cfg.model.param_targets))
    expected = r"module backbone: 79,595,393 vs target 90,624,132 \(-12.17%\)"
    with pytest.raises(ParameterCountError, match=expected) as err:
        verify(table)
    assert "total" in str(err.value) and "group backbone" in str(err.value)


@pytest.mark.parametrize(("preset", "low", "high"), [("tiny", 50_000, 1_000_000), ("small", 2_000_000, 50_000_000)])
def test_smaller_presets_share_the_tree_and_fit_their_budget(compose_cfg, preset, low, high):
    full = build_on_meta(compose_cfg("model=full").model.net)
    net = build_on_meta(compose_cfg(f"model={preset}").model.net)
    assert low <= sum(p.numel() for p in net.parameters()) < high
    # same modules and parameter names everywhere: only shapes differ (depth-indexed layers aside)
    top = {n for n, _ in net.named_modules() if n.count(".") <= 1}
    assert top == {n for n, _ in full.named_modules() if n.count(".") <= 1}
    for prefix in MODULE_TREE:
        assert sum(p.numel() for p in net.get_submodule(prefix).parameters()) > 0, prefix


def test_outputs_have_the_task_shapes(tiny_net):
    out = tiny_net(make_batch(5)["embedding"])
    final = out["final"]
    assert final["emotion"].shape == (5, 7) and final["bentham"].shape == (5, 10) and final["surd"].shape == (5, 4)
    assert final["intensity"].shape == (5,) and final["regret"].shape == (5,)
    assert {name: tuple(preds) for name, preds in out["modules"].items()} == MODULE_TASKS
    assert out["emotion_variance"].shape == (5, 7) and (out["emotion_variance"] > 0).all()


def test_every_parameter_gets_a_gradient_and_one_step_changes_every_tensor(tiny_net):
    batch = make_batch()
    loss, _ = multitask_loss(tiny_net(batch["embedding"]), batch, WEIGHTS)
    loss.backward()
    dead = [n for n, p in tiny_net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []
    before = {n: p.detach().clone() for n, p in tiny_net.named_parameters()}
    torch.optim.AdamW(tiny_net.parameters(), lr=1e-3, weight_decay=0.0).step()
    unchanged = [n for n, p in tiny_net.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


@pytest.mark.parametrize("group", list(PARAMETER_COUNT_GROUPS))
def test_the_final_loss_depends_on_every_group(tiny_net, group):
    """Without deep supervision, the fused outputs alone still reach every group (modules outside the loss
    never learn)."""
    batch = make_batch()
    loss, _ = multitask_loss(tiny_net(batch["embedding"]), batch, WEIGHTS, deep_supervision=0.0)
    params = [p for n, p in tiny_net.named_parameters() if n.startswith(PARAMETER_COUNT_GROUPS[group])]
    grads = torch.autograd.grad(loss, params)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("task", ["label", "intensity", "regret", "bentham", "surd"])
def test_every_target_enters_the_loss_and_masked_targets_do_not(tiny_net, task):
    tiny_net.eval()
    batch = make_batch()
    out = tiny_net(batch["embedding"])
    loss, _ = multitask_loss(out, batch, WEIGHTS)
    changed = dict(batch)
    changed[task] = (batch[task] + 3) % 7 if task == "label" else 1 - batch[task]
    assert not torch.isclose(multitask_loss(out, changed, WEIGHTS)[0], loss)
    if task != "label":
        masked = dict(changed, **{f"{task}_mask": torch.zeros_like(batch[f"{task}_mask"])})
        unmasked_off = dict(batch, **{f"{task}_mask": torch.zeros_like(batch[f"{task}_mask"])})
        assert torch.isclose(multitask_loss(out, masked, WEIGHTS)[0], multitask_loss(out, unmasked_off, WEIGHTS)[0])


def test_a_task_with_no_targets_in_the_batch_adds_zero_and_keeps_gradients_defined(tiny_net):
    batch = make_batch()
    for task in ("intensity", "regret", "bentham", "surd"):
        batch[f"{task}_mask"] = torch.zeros_like(batch[f"{task}_mask"])
    loss, parts = multitask_loss(tiny_net(batch["embedding"]), batch, WEIGHTS)
    assert all(parts[f"final/{t}"] == 0 for t in ("intensity", "regret", "bentham", "surd"))
    loss.backward()
    assert all(p.grad is not None for p in tiny_net.parameters())


def test_kalman_filter_trusts_the_less_noisy_source():
    kalman = DynamicKalmanFilter(num_classes=3, sources=2, noise_hidden=4)
    with torch.no_grad():
        kalman.log_initial_variance.fill_(5.0)  # a vague prior
        kalman.log_observation_noise.copy_(torch.tensor([[-4.0] * 3, [4.0] * 3]))  # source 0 precise
    estimates = torch.tensor([[[2.0, 0.0, -1.0], [-3.0, 5.0, 0.0]]])
    fused, variance = kalman(estimates)
    assert torch.allclose(fused, estimates[:, 0], atol=0.05)
    assert (variance < 0.05).all()
    with torch.no_grad():
        kalman.log_observation_noise.copy_(torch.tensor([[4.0] * 3, [-4.0] * 3]))
    assert torch.allclose(kalman(estimates)[0], estimates[:, 1], atol=0.05)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_tree_runs_with_half_precision_weights(tiny_net, dtype):
    """DeepSpeed fp16/bf16 (trainer=gpu_8gb) casts every parameter; the Kalman filter still works in float32."""
    tiny_net = tiny_net.to(dtype)
    batch = make_batch()
    out = tiny_net(batch["embedding"].to(dtype))
    loss, _ = multitask_loss(out, batch, WEIGHTS)
    loss.backward()
    assert torch.isfinite(loss) and out["modules"]["analyzers.kalman"]["emotion"].dtype == torch.float32
