"""Each stateful callback resumes as it left off: state_dict → a checkpoint file (weights_only load, as a
resume reads it) → load_state_dict on a fresh instance gives the same state and the same next result."""

from __future__ import annotations

import io
import random

import torch
from torch import nn

from callbacks.epoch_history import EpochHistory
from callbacks.gradient_norms import GradientNormMonitor
from callbacks.modular_checkpoint import ModularCheckpoint
from callbacks.param_sampling import ParameterSampler
from callbacks.parameter_updates import ParameterUpdateMonitor
from callbacks.rng_state import RNGStateCheckpoint

GROUPS = {"a": ["a"], "b": ["b"]}


def through_a_checkpoint(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save({"callback": state}, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)["callback"]


def test_gradient_norm_interval_resumes():
    before = GradientNormMonitor(GROUPS)
    before.interval = {"a": {"sum": 3.0, "max": 2.0, "steps": 2}, "b": {"sum": 1.0, "max": 1.0, "steps": 2}}
    after = GradientNormMonitor(GROUPS)
    after.load_state_dict(through_a_checkpoint(before.state_dict()))
    assert after.take_interval() == before.take_interval() == {"a": {"mean": 1.5, "max": 2.0, "steps": 2},
                                                               "b": {"mean": 0.5, "max": 1.0, "steps": 2}}


def test_epoch_history_resumes_with_its_records_and_initial_hash(tmp_path):
    before = EpochHistory(str(tmp_path))
    before.records = [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.5}]
    before.initial_sha256 = "ab" * 32
    after = EpochHistory(str(tmp_path))
    after.load_state_dict(through_a_checkpoint(before.state_dict()))
    assert after.state_dict() == before.state_dict()
    after.records.append({"epoch": 3})
    assert len(before.records) == 2  # a copy, not shared


def test_modular_checkpoint_resumes_its_saved_epochs_and_update_snapshot(tmp_path):
    torch.manual_seed(0)
    net = nn.ModuleDict({"a": nn.Linear(4, 3), "b": nn.Linear(3, 2)})
    sampler = ParameterSampler(dict(net.named_parameters()))
    before = ModularCheckpoint(str(tmp_path), GROUPS)
    before.load_state_dict({"saved_epochs": [2, 4], **_split(sampler.snapshot())})  # as after the save of epoch 4
    after = ModularCheckpoint(str(tmp_path), GROUPS)
    after.load_state_dict(through_a_checkpoint(before.state_dict()))
    resumed, original = after.state_dict(), before.state_dict()
    assert resumed["saved_epochs"] == original["saved_epochs"] == [2, 4]  # epoch 4 is not saved twice
    assert resumed["checksums"] == original["checksums"]
    assert all(torch.equal(resumed["samples"][n], v) for n, v in original["samples"].items())  # same update ratios


def _split(snapshot: dict) -> dict:
    return {"samples": {n: v[0] for n, v in snapshot.items()}, "checksums": {n: v[1] for n, v in snapshot.items()}}


def test_parameter_update_monitor_resumes_its_last_ratios():
    before = ParameterUpdateMonitor(every_n_steps=5)
    before.last_ratios = {"backbone": 0.01, "heads": 0.02}
    after = ParameterUpdateMonitor(every_n_steps=5)
    after.load_state_dict(through_a_checkpoint(before.state_dict()))
    assert after.last_ratios == before.last_ratios


def test_rng_state_resumes_the_same_draws():
    callback = RNGStateCheckpoint()
    state = through_a_checkpoint(callback.state_dict())
    expected = (torch.rand(4), random.random())
    torch.manual_seed(123)
    random.seed(123)
    RNGStateCheckpoint().load_state_dict(state)
    drawn = (torch.rand(4), random.random())
    assert torch.equal(drawn[0], expected[0]) and drawn[1] == expected[1]


def test_a_parameter_snapshot_samples_the_drawn_positions_and_is_not_changed_by_training():
    torch.manual_seed(0)
    weights = {"big": nn.Parameter(torch.randn(100, 100)), "small": nn.Parameter(torch.randn(5)),
               "half": nn.Parameter(torch.randn(64, 80).to(torch.bfloat16))}
    sampler = ParameterSampler(weights, per_tensor=256)
    snapshot = sampler.snapshot()
    for name, w in weights.items():
        sample, checksum = snapshot[name]
        assert sample.dtype == torch.float32 and len(sample) == min(256, w.numel())
        assert torch.equal(sample, w.detach().reshape(-1)[sampler.indices[name]].float())
    with torch.no_grad():
        for w in weights.values():
            w.add_(1.0)  # an optimizer step in place
    later = sampler.snapshot()
    for name in weights:
        assert not torch.equal(snapshot[name][0], later[name][0]) and snapshot[name][1] != later[name][1]
        ratio, changed = ParameterSampler.relative_change(snapshot, later, [name])
        assert changed and ratio > 0
