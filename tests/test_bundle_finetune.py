"""A bundle from a run that fine-tuned its encoder (tiny in-process BERT): self-contained, exact, verified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from redheart import load_model
from redheart.bundle.errors import BundleError
from redheart.bundle.evaluate import evaluate_bundle
from redheart.bundle.export import export_bundle
from redheart.crossover.rebuild import build_net, run_config
from redheart.train import train
from tests.conftest import compose_for, distinct_text, write_records
from tests.test_bundle import entry
from tests.test_encoder import finetune_overrides

TEXTS = ["A short one.", "Story 5: the lantern, the orchard and a falcon over the frozen meadow at dawn.",
         "Thunder.", "I waited for hours and nobody came; the candle burned down to nothing."]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_encoder) -> tuple[Path, Path]:
    """(run folder, bundle folder): 2 epochs of encoder=finetune on the tiny preset, last epoch exported."""
    root = tmp_path_factory.mktemp("finetune_bundle")
    torch.set_num_threads(1)
    cfg = compose_for(root, *finetune_overrides(tiny_encoder, write_records(root / "d.jsonl", 70)),
                      "trainer.max_epochs=2", "callbacks.modular_checkpoint.every_n_epochs=1")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    return run_dir, export_bundle(run_dir, "last", root / "bundle", bootstrap={"resamples": 50})


def test_the_bundle_carries_the_encoder_and_nothing_executable(bundle, tiny_encoder):
    _, folder = bundle
    config = json.loads((folder / "config.json").read_text())
    encoder = config["encoder"]
    assert encoder["max_length"] == 24 and encoder["model"] == str(tiny_encoder)
    assert encoder["tokenizer_model_id"].startswith("tokenizer:bert:")
    assert sorted(encoder["files"]) == sorted(p.name for p in (folder / "encoder").iterdir())
    assert {"config.json", "tokenizer.json", "vocab.txt"} <= set(encoder["files"])
    assert all(p.suffix in (".json", ".txt") for p in (folder / "encoder").iterdir())  # no weights, no code
    assert config["net"]["encoder"]["model"] == "encoder" and config["net"]["encoder"]["pretrained"] is False
    assert "Fine-tuned encoder" in (folder / "README.md").read_text()
    weights = load_file(folder / "weights.safetensors")
    assert any(k.startswith("encoder.model.encoder.layer.1.") for k in weights)


def test_predict_gives_the_networks_own_logits(bundle, tiny_encoder):
    from transformers import AutoTokenizer

    run_dir, folder = bundle
    model = load_model(folder, device="cpu")
    got = model.outputs(TEXTS, batch_size=3)  # batches padded, sorted by length, unsorted back
    # the reference: the run's own net (built from the original encoder folder) with the bundle's weights,
    # each text tokenized alone by the original tokenizer (no padding at all)
    net = build_net(run_config(run_dir), 64)
    net.load_state_dict(load_file(folder / "weights.safetensors"), strict=True)
    net.eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    with torch.no_grad():
        for i, text in enumerate(TEXTS):
            ids = tokenizer(model.cleaning.clean(text), truncation=True, max_length=24, return_tensors="pt")
            out = net(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
            torch.testing.assert_close(torch.from_numpy(got.logits[i]), out["final"]["emotion"][0], atol=1e-5,
                                       rtol=0)
    assert len(got) == len(TEXTS) and not np.allclose(got.logits[0], got.logits[1])
    rows = model.predict(TEXTS[0])
    assert rows[0]["label"] in model.class_names


def test_evaluation_and_predict_entry_point_work_on_it(bundle, tmp_path):
    _, folder = bundle
    data = write_records(tmp_path / "e.jsonl", 14)
    result = evaluate_bundle(folder, {"path": str(data)}, tmp_path / "eval", batch_size=5, device="cpu",
                             bootstrap={"resamples": 20})
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    logits = load_model(folder, device="cpu").outputs([r["text"] for r in rows]).logits
    direct = float(np.mean(logits.argmax(1) == np.array([r["label"] for r in rows])))
    assert result["records"] == 14 and result["metrics"]["accuracy"] == pytest.approx(direct)
    done = entry("predict.py", f"bundle={folder}", f"text={distinct_text(3)}")
    assert done.returncode == 0 and '"label"' in done.stdout, done.stderr


def test_a_tampered_encoder_file_or_weights_fail_the_sha256(bundle, tmp_path):
    import shutil

    _, folder = bundle
    for name, change in (("encoder/vocab.txt", b"x"), ("encoder/config.json", b" "), ("weights.safetensors", b"\0")):
        copy = tmp_path / name.replace("/", "_")
        shutil.copytree(folder, copy)
        with (copy / name).open("ab") as fh:
            fh.write(change)
        with pytest.raises(BundleError, match="sha256"):
            load_model(copy, device="cpu")
    extra = tmp_path / "extra"
    shutil.copytree(folder, extra)
    (extra / "encoder" / "modeling_evil.py").write_text("import os\n")
    with pytest.raises(BundleError, match="does not list"):
        load_model(extra, device="cpu")
