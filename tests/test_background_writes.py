"""Checkpoints written off the training thread: snapshots, waits, order, crashes mid-write; EMA every n
steps; what a default run stores."""

from __future__ import annotations

import contextlib
import json
import operator
import threading
import time
from functools import partial

import pytest
import torch
from lightning.pytorch.callbacks.weight_averaging import WeightAveraging
from safetensors import safe_open
from safetensors.torch import load_file

import callbacks.atomic_checkpoint_io as aio
import callbacks.modular_checkpoint as mc
from callbacks.atomic_checkpoint_io import AsyncAtomicCheckpointIO
from callbacks.background_writer import WRITER
from callbacks.ema import BatchedEMAWeightAveraging
from callbacks.modular_checkpoint import ModularCheckpoint
from callbacks.serializer_process import SERIALIZER
from redheart.crossover.errors import CrossoverError
from redheart.crossover.run import crossover_and_evaluate
from redheart.train import train
from tests.conftest import compose_for

GROUPS = {"a": ["a"], "b": ["b"]}


@pytest.fixture(autouse=True)
def _writer_left_clean():
    yield
    with contextlib.suppress(RuntimeError):  # a test that fails a write on purpose leaves its error behind
        WRITER.wait()


def writer(tmp_path, **kwargs) -> ModularCheckpoint:
    cb = ModularCheckpoint(str(tmp_path / "modular"), GROUPS, **kwargs)
    cb._group_names = {"a": ["a.w"], "b": ["b.w"]}
    return cb


@pytest.fixture(params=["process", "thread"])
def modular_path(request, monkeypatch) -> str:
    """Modular files written by the serializer process (the default) or, where it cannot run, the writer
    thread (stage() answers None there)."""
    if request.param == "thread":
        monkeypatch.setattr(SERIALIZER, "stage", lambda *args, **kwargs: None)
    return request.param


def wrap_modular_save(monkeypatch, wrapper) -> None:
    """Both ways of writing a modular file go through `wrapper(save, tensors, path, metadata)`."""
    real_file, real_helper = mc.save_file, SERIALIZER.save_safetensors
    monkeypatch.setattr(mc, "save_file", lambda t, p, m=None: wrapper(real_file, t, p, m))
    monkeypatch.setattr(SERIALIZER, "save_safetensors",
                        lambda staged, t, p, m=None: wrapper(partial(real_helper, staged), t, p, m))


def gated_save_file(monkeypatch) -> threading.Event:
    """Each modular file write waits for the returned event before writing."""
    gate = threading.Event()

    def gated(save, tensors, path, metadata):
        assert gate.wait(10), "the test never opened the gate"
        save(tensors, path, metadata)

    wrap_modular_save(monkeypatch, gated)
    return gate


def blocks(fn) -> tuple[threading.Thread, list]:
    """Run `fn` in a thread; (thread, [errors])."""
    errors: list = []

    def run():
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 (reported to the test)
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_modular_writes_run_in_the_background_from_a_snapshot_and_the_next_write_waits(tmp_path, monkeypatch,
                                                                                        modular_path):
    gate = gated_save_file(monkeypatch)
    cb = writer(tmp_path)
    state = {"a.w": torch.ones(3), "b.w": torch.ones(2)}
    cb.write_snapshot(2, state, None, {"epoch": 2})  # returns while the write waits on the gate
    assert not cb.manifest_path.exists() and WRITER.busy
    assert (cb._buffer_key in SERIALIZER._buffers) == (modular_path == "process")  # the copy is in shared memory
    state["a.w"].add_(5.0)  # training goes on and changes the live weights
    second, errors = blocks(lambda: cb.write_snapshot(4, state, None, {"epoch": 4}))
    time.sleep(0.3)
    assert second.is_alive(), "the next write did not wait for the pending one"
    gate.set()
    second.join(10)
    assert not second.is_alive() and errors == []
    end, _ = blocks(lambda: cb.on_fit_end(None, None))
    end.join(10)
    assert not WRITER.busy
    manifest = json.loads(cb.manifest_path.read_text())
    assert [c["epoch"] for c in manifest["checkpoints"]] == [2, 4]
    first = load_file(tmp_path / "modular" / "epoch_002" / "a.safetensors")
    assert torch.equal(first["raw/a.w"], torch.ones(3))  # the snapshot, not the weights at write time
    second_file = load_file(tmp_path / "modular" / "epoch_004" / "a.safetensors")
    assert torch.equal(second_file["raw/a.w"], torch.full((3,), 6.0))
    cb.teardown(None, None, "fit")
    assert cb._buffer_key not in SERIALIZER._buffers  # teardown frees the shared copy


