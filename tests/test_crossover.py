"""Parameter crossover: strict assembly from per-group checkpoints, provenance, refusal of bad files.

The runs here are synthetic but written by the real ModularCheckpoint writer: the tiny preset's
net with different random weights per epoch (raw, and EMA = another draw), a manifest and a run.json
with the composed config, so every file format is the training's own.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from callbacks.modular_checkpoint import ModularCheckpoint
from redheart.crossover.assemble import expected_tensors, load_into, plan_assembly
from redheart.crossover.checkpoints import RunCheckpoints
from redheart.crossover.choices import resolve_choices, shifted
from redheart.crossover.errors import CrossoverError
from redheart.crossover.rebuild import build_net, net_arguments, schema_of
from redheart.crossover.run import combine, crossover_and_evaluate
from redheart.crossover.soups import SoupSelection, greedy_crossover, greedy_soup
from redheart.io import atomic_write_json, sha256_file
from redheart.run_folder import resolve_run_dir
from redheart.train import model_arguments
from tests.conftest import REPO_ROOT, compose_for

FAST = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64", "data.progress=false")
GROUPS = ("backbone", "heads", "neural_analyzers", "dsp_kalman", "advanced_emotion", "advanced_regret",
          "advanced_bentham", "advanced_surd", "phase")
NO_EVAL = {"enabled": False}


def make_run(root: Path, epochs=(2, 4, 6), ema: bool = True, dtype: str = "float32") -> Path:
    """A run folder: run.json, metrics.json (embedding_dim) and modular checkpoints of random tiny nets."""
    cfg = compose_for(root, *FAST)
    run_dir = Path(cfg.paths.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    atomic_write_json(run_dir / "run.json", {"config": config})
    atomic_write_json(run_dir / "metrics.json", {"embedding_dim": 64})
    writer = ModularCheckpoint(str(run_dir / "modular"), config["module_groups"], dtype=dtype)
    net = build_net(cfg, 64)
    writer._group_names = {g: list(m) for g, m in writer.module_groups.partition(net.named_parameters()).items()}
    for epoch in epochs:
        torch.manual_seed(epoch)
        raw = {k: torch.randn_like(v) for k, v in net.state_dict().items()}
        ema_state = {k: torch.randn_like(v) for k, v in raw.items()} if ema else None
        writer._write(epoch, raw, ema_state, {"epoch": epoch, "weights_evaluated": "ema" if ema else "raw"})
    return run_dir


def group_file(run_dir: Path, epoch: int, group: str) -> Path:
    return run_dir / "modular" / f"epoch_{epoch:03d}" / f"{group}.safetensors"


def stored(run_dir: Path, epoch: int, group: str, weights: str = "raw") -> dict[str, torch.Tensor]:
    tensors = load_file(group_file(run_dir, epoch, group))
    return {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(weights + "/")}


def rewrite_group_file(run_dir: Path, epoch: int, group: str, tensors: dict[str, torch.Tensor]) -> None:
    """Replace a group file and update the manifest's sha256, so only the content is wrong."""
    path = group_file(run_dir, epoch, group)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file(tensors, str(path), meta)
    set_manifest_file(run_dir, epoch, group, path)


def set_manifest_file(run_dir: Path, epoch: int, group: str, path: Path) -> None:
    manifest_path = run_dir / "modular" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = next(c for c in manifest["checkpoints"] if c["epoch"] == epoch)
    entry["files"][group] = {"path": str(path.relative_to(run_dir / "modular")), "sha256": sha256_file(path),
                             "bytes": path.stat().st_size, "tensors": 0}
    manifest_path.write_text(json.dumps(manifest))


def crossover_cfg(weights: str = "raw", **epochs: int) -> dict:
    return {**{g: None for g in GROUPS}, **epochs, "weights": weights}


def all_at(epoch: int, weights: str = "raw") -> dict:
    return crossover_cfg(weights, **{g: epoch for g in GROUPS})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("xrun"))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_every_group_at_one_epoch_reproduces_that_checkpoint_exactly(tmp_path, dtype):
    run_dir = make_run(tmp_path, dtype=dtype)
    result = crossover_and_evaluate(all_at(4), NO_EVAL, run_dir, None, tmp_path / "out")
    assembled = load_file(result["crossover"])
    expected = {}
    for group in GROUPS:
        expected |= stored(run_dir, 4, group)
    assert assembled.keys() == expected.keys()
    for name, tensor in expected.items():
        assert assembled[name].dtype == tensor.dtype == getattr(torch, dtype)
        assert torch.equal(assembled[name], tensor), name
    net = build_net(OmegaConf.create(json.loads((run_dir / "run.json").read_text())["config"]), 64)
    net.load_state_dict(assembled)  # strict by default: every key present, none extra
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, expected[name].float()), name


