"""A NaN loss in the middle of training (callbacks/nan_guard.py): it stops cleanly, naming step, epoch and
cause; `train.py` exits 2 with one line; a clean run is unaffected; the affected checkpoint is never
recommended by the analysis nor combined by the crossover."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file
from torch import nn

from callbacks.nan_guard import NonFiniteLossError, diagnose
from redheart.analysis.errors import AnalysisError
from redheart.analysis.run import analyze
from redheart.analysis.run_metrics import NAN_EVENT, load_run
from redheart.analysis.synthetic import Plan, write_run
from redheart.crossover.assemble import expected_tensors, load_into, plan_assembly
from redheart.crossover.checkpoints import RunCheckpoints
from redheart.crossover.errors import CrossoverError
from redheart.crossover.rebuild import build_net
from redheart.crossover.run import crossover_and_evaluate
from redheart.io import sha256_file
from redheart.sweep.cumulative import CumulativeResults
from redheart.train import train
from tests.conftest import REPO_ROOT, compose_for
from tests.test_analysis_run import compose_analyze
from tests.test_crossover import GROUPS, NO_EVAL, all_at, group_file, make_run, rewrite_group_file, stored

RUN = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64", "data.progress=false",
       "logger=none", "+trainer.enable_progress_bar=false", "test=false", "trainer.deterministic=true",
       "+trainer.limit_train_batches=10", "+trainer.limit_val_batches=2")  # 10 optimizer steps per epoch


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is about as fast and does not stall when the 2 cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class PoisonAt(L.Callback):
    """Test-only: at global step `step`, a NaN in the batch's input (`what=input`, row 3) or in one weight."""

    def __init__(self, step: int, what: str = "input", parameter: str = "backbone.norm.weight"):
        self.step, self.what, self.parameter = step, what, parameter

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        if self.what == "input":
            batch["embedding"][3, 5] = float("nan")
        else:
            with torch.no_grad():
                dict(pl_module.net.named_parameters())[self.parameter][0] = float("nan")


def poison(step: int, what: str = "input") -> tuple[str, ...]:
    return ("+callbacks.poison._target_=tests.test_nan_guard.PoisonAt", f"+callbacks.poison.step={step}",
            f"+callbacks.poison.what={what}")


# --- the diagnosis and the error, without training ------------------------------------------------------

def test_the_cause_names_the_most_upstream_non_finite_values_first():
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    batch = {"embedding": torch.zeros(5, 4), "label": torch.zeros(5, dtype=torch.long)}
    parts = {"final/emotion": torch.tensor(float("nan")), "final/regret": torch.tensor(0.3)}
    clean = diagnose(torch.tensor(float("nan")), parts, batch, net)
    assert list(clean.parts) == ["final/emotion"]
    assert not clean.inputs and not clean.parameters and not clean.gradients
    assert "forward pass overflowed" in clean.cause() and "final/emotion=nan" in clean.cause()
    assert "final/regret" not in clean.cause()

    net[1].weight.grad = torch.full_like(net[1].weight, float("inf"))
    with torch.no_grad():
        net[0].bias[1] = float("inf")
    weights = diagnose(torch.tensor(float("inf")), parts, batch, net)
    assert weights.parameters == ["0.bias"] and weights.gradients == ["1.weight"]
    assert weights.cause().startswith("loss inf, 1 parameter tensor(s) were already non-finite before this step")
    assert "0.bias" in weights.cause() and "non-finite gradients in 1 tensor(s): 1.weight" in weights.cause()

    batch["embedding"][3, 1] = float("nan")
    batch["embedding"][4, 0] = float("-inf")
    both = diagnose(torch.tensor(float("nan")), parts, batch, net)
    assert both.inputs == {"embedding": "has 2 of 20 values non-finite (batch rows [3, 4])"}
    assert both.cause().startswith("loss nan, the batch holds non-finite input values: embedding has 2 of 20")
    assert json.loads(json.dumps(both.as_json()))["parameters"] == ["0.bias"]  # JSON-safe (no bare NaN)


def test_the_error_carries_step_epoch_and_cause_and_survives_pickling():
    err = NonFiniteLossError(7, 1, "loss nan, the batch holds non-finite input values")
    assert str(err) == ("non-finite training loss at global step 7, epoch 1: "
                        "loss nan, the batch holds non-finite input values")
    again = pickle.loads(pickle.dumps(err))  # joblib / submitit launchers send it between processes
    assert (again.step, again.epoch, again.cause, str(again)) == (err.step, err.epoch, err.cause, str(err))


# --- the affected checkpoint is never recommended nor combined ---------------------------------------------