def test_the_serializer_process_writes_the_same_safetensors_file_as_save_file(tmp_path):
    state = {"w": torch.randn(3, 4), "empty": torch.zeros(0), "h": torch.arange(6.0).reshape(2, 3)}
    staged = SERIALIZER.stage("test-safetensors", {"raw": state}, torch.bfloat16)
    assert staged is not None
    try:
        views = staged.restored()["raw"]
        SERIALIZER.save_safetensors(staged, {f"raw/{n}": t for n, t in views.items()}, tmp_path / "helper.safetensors",
                                    {"epoch": "2"})
        with pytest.raises(ValueError, match="not a staged copy"):  # a tensor of this process: refused, not read
            SERIALIZER.save_safetensors(staged, {"x": torch.ones(2)}, tmp_path / "other.safetensors")
    finally:
        SERIALIZER.release("test-safetensors")
    mc.save_file({f"raw/{n}": t.to(torch.bfloat16) for n, t in state.items()}, tmp_path / "thread.safetensors",
                 {"epoch": "2"})
    assert (tmp_path / "helper.safetensors").read_bytes() == (tmp_path / "thread.safetensors").read_bytes()


def test_fit_end_teardown_and_an_exception_wait_for_the_pending_write(tmp_path, monkeypatch, modular_path):
    for hook in ("on_fit_end", "teardown", "on_exception"):
        gate = gated_save_file(monkeypatch)
        cb = writer(tmp_path / hook)
        cb.write_snapshot(2, {"a.w": torch.ones(1), "b.w": torch.ones(1)}, None, {"epoch": 2})
        args = {"on_fit_end": (None, None), "teardown": (None, None, "fit"),
                "on_exception": (None, None, RuntimeError("boom"))}[hook]
        thread, errors = blocks(lambda cb=cb, hook=hook, args=args: getattr(cb, hook)(*args))
        time.sleep(0.3)
        assert thread.is_alive(), f"{hook} returned before the write"
        gate.set()
        thread.join(10)
        assert errors == [] and cb.manifest_path.is_file(), hook


def test_a_crash_in_the_middle_of_a_background_write_leaves_nothing_that_looks_valid(tmp_path, monkeypatch,
                                                                                    modular_path):
    cb = writer(tmp_path)
    cb.write_snapshot(2, {"a.w": torch.ones(1), "b.w": torch.ones(1)}, None, {"epoch": 2})
    WRITER.wait()

    def dies_halfway(save, tensors, path, metadata):
        save(tensors, path, metadata)
        with open(path, "r+b") as fh:
            fh.truncate(20)  # the bytes written so far
        raise OSError("disk full")

    wrap_modular_save(monkeypatch, dies_halfway)
    cb.write_snapshot(4, {"a.w": torch.zeros(1), "b.w": torch.zeros(1)}, None, {"epoch": 4})
    with pytest.raises(RuntimeError, match="background checkpoint write failed: disk full"):
        WRITER.wait()  # raised on the training thread
    monkeypatch.undo()
    manifest = json.loads(cb.manifest_path.read_text())
    assert [c["epoch"] for c in manifest["checkpoints"]] == [2]  # the manifest never lists the broken epoch
    assert not (tmp_path / "modular" / "metrics_epoch_004.json").exists()
    assert [p.name for p in (tmp_path / "modular" / "epoch_004").iterdir()] == []  # no file, no temp file


def test_the_previous_resume_checkpoint_is_removed_only_after_the_new_one_is_whole(tmp_path, monkeypatch):
    io = AsyncAtomicCheckpointIO(serialize_in="thread")  # torch.save patched below runs in this process
    old, new = tmp_path / "resume-epoch=001.ckpt", tmp_path / "resume-epoch=003.ckpt"
    weights = torch.ones(3)
    io.save_checkpoint({"state_dict": {"w": weights}}, old)
    weights.add_(1.0)  # changed after the save call: the file holds the snapshot
    io.teardown()
    assert torch.equal(torch.load(old)["state_dict"]["w"], torch.ones(3))

    real_save = torch.save

    def dies_halfway(obj, f):
        real_save({"partial": True}, f)
        raise KeyboardInterrupt("killed during torch.save")

    monkeypatch.setattr(aio.torch, "save", dies_halfway)
    io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, new)
    io.remove_checkpoint(old)  # Lightning's order: save the new one, then remove the previous one
    with pytest.raises(RuntimeError, match="killed during torch.save"):
        io.teardown()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [old.name]  # old kept, no half-written new, no temp
    assert torch.equal(torch.load(old)["state_dict"]["w"], torch.ones(3))