def test_mixed_epochs_take_each_group_from_its_own_epoch(run, tmp_path):
    epochs = {"backbone": 2, "heads": 6, "neural_analyzers": 4, "dsp_kalman": 2, "advanced_emotion": 6,
              "advanced_regret": 4, "advanced_bentham": 2, "advanced_surd": 6, "phase": 4}
    result = crossover_and_evaluate(crossover_cfg("ema", **epochs), NO_EVAL, run, None, tmp_path)
    assembled = load_file(result["crossover"])
    seen = 0
    for group, epoch in epochs.items():
        for name, tensor in stored(run, epoch, group, "ema").items():
            assert torch.equal(assembled[name], tensor), f"{name} is not epoch {epoch}'s EMA tensor"
            other = stored(run, 2 if epoch != 2 else 4, group, "ema")[name]
            assert not torch.equal(assembled[name], other)
            seen += 1
    assert seen == len(assembled)


def test_loading_a_recipe_into_the_model_copies_or_averages_group_by_group(run):
    checkpoints = RunCheckpoints(run)
    cfg = OmegaConf.create(json.loads((run / "run.json").read_text())["config"])
    net = build_net(cfg, 64)
    expected = expected_tensors(build_net(cfg, 64, device="meta"))
    recipe = {g: (2,) for g in GROUPS} | {"heads": (2, 4, 6)}
    load_into(net, checkpoints, plan_assembly(checkpoints, recipe, "raw", expected))
    state = net.state_dict()
    backbone, heads = stored(run, 2, "backbone"), [stored(run, e, "heads") for e in (2, 4, 6)]
    assert all(torch.equal(state[n], t) for n, t in backbone.items())
    for name in heads[0]:
        torch.testing.assert_close(state[name], (heads[0][name] + heads[1][name] + heads[2][name]) / 3)


def test_missing_extra_misplaced_and_misshaped_tensors_are_refused_with_the_full_list(tmp_path):
    run_dir = make_run(tmp_path, epochs=(2, 4), ema=False)
    heads = {f"raw/{k}": v for k, v in stored(run_dir, 4, "heads").items()}
    names = sorted(heads)
    dropped, reshaped = names[0], names[1]
    del heads[dropped]
    heads[reshaped] = torch.zeros(3, 5)
    heads["raw/heads.bogus.weight"] = torch.zeros(2)
    heads["raw/backbone.intruder"] = torch.zeros(1)
    rewrite_group_file(run_dir, 4, "heads", heads)
    checkpoints = RunCheckpoints(run_dir)
    cfg = OmegaConf.create(json.loads((run_dir / "run.json").read_text())["config"])
    expected = expected_tensors(build_net(cfg, 64, device="meta"))
    with pytest.raises(CrossoverError) as err:
        plan_assembly(checkpoints, {g: (4,) for g in GROUPS}, "raw", expected)
    message = str(err.value)
    assert "missing (1)" in message and dropped.removeprefix("raw/") in message
    assert "extra (2)" in message and "heads.bogus.weight" in message and "backbone.intruder" in message
    assert "mis-shaped (1)" in message and f"{reshaped}: file [3, 5]" in message
    # the other epoch is intact, and the combine entry point reports the same refusal
    plan_assembly(checkpoints, {g: (2,) for g in GROUPS}, "raw", expected)
    with pytest.raises(CrossoverError, match="missing"):
        crossover_and_evaluate(all_at(4), NO_EVAL, run_dir, None, tmp_path / "out")
    assert not (tmp_path / "out" / "crossover_final.safetensors").exists()