def test_the_crossover_refuses_a_checkpoint_file_holding_a_nan(tmp_path):
    run = make_run(tmp_path)
    tensors = load_file(run / "modular" / "epoch_004" / "heads.safetensors")
    key = next(k for k in tensors if k.startswith("raw/"))
    tensors[key].view(-1)[0] = float("nan")
    rewrite_group_file(run, 4, "heads", tensors)  # the manifest's sha256 matches: only the content is bad
    with pytest.raises(CrossoverError) as info:
        crossover_and_evaluate(all_at(4), NO_EVAL, run, None, tmp_path / "out")
    message = str(info.value)
    assert "epoch_004/heads.safetensors" in message and f"tensor {key!r}" in message
    assert "group 'heads'" in message and "1 non-finite value(s)" in message
    assert list((tmp_path / "out").iterdir()) == []  # no output, not even a temp file
    # an average over epochs that include it (a soup) is refused too; the other epochs still combine
    checkpoints = RunCheckpoints(run)
    cfg = OmegaConf.create(json.loads((run / "run.json").read_text())["config"])
    expected = expected_tensors(build_net(cfg, 64, device="meta"))
    soup = {g: (2, 4) for g in GROUPS}
    with pytest.raises(CrossoverError, match=r"epoch_004/heads\.safetensors"):
        load_into(build_net(cfg, 64), checkpoints, plan_assembly(checkpoints, soup, "raw", expected))
    result = crossover_and_evaluate(all_at(2), NO_EVAL, run, None, tmp_path / "ok")
    assert torch.equal(load_file(result["crossover"])[key[4:]], stored(run, 2, "heads")[key[4:]])


def test_the_analysis_never_recommends_a_checkpoint_at_or_after_a_nan_event(tmp_path):
    run = write_run(tmp_path / "run", Plan())  # 30 synthetic checkpoints 2..60, finite, plateau 24-40
    (run / NAN_EVENT).write_text(json.dumps({"step": 1234, "epoch": 31, "cause": "loss nan, planted"}))
    result = analyze(compose_analyze(f"ckpt_dir={run}", "plots=false"))
    for group, entry in result["groups"].items():
        assert entry["recommended_epoch"] <= 30, group
        assert set(range(32, 62, 2)) <= set(entry["excluded_epochs"]), group
        assert all(e <= 30 for e in entry["candidates"]), group
        assert "non-finite training loss at step 1234" in entry["excluded_reasons"]["32"][-1]
    assert any("global step 1234, epoch 31" in w and "loss nan, planted" in w for w in result["warnings"])


@pytest.mark.parametrize("event", [{"step": 3}, {"step": "7", "epoch": 1}, {"step": 7, "epoch": 0}, []])
def test_a_malformed_nan_event_file_is_an_error_naming_file_and_field(tmp_path, event):
    run = write_run(tmp_path / "run", Plan())
    (run / NAN_EVENT).write_text(json.dumps(event))
    with pytest.raises(AnalysisError, match=r"nan_event\.json: (field '(step|epoch)'|expected a JSON object)"):
        load_run(run)


# --- real tiny runs --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_nan_input_at_step_7_stops_training_naming_step_epoch_and_cause(tmp_path):
    with pytest.raises(NonFiniteLossError) as info:
        train(compose_for(tmp_path, *RUN, "trainer.max_epochs=2", *poison(7)))
    err, run = info.value, tmp_path / "run"
    assert (err.step, err.epoch) == (7, 1)
    assert str(err).startswith("non-finite training loss at global step 7, epoch 1: loss nan, the batch holds "
                               "non-finite input values: embedding has 1 of")
    assert "(batch rows [3])" in err.cause and "non-finite loss parts: final/emotion=nan" in err.cause
    event = json.loads((run / NAN_EVENT).read_text())
    assert (event["step"], event["epoch"], event["batch_idx"], event["cause"]) == (7, 1, 7, err.cause)
    assert event["details"]["parameters"] == []  # checked before the update: the weights were still finite
    assert event["details"]["gradients"]  # the backward pass had already run
    assert not (run / "metrics.json").exists() and not list(run.glob("modular/epoch_*"))


@pytest.mark.slow
def test_train_py_exits_2_with_one_line_and_no_traceback(tmp_path):
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "train.py", *RUN, "trainer.max_epochs=1", *poison(7),
                             f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "NonFiniteLossError" in line]
    assert len(lines) == 1 and "non-finite training loss at global step 7, epoch 1: loss nan" in lines[0]
    assert "embedding" in lines[0]
    assert json.loads((run / NAN_EVENT).read_text())["step"] == 7