def test_load_waits_for_the_pending_save(tmp_path, monkeypatch):
    io = AsyncAtomicCheckpointIO(serialize_in="thread")
    gate = threading.Event()
    real_save = torch.save
    monkeypatch.setattr(aio.torch, "save", lambda obj, f: (gate.wait(10), real_save(obj, f)))
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"w": torch.ones(2)}, path)
    loaded: list = []
    thread, errors = blocks(lambda: loaded.append(io.load_checkpoint(path)))
    time.sleep(0.3)
    assert thread.is_alive() and not path.exists()
    gate.set()
    thread.join(10)
    assert errors == [] and torch.equal(loaded[0]["w"], torch.ones(2))


@pytest.mark.parametrize("warmup", [False, True])
@pytest.mark.parametrize("n", [2, 5])
def test_ema_every_n_steps_with_decay_to_the_n_equals_the_per_step_ema(n, warmup):
    """Weights that move only at the update steps: the every-n average (decay**n) equals the per-step one
    (with warm-up: once it has settled at `decay`); with the plain decay per update it would not."""
    decay, updates, start = 0.9, 12, (1000 if warmup else 0)
    fn = {k: BatchedEMAWeightAveraging(decay=decay, warmup=warmup, update_every_n_steps=k)._kwargs["multi_avg_fn"]
          for k in (1, n)}
    targets = [torch.randn(4, generator=torch.Generator().manual_seed(i)) for i in range(updates)]
    per_step, every_n, naive = torch.zeros(4), torch.zeros(4), torch.zeros(4)
    for k, target in enumerate(targets):
        for s in range(n):  # the same weights for the n steps of this block
            fn[1]([per_step], [target], torch.tensor(start * n + k * n + s + 1))
        fn[n]([every_n], [target], torch.tensor(start + k + 1))
        fn[1]([naive], [target], torch.tensor(start * n + k + 1))  # one update, step decay: no d**n
    assert torch.allclose(every_n, per_step, atol=1e-6), (every_n, per_step)
    assert not torch.allclose(naive, per_step, atol=1e-3)  # the check can fail


def test_ema_every_n_steps_updates_on_every_nth_step_only():
    ema = BatchedEMAWeightAveraging(decay=0.99, update_every_n_steps=4)
    assert [s for s in range(12) if ema.should_update(step_idx=s)] == [0, 4, 8]
    with pytest.raises(ValueError, match="update_every_n_steps"):
        BatchedEMAWeightAveraging(update_every_n_steps=0)


FAST = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64", "data.progress=false",
        "logger=none", "+trainer.enable_progress_bar=false", "test=false", "trainer.max_epochs=2")


def test_a_default_run_stores_the_evaluated_ema_weights_only_and_the_crossover_reads_them(compose_cfg, tmp_path):
    train(compose_cfg(*FAST))
    run = tmp_path / "run"
    manifest = json.loads((run / "modular" / "manifest.json").read_text())
    entry = manifest["checkpoints"][0]
    assert entry["ema"] is True and entry["raw"] is False
    for info in entry["files"].values():
        with safe_open(str(run / "modular" / info["path"]), "pt") as f:
            assert all(k.startswith("ema/") for k in f.keys()) and f.metadata()["raw"] == "false"  # noqa: SIM118
    metrics = json.loads((run / "modular" / "metrics_epoch_002.json").read_text())
    assert metrics["weights_evaluated"] == "ema" and metrics["ema"] is True
    ema_state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu")["state_dict"]
    result = crossover_and_evaluate({"weights": "auto", **{g: 2 for g in manifest["groups"]}}, {"enabled": False},
                                    run, None, tmp_path / "out")
    assert result["weights"] == "ema"
    assembled = load_file(result["crossover"])
    assert all(torch.equal(t, ema_state[f"net.{k}"]) for k, t in assembled.items())  # the validated weights
    with pytest.raises(CrossoverError, match="weights=both"):
        crossover_and_evaluate({"weights": "raw", **{g: 2 for g in manifest["groups"]}}, {"enabled": False},
                               run, None, tmp_path / "raw")


