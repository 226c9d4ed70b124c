"""Nothing read from a run folder, a checkpoint's hyperparameters or a bundle builds anything but the
project's own network and datamodule: `_target_: os.system` (and builtins.exec, subprocess.*), at the top
or nested, is refused before anything is instantiated, and its side effect never happens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from redheart import load_model
from redheart.bundle.card import model_card
from redheart.bundle.errors import BundleError
from redheart.bundle.format import write_bundle
from redheart.crossover.errors import CrossoverError
from redheart.crossover.rebuild import build_net, datamodule_of, net_arguments, run_config
from redheart.data.embeddings import HashingEncoder
from redheart.safe_targets import check_targets
from redheart.training.lit_module import RedHeartLitModule
from tests.conftest import REPO_ROOT
from tests.test_crossover import GROUPS, make_run


def attacks(marker: Path) -> list[tuple[tuple[str, ...], dict]]:
    """(where in the config, the malicious node): each would create `marker` if it ever ran."""
    return [
        (("data",), {"_target_": "os.system", "_args_": [f"touch {marker}"]}),
        (("data", "embedding"), {"_target_": "builtins.exec", "_args_": [f"open({str(marker)!r}, 'w').close()"]}),
        (("model", "net", "backbone"), {"_target_": "subprocess.run", "_args_": [["touch", str(marker)]]}),
        (("data", "clean", "replacements"), [{"_target_": "subprocess.call", "_args_": [["touch", str(marker)]]}]),
    ]


def plant(config: dict, where: tuple[str, ...], node) -> dict:
    parent = config
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = node if where[-1] != "data" and where[-1] != "backbone" else {**parent[where[-1]], **node}
    return config


@pytest.mark.parametrize("attack", range(4))
def test_a_run_json_naming_any_other_callable_is_refused_without_running_it(tmp_path, attack):
    run_dir = make_run(tmp_path, epochs=(2,))
    marker = tmp_path / "pwned"
    where, node = attacks(marker)[attack]
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({"config": plant(record["config"], where, node)}))
    with pytest.raises(CrossoverError, match="not one of the project's own classes"):
        run_config(run_dir)
    cfg = OmegaConf.create(record["config"])  # a caller that skips run_config is refused as well
    with pytest.raises(CrossoverError, match="refusing to instantiate"):
        datamodule_of(cfg) if where[0] == "data" else build_net(cfg, 64)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "combine.py"), f"ckpt_dir={run_dir}",
                             "crossover.weights=raw",
                             *(f"crossover.{g}=2" for g in GROUPS)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "refusing to instantiate" in lines[0], lines
    assert not marker.exists()


def test_checkpoint_hyperparameters_build_only_the_network_and_torch_optimizers(tmp_path):
    marker = tmp_path / "pwned"
    run_dir = make_run(tmp_path, epochs=(2,))
    net = net_arguments(run_config(run_dir), 64)
    optimizer = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}
    RedHeartLitModule(net=net, optimizer=optimizer)  # the project's own: fine
    with pytest.raises(ValueError, match="refusing to instantiate"):
        RedHeartLitModule(net={"_target_": "os.system", "_args_": [f"touch {marker}"]}, optimizer=optimizer)
    with pytest.raises(ValueError, match="refusing to instantiate"):
        RedHeartLitModule(net=net, optimizer={"_target_": "os.system", "_args_": [f"touch {marker}"]})
    with pytest.raises(ValueError, match="refusing to instantiate"):
        RedHeartLitModule(net=net, optimizer=optimizer,
                          scheduler={"_target_": "torch.optim.lr_scheduler.warnings.warn"})
    assert not marker.exists()


def test_targets_hidden_in_lists_or_as_interpolations_are_found():
    for config in ({"a": [{"b": {"_target_": "builtins.eval"}}]}, {"_target_": "${oc.env:X}"}, {"_target_": 3}):
        with pytest.raises(ValueError, match="refusing"):
            check_targets(config, "x", ValueError, frozenset({"redheart.model.net.RedHeartNet"}))


@pytest.fixture
def bundle(tmp_path) -> Path:
    run_dir = make_run(tmp_path, epochs=(2,))
    cfg = run_config(run_dir)
    config = {"net": net_arguments(cfg, 64),
              "schema": {k: list(v) for k, v in OmegaConf.to_container(cfg.data.schema).items()},
              "embedding": {"backend": "hashing", "dim": 64, "normalize": True,
                            "model_id": HashingEncoder(64).model_id},
              "calibration": {"temperature": 1.0}}
    return write_bundle(tmp_path / "bundle", build_net(cfg, 64).state_dict(), config, model_card)


@pytest.mark.parametrize("field, node", [
    ("net", {"_target_": "os.system", "_args_": ["touch {marker}"]}),
    ("embedding", {"_target_": "builtins.exec", "_args_": ["open({marker!r}, 'w').close()"]}),
    ("calibration", {"_target_": "subprocess.check_call", "_args_": [["touch", "{marker}"]]}),
])
def test_a_bundle_config_naming_any_other_callable_is_refused_without_running_it(bundle, tmp_path, field, node):
    assert load_model(bundle).predict(["fine"])[0]["label"]  # the untouched bundle loads
    marker = tmp_path / "pwned"
    config = json.loads((bundle / "config.json").read_text())
    config[field] = {**config[field], **json.loads(json.dumps(node).replace("{marker}", str(marker)).replace(
        "{marker!r}", repr(str(marker))))}
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="refusing to instantiate"):
        load_model(bundle)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "predict.py"), f"bundle={bundle}", "text=hi"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and "refusing to instantiate" in result.stdout + result.stderr
    assert not marker.exists()


def test_only_torch_optimizer_and_scheduler_classes_pass_the_optimizer_check():
    from redheart.safe_targets import is_torch_optimizer

    assert is_torch_optimizer("torch.optim.AdamW") and is_torch_optimizer(
        "torch.optim.lr_scheduler.CosineAnnealingWarmRestarts")
    for name in ("torch.optim.os", "torch.optim.lr_scheduler.warnings", "os.system", "torch.optim._functional",
                 "torch.optim.lr_scheduler.warnings.warn", "torch.load"):
        assert not is_torch_optimizer(name), name