def test_a_tensor_in_another_groups_file_is_refused_as_misplaced_and_duplicated(tmp_path):
    run_dir = make_run(tmp_path, epochs=(2,), ema=False)
    phase = {f"raw/{k}": v for k, v in stored(run_dir, 2, "phase").items()}
    backbone_name, backbone_tensor = next(iter(stored(run_dir, 2, "backbone").items()))
    rewrite_group_file(run_dir, 2, "phase", phase | {f"raw/{backbone_name}": backbone_tensor})
    with pytest.raises(CrossoverError) as err:
        crossover_and_evaluate(all_at(2), NO_EVAL, run_dir, None, tmp_path / "out")
    assert "misplaced (1)" in str(err.value) and "duplicated (1)" in str(err.value)
    assert f"{backbone_name} (belongs to group 'backbone')" in str(err.value)


def test_provenance_names_the_epoch_file_and_sha256_of_every_tensor(run, tmp_path):
    epochs = {g: (2 if i % 2 else 6) for i, g in enumerate(GROUPS)}
    result = crossover_and_evaluate(crossover_cfg("raw", **epochs), NO_EVAL, run, None, tmp_path)
    record = json.loads(Path(result["provenance"]).read_text())
    cfg = OmegaConf.create(json.loads((run / "run.json").read_text())["config"])
    model_names = set(build_net(cfg, 64).state_dict())
    assert set(record["tensors"]) == model_names and record["tensor_count"] == len(model_names)
    for name, source in record["tensors"].items():
        assert source["epoch"] == epochs[source["group"]]
        assert source["source"] == f"modular/epoch_{source['epoch']:03d}/{source['group']}.safetensors"
        assert source["sha256"] == sha256_file(run / source["source"]) and source["key"] == f"raw/{name}"
    assert record["output"]["sha256"] == sha256_file(result["crossover"])
    assert record["choices"] == epochs and set(record["choice_sources"].values()) == {"explicit"}


def test_a_checkpoint_carrying_pickled_code_is_refused_without_running_it(tmp_path):
    run_dir = make_run(tmp_path, epochs=(2,), ema=False)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # unpickling would create the marker file

    for suffix in (".ckpt", ".safetensors"):
        path = run_dir / "modular" / "epoch_002" / f"heads{suffix}"
        if suffix == ".safetensors":
            path.unlink()
        path.write_bytes(pickle.dumps({"state_dict": Payload()}))
        set_manifest_file(run_dir, 2, "heads", path)  # the manifest's sha256 matches: only the format is wrong
        with pytest.raises(CrossoverError, match="pickle") as err:
            crossover_and_evaluate(all_at(2), NO_EVAL, run_dir, None, tmp_path / "out")
        assert str(path) in str(err.value)
        assert not marker.exists()


def test_a_file_changed_after_saving_fails_its_sha256(tmp_path):
    run_dir = make_run(tmp_path, epochs=(2,), ema=False)
    path = group_file(run_dir, 2, "phase")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor's bytes: still a valid safetensors file
    path.write_bytes(bytes(data))
    with pytest.raises(CrossoverError, match="sha256 .* differs from the manifest"):
        crossover_and_evaluate(all_at(2), NO_EVAL, run_dir, None, tmp_path / "out")


@pytest.mark.parametrize("preset", ["tiny", "small", "full"])
def test_the_rebuilt_net_is_configured_exactly_as_training_configures_it(tmp_path, preset):
    cfg = compose_for(tmp_path, f"model={preset}", "data.schema.class_names=[a,b,c]")
    assert net_arguments(cfg, 96) == model_arguments(cfg, 96, schema_of(cfg))["net"]


def test_ckpt_dir_may_be_the_run_or_its_modular_folder_and_must_hold_a_manifest(run, tmp_path):
    assert resolve_run_dir(run) == resolve_run_dir(run / "modular") == (run.resolve(), run.resolve() / "modular")
    with pytest.raises(CrossoverError, match="no modular/manifest.json"):
        resolve_run_dir(tmp_path, CrossoverError)


def analysis_for(run: Path, recommended: dict[str, int], plateau=(2, 6), excluded=()) -> dict:
    return {"run_dir": str(run), "epochs": [2, 4, 6], "overfitting_epoch": None, "recommended": recommended,
            "groups": {g: {"recommended_epoch": e, "confidence": 0.8, "plateau": list(plateau),
                           "excluded_epochs": list(excluded), "metric": {"name": "loss", "mode": "min"},
                           "techniques": {}, "series": {}} for g, e in recommended.items()}}