def test_clipping_with_the_monitors_norm_matches_lightnings_clipping(tmp_path):
    """gradient_clip_val=0.01 clips every step: the weights after 4 steps agree with Lightning's own
    clip_grad_norm_ (used without the monitor) to float rounding, and differ without clipping."""
    common = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64", "data.progress=false",
              "logger=none", "+trainer.enable_progress_bar=false", "test=false", "trainer.max_epochs=1",
              "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=1", "trainer.deterministic=true")

    def weights(name: str, *extra: str) -> dict[str, torch.Tensor]:
        train(compose_for(tmp_path / name, *common, *extra))
        last = tmp_path / name / "run" / "checkpoints" / "last.ckpt"
        return torch.load(last, map_location="cpu")["current_model_state"]

    shared = weights("shared", "trainer.gradient_clip_val=0.01", "callbacks.modular_checkpoint.every_n_epochs=1")
    lightning = weights("lightning", "trainer.gradient_clip_val=0.01", "~callbacks.gradient_norms",
                        "callbacks.modular_checkpoint.every_n_epochs=1")
    unclipped = weights("unclipped", "trainer.gradient_clip_val=0", "callbacks.modular_checkpoint.every_n_epochs=1")
    assert all(torch.allclose(shared[k], lightning[k], rtol=1e-5, atol=1e-7) for k in shared)
    assert not all(torch.allclose(shared[k], unclipped[k], rtol=1e-3, atol=1e-5) for k in shared)


class FailsInTheHelper:
    """Pickles here; unpickling it (which only the serializer helper does) raises ZeroDivisionError."""

    def __reduce__(self):
        return operator.truediv, (1, 0)


