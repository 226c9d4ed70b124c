"""The model bundle folder: everything needed to use one set of weights, and nothing executable.

    weights.safetensors  the network's full state dict (raw tensors: loading runs no code); a fine-tuned
                         encoder's weights live here too, under their own `encoder.` prefix
    config.json          format, the weights' sha256, network arguments, class/Bentham/SURD names, the
                         embedding model id and fingerprint, text cleaning, calibration temperature,
                         provenance summary, selection (val) and test metrics with CIs
    README.md            the model card
    encoder/             only for a fine-tuned encoder: its tokenizer and Hugging Face config files (plain
                         JSON/text, each with its sha256 in config.json), so the bundle needs no download

Reading verifies before it builds anything: the format, every `_target_` against the allowlist (only the
network class), and the weights' sha256. The folder is written beside its destination and renamed into
place, so a bundle is either complete or absent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from redheart.bundle.errors import BundleError
from redheart.io import atomic_write_json, atomic_write_text, nulls_for_non_finite, read_json, sha256_file
from redheart.safe_targets import NET, check_targets

FORMAT = "redheart-bundle-v1"
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
CARD = "README.md"
ENCODER_DIR = "encoder"


def write_bundle(out_dir: str | Path, state: Mapping[str, torch.Tensor], config: dict[str, Any],
                 card: Callable[[dict[str, Any]], str], encoder_files: Mapping[str, Path] | None = None) -> Path:
    """Write weights, config.json (with the weights' sha256) and the card; replace an older bundle atomically.

    `encoder_files`: name → source file, copied into `encoder/` and hashed into config["encoder"]["files"]."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not (out / CONFIG).is_file() and any(out.iterdir()):
        raise BundleError(f"out={out} exists and is not a model bundle; choose an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        save_file(tensors, str(tmp / WEIGHTS), {"format": FORMAT})
        if encoder_files:
            (tmp / ENCODER_DIR).mkdir()
            for name, source in encoder_files.items():
                shutil.copyfile(source, tmp / ENCODER_DIR / name)
            config = {**config, "encoder": {**config["encoder"], "files": {
                name: sha256_file(tmp / ENCODER_DIR / name) for name in sorted(encoder_files)}}}
        config = {"format": FORMAT, "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS),
                                                "bytes": (tmp / WEIGHTS).stat().st_size, "tensors": len(tensors)},
                  **config}
        config = nulls_for_non_finite(config)
        atomic_write_json(tmp / CONFIG, config)
        atomic_write_text(tmp / CARD, card(config))
        os.chmod(tmp, 0o755)
        if out.exists():  # an older bundle: move it aside, then swap (two renames, no partial state)
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_config(bundle_dir: str | Path, verify_weights: bool = True) -> tuple[Path, dict[str, Any]]:
    """(folder, config.json) of a bundle, checked: format, allowlisted `_target_`s, the weights' sha256."""
    folder = Path(bundle_dir).expanduser()
    if not folder.is_dir():
        raise BundleError(f"bundle {folder}: no such folder; give the folder export.py or analyze.py wrote "
                          "(it holds config.json and weights.safetensors)")
    path = folder / CONFIG
    if not path.is_file():
        raise BundleError(f"bundle {folder}: {CONFIG} is missing; this is not a model bundle (export one with "
                          "python export.py ckpt_dir=RUN out=DIR)")
    config = read_json(path, BundleError)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise BundleError(f"{path}: field 'format' is {got!r}, expected {FORMAT!r}")
    check_targets(config, str(path), BundleError, frozenset({NET}))
    net = config.get("net")
    if not isinstance(net, dict) or net.get("_target_") != NET:
        raise BundleError(f"{path}: field 'net' must hold the network's arguments with _target_ {NET!r}")
    for field in ("schema", "embedding", "weights"):
        if not isinstance(config.get(field), dict):
            raise BundleError(f"{path}: field {field!r} is missing or not an object")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise BundleError(f"bundle {folder}: {WEIGHTS} is missing; export the bundle again")
    if verify_weights:
        expected, actual = config["weights"].get("sha256"), sha256_file(weights)
        if actual != expected:
            raise BundleError(f"{weights}: sha256 {actual} differs from config.json's {expected}: the weights "
                              "changed after export; export the bundle again from its run")
        if config.get("encoder") is not None:
            verify_encoder_files(folder, config)
    return folder, config


def verify_encoder_files(folder: Path, config: dict[str, Any]) -> None:
    """The fine-tuned encoder's files are exactly those listed in config.json, each with its sha256."""
    encoder = config["encoder"]
    files = encoder.get("files") if isinstance(encoder, dict) else None
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{folder / CONFIG}: field 'encoder' must list its files with their sha256")
    present = {p.name for p in (folder / ENCODER_DIR).iterdir()} if (folder / ENCODER_DIR).is_dir() else set()
    unlisted = sorted(present - set(files))
    if unlisted:
        raise BundleError(f"bundle {folder}: {ENCODER_DIR}/ holds files config.json does not list ({unlisted}); "
                          "export the bundle again from its run")
    for name, expected in files.items():
        path = folder / ENCODER_DIR / name
        if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
            raise BundleError(f"bundle {folder}: encoder file {name!r} is missing; export the bundle again")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(f"{path}: sha256 {actual} differs from config.json's {expected}: the encoder's files "
                              "changed after export; export the bundle again from its run")