def test_choices_take_explicit_overrides_then_the_analysis(run):
    checkpoints = RunCheckpoints(run)
    analysis = analysis_for(run, {g: 4 for g in GROUPS})
    choices, sources = resolve_choices(crossover_cfg(backbone=6, heads=2), analysis, checkpoints)
    assert choices == {g: 4 for g in GROUPS} | {"backbone": 6, "heads": 2}
    assert sources["backbone"] == "explicit" and sources["phase"] == "analysis"
    with pytest.raises(CrossoverError, match="no analysis to take it from"):
        resolve_choices(crossover_cfg(backbone=6), None, checkpoints)
    with pytest.raises(CrossoverError, match=r"crossover.heads=5: not a checkpoint epoch of this run \(\[2, 4, 6\]\)"):
        resolve_choices(crossover_cfg(heads=5), analysis, checkpoints)
    with pytest.raises(CrossoverError, match="crossover.bakbone: not a module group"):
        resolve_choices(crossover_cfg() | {"bakbone": 4}, analysis, checkpoints)


def test_shifted_variants_stay_on_usable_checkpoint_epochs(run):
    checkpoints = RunCheckpoints(run)
    analysis = analysis_for(run, {g: 4 for g in GROUPS}, excluded=[6])
    choices = {g: 4 for g in GROUPS}
    assert set(shifted(choices, -2, analysis, checkpoints).values()) == {2}
    assert set(shifted(choices, -4, analysis, checkpoints).values()) == {2}  # off the run: nearest epoch
    assert set(shifted(choices, +2, analysis, checkpoints).values()) == {4}  # 6 is excluded: stays nearest
    assert set(shifted(choices, +2, None, checkpoints).values()) == {6}


def test_greedy_soup_keeps_a_checkpoint_only_when_val_does_not_drop():
    groups = ["a", "b"]
    single = {2: 1.0, 4: 0.5, 6: 0.8}
    # the soup's val loss: the mean of its members' losses, except that epoch 2 in it always hurts
    def score(recipe):
        epochs = recipe["a"]
        return sum(single[e] for e in epochs) / len(epochs) + (1.0 if 2 in epochs else 0.0)

    recipe, trace = greedy_soup(groups, single, score, SoupSelection("loss", "min"))
    assert [t["epoch"] for t in trace] == [4, 6, 2]  # ranked by their own val score
    assert recipe == {"a": (4,), "b": (4,)}  # 6 raises the mean (0.65 > 0.5), 2 hurts: neither kept
    recipe, _ = greedy_soup(groups, {4: 0.5, 6: 0.5}, lambda r: 0.5, SoupSelection("loss", "min"))
    assert recipe == {"a": (4, 6), "b": (4, 6)}  # equal is "does not drop": kept


def test_greedy_crossover_keeps_a_group_change_only_when_val_strictly_improves():
    target = {"a": 6, "b": 2}

    def score(recipe):  # accuracy-like: one point per group at its target epoch
        return float(sum(recipe[g][0] == target[g] for g in target))

    choice, trace = greedy_crossover({"a": 4, "b": 4}, {"a": [2, 4, 6], "b": [2, 4, 6]}, score,
                                     SoupSelection("accuracy", "max"))
    assert choice == {"a": 6, "b": 2}
    assert [(t["group"], t["epoch"], t["kept"]) for t in trace] == [
        ("a", 2, False), ("a", 6, True), ("b", 2, True), ("b", 4, False), ("b", 6, False)]


def test_combine_config_composes_and_takes_group_overrides_from_the_command_line(run, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    overrides = [f"ckpt_dir={run / 'modular'}", f"out_dir={tmp_path}", "crossover.weights=raw"]
    overrides += [f"crossover.{g}={6 if g == 'backbone' else 2}" for g in GROUPS]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="combine", overrides=overrides)
    GlobalHydra.instance().clear()
    assert cfg.evaluation.enabled is False and cfg.evaluation.bootstrap.resamples >= 1000
    result = combine(cfg)
    assert result["choices"]["backbone"] == 6 and result["choices"]["heads"] == 2 and "evaluation" not in result
    assert (tmp_path / "crossover_final.safetensors").is_file() and (tmp_path / "provenance.json").is_file()


def test_combine_py_exits_2_with_the_message_alone_on_bad_input(tmp_path):
    result = subprocess.run([sys.executable, "combine.py", f"ckpt_dir={tmp_path}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "CrossoverError" in output and "no modular/manifest.json" in output and "Traceback" not in output