def test_resume_checkpoints_are_serialised_by_the_helper_process_from_a_snapshot(tmp_path, monkeypatch):
    io = AsyncAtomicCheckpointIO()  # serialize_in="process", the default
    weights = torch.arange(6.0).view(2, 3)
    checkpoint = {"state_dict": {"w": weights, "flag": torch.tensor(True), "half": torch.ones(3, dtype=torch.bfloat16),
                                 "empty": torch.empty(0, 4)},
                  "optimizer_states": [{"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 0.1}]}],
                  "epoch": 3}
    monkeypatch.setattr(torch, "save", lambda *a, **k: pytest.fail("torch.save ran in the training process"))
    io.save_checkpoint(checkpoint, tmp_path / "a.ckpt")
    buffer = SERIALIZER._buffers[id(io)]
    weights.add_(100.0)  # training goes on: the file holds the weights at the save call
    WRITER.wait()
    io.save_checkpoint(checkpoint, tmp_path / "b.ckpt")  # the same buffer, refilled
    assert SERIALIZER._buffers[id(io)] is buffer
    io.teardown()
    monkeypatch.undo()
    first, second = (torch.load(tmp_path / n, weights_only=True) for n in ("a.ckpt", "b.ckpt"))
    assert torch.equal(first["state_dict"]["w"], torch.arange(6.0).view(2, 3))
    assert torch.equal(second["state_dict"]["w"], torch.arange(6.0).view(2, 3) + 100.0)
    assert first["state_dict"]["half"].dtype == torch.bfloat16 and first["state_dict"]["flag"].item() is True
    assert first["state_dict"]["empty"].shape == (0, 4) and first["epoch"] == 3
    assert first["optimizer_states"][0]["state"][0]["step"].item() == 3.0
    assert first["state_dict"]["w"].untyped_storage().nbytes() == 24  # its own storage, not the whole buffer
    assert id(io) not in SERIALIZER._buffers  # teardown freed the buffer


def test_a_failure_in_the_helper_is_raised_here_and_keeps_the_previous_checkpoint(tmp_path):
    io = AsyncAtomicCheckpointIO()
    old, new = tmp_path / "resume-epoch=001.ckpt", tmp_path / "resume-epoch=003.ckpt"
    io.save_checkpoint({"w": torch.ones(3)}, old)
    io.save_checkpoint({"w": torch.zeros(3), "boom": FailsInTheHelper()}, new)
    with pytest.raises(RuntimeError, match="checkpoint serializer process: ZeroDivisionError"):
        io.remove_checkpoint(old)  # raises here when the failed save is already done, else at teardown
        io.teardown()
    assert sorted(p.name for p in tmp_path.iterdir()) == [old.name]  # old kept, no half-written new, no temp
    io.save_checkpoint({"w": torch.full((3,), 2.0)}, new)  # the helper goes on serving
    io.teardown()
    assert torch.equal(torch.load(new, weights_only=True)["w"], torch.full((3,), 2.0))


def test_a_killed_helper_is_replaced_at_the_next_save_and_without_one_the_thread_writes(tmp_path, monkeypatch):
    io = AsyncAtomicCheckpointIO()
    io.save_checkpoint({"w": torch.ones(3)}, tmp_path / "a.ckpt")
    WRITER.wait()
    helper = SERIALIZER._proc
    helper.kill()
    helper.wait()
    io.save_checkpoint({"w": torch.full((3,), 2.0)}, tmp_path / "b.ckpt")
    io.teardown()
    assert SERIALIZER._proc is not helper and SERIALIZER._proc.poll() is None
    assert torch.equal(torch.load(tmp_path / "b.ckpt", weights_only=True)["w"], torch.full((3,), 2.0))

    monkeypatch.setattr(SERIALIZER, "start", lambda: False)  # no helper here (not Linux)
    io = AsyncAtomicCheckpointIO()
    weights = torch.ones(3)
    io.save_checkpoint({"w": weights}, tmp_path / "c.ckpt")
    assert id(io) not in SERIALIZER._buffers
    weights.add_(1.0)
    io.teardown()
    assert torch.equal(torch.load(tmp_path / "c.ckpt", weights_only=True)["w"], torch.ones(3))
    with pytest.raises(ValueError, match="serialize_in"):
        AsyncAtomicCheckpointIO(serialize_in="fork")


def test_the_ema_swap_and_update_shortcuts_give_exactly_what_lightning_and_torch_give(tmp_path, monkeypatch):
    """The swap leaves each Parameter object in place and exchanges its values with the average's (no
    copy: the storages trade places); a fit with it and the listed-once update validates and ends on
    exactly the weights of a fit with Lightning's copying swap and AveragedModel.update_parameters."""
    module, average = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ema = BatchedEMAWeightAveraging(decay=0.9)
    ema._average_model = torch.nn.Module()
    ema._average_model.module = average
    params, before = list(module.parameters()), [p.detach().clone() for p in module.parameters()]
    average_before = [p.detach().clone() for p in average.parameters()]
    pointers = [p.data_ptr() for p in average.parameters()]
    ema._swap_models(module)
    assert list(module.parameters()) == params  # the same objects, so the optimizer's state still fits
    assert [p.data_ptr() for p in module.parameters()] == pointers  # no copy was made
    assert all(torch.equal(p, b) for p, b in zip(module.parameters(), average_before, strict=True))
    assert all(torch.equal(p, b) for p, b in zip(average.parameters(), before, strict=True))
    ema._swap_models(module)
    assert all(torch.equal(p, b) for p, b in zip(module.parameters(), before, strict=True))

    common = (*FAST, "trainer.deterministic=true", "+trainer.limit_train_batches=6",
              "callbacks.ema.update_every_n_steps=1")

    def fit(name: str) -> tuple[list[float], dict[str, torch.Tensor]]:
        train(compose_for(tmp_path / name, *common))
        run = tmp_path / name / "run"
        history = json.loads((run / "epoch_history.json").read_text())
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu")
        return [e["val_loss"] for e in history["epochs"]], {**ckpt["state_dict"], **{
            f"raw.{k}": v for k, v in ckpt["current_model_state"].items()}}

    ours = fit("reference")
    monkeypatch.setattr(BatchedEMAWeightAveraging, "_swap_models", WeightAveraging._swap_models)  # copies
    monkeypatch.setattr(BatchedEMAWeightAveraging, "_update",  # torch's update, walking both trees each time
                        lambda self, pl_module: self._average_model.update_parameters(pl_module))
    lightning = fit("lightning")
    assert ours[0] == lightning[0] and len(ours[0]) == 2
    assert ours[1].keys() == lightning[1].keys() and all(torch.equal(ours[1][k], lightning[1][k]) for k in ours[1])


def test_resume_checkpoint_names_files_as_lightning_does_without_copying_every_metric(tmp_path):
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import ModelCheckpoint

    from callbacks.resume_checkpoint import ResumeCheckpoint

    logged = {"epoch": torch.tensor(3.0), "val/loss": torch.tensor(0.5), "val/module/x/f1": torch.tensor(0.25)}
    trainer = SimpleNamespace(callback_metrics=logged, current_epoch=2, global_step=40)
    ours = ResumeCheckpoint(dirpath=tmp_path, filename="resume-{epoch:03d}-{val/loss:.2f}")
    lightnings = ModelCheckpoint(dirpath=tmp_path, filename="resume-{epoch:03d}-{val/loss:.2f}")
    mine, theirs = ours._monitor_candidates(trainer), lightnings._monitor_candidates(trainer)
    assert mine.keys() == theirs.keys() == logged.keys() | {"step"}
    assert all(torch.equal(mine[k], theirs[k]) and mine[k].dtype == theirs[k].dtype for k in mine)
    assert ours.format_checkpoint_name(mine) == lightnings.format_checkpoint_name(theirs)
    assert mine["val/loss"] is logged["val/loss"]  # read, not deep-copied
    monitored = ResumeCheckpoint(dirpath=tmp_path, monitor="val/loss")._monitor_candidates(trainer)
    assert monitored["val/loss"] is not logged["val/loss"]  # with a monitor the best score is kept: Lightning's copy