@pytest.mark.slow
def test_in_a_sweep_the_diverged_job_is_recorded_as_diverged_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    result = subprocess.run([sys.executable, "train.py", "-m", "optim.lr=0.001", *RUN, "trainer.max_epochs=1",
                             *poison(3), f"data.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]  # a diverging LR is a sweep's result, not its failure
    assert "NonFiniteLossError: non-finite training loss at global step 3, epoch 1" in output
    entries = CumulativeResults(sweep / "lr_sweep_cumulative.json").read()
    assert [e["status"] for e in entries] == ["diverged"] and "step 3" in entries[0]["error"]
    optimal = json.loads((sweep / "optimal_lr.json").read_text())
    assert optimal["lr"] is None and "diverged" in optimal["unscored"][0]["why"]


@pytest.mark.slow
def test_a_clean_run_is_unaffected_by_the_guard(tmp_path):
    cfg = compose_for(tmp_path / "a", *RUN, "trainer.max_epochs=2")
    assert cfg.callbacks.nan_guard._target_ == "callbacks.nan_guard.NaNGuard"  # on by default
    guarded = train(cfg)
    plain = train(compose_for(tmp_path / "b", *RUN, "trainer.max_epochs=2", "~callbacks.nan_guard"))
    assert guarded["fit"] == plain["fit"] and guarded["steps"] == plain["steps"] == 20
    a = torch.load(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt", map_location="cpu")
    b = torch.load(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt", map_location="cpu")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert not (tmp_path / "a" / "run" / NAN_EVENT).exists()


@pytest.mark.slow
def test_a_nan_weight_is_named_and_a_resume_from_before_it_sets_the_event_aside(tmp_path):
    with pytest.raises(NonFiniteLossError) as info:  # epoch 3 = steps 20-29; checkpoints so far: epoch 2
        train(compose_for(tmp_path, *RUN, "trainer.max_epochs=4", *poison(27, "weight")))
    err, run = info.value, tmp_path / "run"
    assert (err.step, err.epoch) == (27, 3)
    assert "1 parameter tensor(s) were already non-finite before this step's update" in err.cause
    assert "backbone.norm.weight" in err.cause and "the batch holds" not in err.cause
    assert load_run(run).after_nan_event() == []  # epoch 2 was saved before: still eligible
    metrics = train(compose_for(tmp_path, *RUN, "trainer.max_epochs=4", "ckpt_path=last"))  # e.g. after a fix
    assert metrics["epochs"] == 4 and not (run / NAN_EVENT).exists()
    assert json.loads((run / "nan_event.previous.json").read_text())["step"] == 27
    assert load_run(run).epochs == [2, 4] and load_run(run).nan_event is None


def poison_checkpoint(run: Path, epoch: int) -> None:
    """Checkpoint `epoch` as a run that went on after a NaN would leave it: NaN weights, null losses and norms."""
    for group in GROUPS:
        tensors = load_file(group_file(run, epoch, group))
        for tensor in tensors.values():
            tensor.view(-1)[0] = float("nan")
        rewrite_group_file(run, epoch, group, tensors)  # the manifest's sha256 follows: only the content is bad
    path = run / "modular" / f"metrics_epoch_{epoch:03d}.json"
    metrics = json.loads(path.read_text())
    metrics["train_loss"] = metrics["val_loss"] = None
    for stats in metrics["groups"].values():
        stats["param_norm"] = None
    path.write_text(json.dumps(metrics))
    manifest = json.loads((run / "modular" / "manifest.json").read_text())
    next(c for c in manifest["checkpoints"] if c["epoch"] == epoch)["metrics_sha256"] = sha256_file(path)
    (run / "modular" / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.slow
def test_a_poisoned_checkpoint_of_a_real_run_is_never_recommended_nor_combined(tmp_path):
    train(compose_for(tmp_path, *RUN, "trainer.max_epochs=6"))  # checkpoints 2, 4, 6
    run = tmp_path / "run"
    poison_checkpoint(run, 6)
    result = analyze(compose_analyze(f"ckpt_dir={run}", "plots=false", "combine=true",
                                     "evaluation.fixed_epochs=[]", "evaluation.shifts=[-2]"))
    assert set(result["recommended"].values()) <= {2, 4}
    assert all(6 in entry["excluded_epochs"] for entry in result["groups"].values())
    crossover = result["crossover"]
    assert set(crossover["choices"].values()) <= {2, 4}
    evaluation = crossover["evaluation"]
    assert set(evaluation["val_by_epoch"]) == {"2", "4"}  # no candidate took epoch 6, not even "last"
    for candidate in evaluation["candidates"]:
        assert all(6 not in epochs for epochs in candidate["recipe"].values()), candidate["name"]
    # the default run stores only the weights validation measured, the EMA ones
    refused = r"epoch_006/backbone\.safetensors: tensor 'ema/backbone\..*non-finite"
    with pytest.raises(CrossoverError, match=refused):
        crossover_and_evaluate(all_at(6, "ema"), NO_EVAL, run, None, tmp_path / "forced")
