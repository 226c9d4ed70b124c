"""The fine-tuned encoder (encoder=finetune) on a tiny BERT built in-process (tests/conftest.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from redheart.data.datamodule import RedHeartDataModule
from redheart.data.scripts import script_report
from redheart.data.tokens import pad_collate
from redheart.model.summary import build_on_meta, format_table, parameter_table
from redheart.train import model_arguments
from redheart.training.lit_module import RedHeartLitModule
from redheart.training.param_groups import parameter_groups
from tests.conftest import compose_for, write_records


def finetune_overrides(encoder: Path, data: Path) -> tuple[str, ...]:
    return ("model=tiny", "encoder=finetune", f"data.path={data}", "data.embedding.backend=hashing",
            "data.embedding.dim=64", f"data.tokens.model={encoder}", "data.tokens.max_length=24",
            "data.split.on_leakage=warn", "logger=none", "+trainer.enable_progress_bar=false")


def tiny_net_args(tmp_path: Path, encoder: Path) -> dict:
    cfg = compose_for(tmp_path, *finetune_overrides(encoder, tmp_path / "unused.jsonl"))
    from redheart.schema import TaskSchema

    schema = TaskSchema.from_config(**OmegaConf.to_container(cfg.data.schema, resolve=True))
    return model_arguments(cfg, 64, schema)


def token_batch(tmp_path: Path, encoder: Path, texts: list[str], pad_to: int | None = None) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder)
    items = [{"input_ids": torch.tensor(tokenizer(t)["input_ids"])} for t in texts]
    batch = pad_collate(tokenizer.pad_token_id)(items)
    if pad_to is not None and batch["input_ids"].shape[1] < pad_to:
        extra = pad_to - batch["input_ids"].shape[1]
        batch["input_ids"] = torch.nn.functional.pad(batch["input_ids"], (0, extra), value=tokenizer.pad_token_id)
        batch["attention_mask"] = torch.nn.functional.pad(batch["attention_mask"], (0, extra), value=0)
    return batch


def test_every_encoder_parameter_gets_a_gradient(tmp_path, tiny_encoder):
    torch.manual_seed(0)
    net = instantiate(tiny_net_args(tmp_path, tiny_encoder)["net"])
    batch = token_batch(tmp_path, tiny_encoder, ["Story 1: a river and a candle.", "Thunder over the meadow."])
    out = net(**batch)
    loss = out["final"]["emotion"].logsumexp(-1).sum() + sum(v.float().sum() for v in out["final"].values())
    loss.backward()
    names = [n for n, _ in net.encoder.named_parameters()]
    assert any(".layer.1." in n for n in names) and any("embeddings" in n for n in names)
    missing = [n for n, p in net.encoder.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


def test_padding_changes_no_output(tmp_path, tiny_encoder):
    torch.manual_seed(0)
    net = instantiate(tiny_net_args(tmp_path, tiny_encoder)["net"]).eval()
    text = ["Story 7: lantern, orchard and a falcon."]
    short, long = token_batch(tmp_path, tiny_encoder, text), token_batch(tmp_path, tiny_encoder, text, pad_to=40)
    assert long["input_ids"].shape[1] == 40 > short["input_ids"].shape[1]
    with torch.no_grad():
        a, b = net(**short), net(**long)
    for task in a["final"]:
        torch.testing.assert_close(a["final"][task], b["final"][task], atol=1e-5, rtol=1e-5)
    for module, outputs in a["modules"].items():  # every reader (heads, analyzers, GRU, DSP) ignores the padding
        for task, value in outputs.items():
            torch.testing.assert_close(value, b["modules"][module][task], atol=1e-5, rtol=1e-5, msg=module)


def test_llrd_gives_each_encoder_layer_its_configured_lr(tmp_path, tiny_encoder):
    net = instantiate(tiny_net_args(tmp_path, tiny_encoder)["net"])
    groups = parameter_groups(net, lr=1e-3, weight_decay=0.01, encoder={"lr": 1e-4, "layer_decay": 0.5})
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    seen = set()
    for name, param in net.named_parameters():
        if name.startswith("encoder.model.encoder.layer.1."):
            expected = 1e-4                     # top layer: the encoder LR
        elif name.startswith("encoder.model.encoder.layer.0."):
            expected = 1e-4 * 0.5               # one below
        elif name.startswith("encoder.model.embeddings."):
            expected = 1e-4 * 0.5**2            # lowest
        else:
            expected = 1e-3                     # everything else, encoder.project included
        assert lr_of[id(param)] == pytest.approx(expected), name
        seen.add(expected)
    assert len(seen) == 4
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


def test_token_cache_is_reused_without_loading_the_tokenizer(tmp_path, tiny_encoder):
    data = write_records(tmp_path / "d.jsonl", 70)

    def module() -> RedHeartDataModule:
        return RedHeartDataModule(str(data), embedding={"backend": "hashing", "dim": 32}, progress=False,
                                  split={"on_leakage": "warn"}, tokens={"model": str(tiny_encoder), "max_length": 16},
                                  batch_size=8)

    first = module()
    first.prepare_data()
    first.setup("fit")
    assert first.tokenizer.load_count == 1 and first.prepared.report["tokens"]["tokenized"] == 70
    second = module()
    second.prepare_data()
    second.setup("fit")
    assert second.tokenizer.load_count == 0  # every text found by its hash: the tokenizer never loaded
    assert second.prepared.report["tokens"]["hits"] == 70
    batch = next(iter(second.train_dataloader()))
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[1] <= 16
    assert torch.equal(batch["attention_mask"].sum(1) > 0, torch.ones(len(batch["label"]), dtype=torch.bool))
    assert all((a == b).all() for a, b in zip(first.token_ids, second.token_ids, strict=True))


def test_frozen_encoder_epochs_leave_the_encoder_unchanged(tmp_path, tiny_encoder):
    torch.manual_seed(0)
    args = tiny_net_args(tmp_path, tiny_encoder)
    args["encoder_optim"] = {"lr": 1e-3, "layer_decay": 0.9, "freeze_epochs": 1}
    args["scheduler"] = None
    lit = RedHeartLitModule(**args)
    optimizer = lit.configure_optimizers()["optimizer"]
    batch = token_batch(tmp_path, tiny_encoder, ["Story 3: velvet quarry.", "Ember and juniper."])

    def step() -> tuple[dict, dict]:
        before_enc = {n: p.detach().clone() for n, p in lit.net.encoder.model.named_parameters()}
        before_proj = lit.net.encoder.project.weight.detach().clone()
        out = lit.net(**batch)
        out["final"]["emotion"].logsumexp(-1).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        changed = {n: not torch.equal(p, before_enc[n]) for n, p in lit.net.encoder.model.named_parameters()}
        return changed, {"project": not torch.equal(lit.net.encoder.project.weight, before_proj)}

    lit._hold_encoder(0)  # epoch 0 < freeze_epochs: the pretrained encoder stays, its projection trains
    changed, project = step()
    assert not any(changed.values()) and project["project"]
    lit._hold_encoder(1)
    changed, _ = step()
    assert changed["encoder.layer.1.output.dense.weight"] and changed["embeddings.word_embeddings.weight"]


def test_parameter_table_prints_the_encoder_apart_and_keeps_the_seed_total(tmp_path, tiny_encoder):
    cfg = compose_for(tmp_path, "model=full", "encoder=finetune")
    args = model_arguments(cfg, 384, __import__("redheart.schema", fromlist=["TaskSchema"]).TaskSchema.from_config(
        **OmegaConf.to_container(cfg.data.schema, resolve=True)))
    table = parameter_table(build_on_meta(args["net"]), args["param_targets"])
    assert table["total"]["actual"] == 730_466_848 and not table["failures"]
    assert table["encoder"]["actual"] > 20_000_000  # MiniLM's transformer + the projection, counted apart
    printed = format_table(table)
    assert "730,466,848" in printed and "fine-tuned sentence encoder" in printed


def test_data_report_warns_when_hangul_meets_the_english_only_encoder():
    report = script_report(["오늘은 기뻤다", "I was happy", "슬펐다", "a fine day"], "packaged:all-MiniLM-L6-v2")
    assert report["scripts"] == {"Hangul": 0.5, "Latin": 0.5}
    assert "Hangul 50%" in report["warning"] and "multilingual" in report["warning"]
    assert script_report(["오늘은 기뻤다"], "/models/paraphrase-multilingual")["warning"] is None
    assert script_report(["plain English"], "packaged:all-MiniLM-L6-v2")["warning"] is None


def test_finetune_path_end_to_end_on_the_tiny_preset(tmp_path, tiny_encoder):
    from redheart.train import train

    data = write_records(tmp_path / "d.jsonl", 70)
    cfg = compose_for(tmp_path, *finetune_overrides(tiny_encoder, data), "trainer.max_epochs=2",
                      "callbacks.modular_checkpoint.every_n_epochs=1")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert metrics["epochs"] == 2 and metrics["test"]
    assert metrics["first_batch"]["input_ids"] == metrics["first_batch"]["attention_mask"]
    report = json.loads((run / "data_report.json").read_text())
    assert report["tokens"]["requested"] == 70 and report["language"]["scripts"]["Latin"] == 1.0
    manifest = json.loads((run / "modular" / "manifest.json").read_text())
    assert all("encoder" in entry["files"] for entry in manifest["checkpoints"])
    stats = json.loads((run / "modular" / "metrics_epoch_002.json").read_text())["groups"]["encoder"]
    for key in ("grad_norm_mean", "update_ratio", "dead_unit_fraction"):  # the monitors cover the encoder
        assert stats[key] is not None and math.isfinite(stats[key]), key
    params = json.loads((run / "parameters.json").read_text())
    assert params["encoder"]["actual"] > 0 and "encoder" not in params["modules"]


@pytest.mark.slow
def test_crash_and_resume_with_the_encoder_matches_the_uninterrupted_run(tmp_path, tiny_encoder):
    from redheart.train import train
    from tests.crash import SimulatedCrash
    from tests.test_resume import final_state, modular_tensors

    data = write_records(tmp_path / "d.jsonl", 70)
    run = (*finetune_overrides(tiny_encoder, data), "test=false", "trainer.max_epochs=3", "trainer.deterministic=true",
           "callbacks.modular_checkpoint.every_n_epochs=1", "optim.encoder.freeze_epochs=1")
    straight = tmp_path / "straight"
    train(compose_for(straight, *run))
    crashed = tmp_path / "crashed"
    with pytest.raises(SimulatedCrash):  # mid-epoch 2 (0-based 1): the first epoch after the encoder thaws
        train(compose_for(crashed, *run, "+callbacks.crash._target_=tests.crash.CrashAt", "+callbacks.crash.epoch=1",
                          "+callbacks.crash.batch=0"))
    assert train(compose_for(crashed, *run, "ckpt_path=last"))["epochs"] == 3
    raw_a, ema_a = final_state(straight / "run")
    raw_b, ema_b = final_state(crashed / "run")
    assert raw_a.keys() == raw_b.keys() and any(k.startswith("net.encoder.model.") for k in raw_a)
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    modular_a, modular_b = modular_tensors(straight / "run"), modular_tensors(crashed / "run")
    assert sorted(modular_b) == [1, 2, 3]
    for epoch, tensors in modular_a.items():
        assert any(k.split("/", 1)[-1].startswith("encoder.") for k in tensors)
        assert all(torch.equal(tensors[k], modular_b[epoch][k]) for k in tensors), epoch


def test_crossover_takes_the_encoder_from_its_own_epoch(tmp_path, tiny_encoder):
    from safetensors.torch import load_file

    from callbacks.modular_checkpoint import ModularCheckpoint
    from redheart.crossover.rebuild import build_net
    from redheart.crossover.run import crossover_and_evaluate
    from redheart.io import atomic_write_json

    cfg = compose_for(tmp_path, *finetune_overrides(tiny_encoder, tmp_path / "d.jsonl"))
    run_dir = Path(cfg.paths.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    atomic_write_json(run_dir / "run.json", {"config": config})
    atomic_write_json(run_dir / "metrics.json", {"embedding_dim": 64})
    writer = ModularCheckpoint(str(run_dir / "modular"), config["module_groups"])
    net = build_net(cfg, 64)
    writer._group_names = {g: list(m) for g, m in writer.module_groups.partition(net.named_parameters()).items()}
    assert "encoder" in writer._group_names
    for epoch in (1, 2, 3):  # every epoch's weights differ, so each tensor names its epoch
        torch.manual_seed(epoch)
        raw = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
        writer._write(epoch, raw, None, {"epoch": epoch, "weights_evaluated": "raw"})
    groups = list(config["module_groups"])
    choice = {g: 3 for g in groups} | {"encoder": 1}
    result = crossover_and_evaluate({**choice, "weights": "raw"}, {"enabled": False}, run_dir, None, tmp_path / "x")
    assembled = load_file(result["crossover"])
    encoder_names = [k for k in assembled if k.startswith("encoder.")]
    assert encoder_names and any(k.startswith("encoder.model.encoder.layer.") for k in encoder_names)
    for epoch_of, names in ((1, encoder_names), (3, [k for k in assembled if not k.startswith("encoder.")])):
        stored = {}
        for group in groups:
            path = run_dir / "modular" / f"epoch_{epoch_of:03d}" / f"{group}.safetensors"
            stored |= {k.split("/", 1)[1]: v for k, v in load_file(path).items() if k.startswith("raw/")}
        assert all(torch.equal(assembled[k], stored[k]) for k in names)
    build_net(cfg, 64).load_state_dict(assembled)  # strict: the assembled file is the whole net


def test_the_lr_sweep_can_sweep_the_encoder_lr(tmp_path):
    from redheart.sweep.records import job_entry, signature

    def cfg(*extra: str):
        return compose_for(tmp_path, "encoder=finetune", "lr_sweep.param=optim.encoder.lr", *extra)

    a, b = cfg("optim.encoder.lr=2e-5"), cfg("optim.encoder.lr=1e-4")
    assert signature(a) == signature(b)              # the swept LR is not part of what a job is
    assert signature(a) != signature(cfg("optim.lr=1e-3"))  # the rest's LR now is
    entry = job_entry(b, tmp_path / "job", tmp_path, "completed")
    assert entry["lr"] == pytest.approx(1e-4)
