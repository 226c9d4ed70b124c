"""The model bundle folder: everything needed to use one set of weights, and nothing executable.

    weights.safetensors  the network's full state dict (raw tensors: loading runs no code); a fine-tuned
                         encoder's weights live here too, under their own `encoder.` prefix
    config.json          format, the weights' sha256, network arguments, class/Bentham/SURD names, the
                         embedding model id and fingerprint, text cleaning, the calibrator (below),
                         provenance summary, selection (val) and test metrics with CIs
    README.md            the model card
    encoder/             only for a fine-tuned encoder: its tokenizer and Hugging Face config files (plain
                         JSON/text, each with its sha256 in config.json), so the bundle needs no download

`calibration` in config.json: the calibrator the probabilities come from, as plain numbers (nothing is
unpickled or run): {"method": temperature|vector|platt|isotonic|none, "params": {"kind": ..., ...},
"chosen_by", "fitted_on": "val", "records", "temperature"}. `params` are what
redheart.crossover.calibrators.fit returned and `apply_json(params, logits)` applies; the method is the
one the run's evaluation chose on val for these very weights (evaluation.json). A bundle exported without
such a choice (no analysis, or weights the evaluation did not calibrate) carries temperature scaling fitted
on val, and a bundle from before calibrators ({"temperature": T} alone) is read as temperature scaling.
`calibration_entry` writes the field and `calibration_params` reads and checks it; nothing else does.

Reading verifies before it builds anything: the format, every `_target_` against the allowlist (only the
network class), and the weights' sha256. The folder is written beside its destination and renamed into
place, so a bundle is either complete or absent.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from redheart.bundle.errors import BundleError
from redheart.crossover.calibrators import KINDS
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
    calibration_params(config, path)
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


def calibration_entry(temperature: float, records: int, chosen: Mapping[str, Any] | None) -> dict[str, Any]:
    """config.json's `calibration`: the calibrator chosen on val (`chosen_calibrator`'s answer), or
    temperature scaling when nothing was chosen for these weights. `temperature` (fitted on the same val
    records) is kept in either case: it is what the card and older readers show beside the method."""
    common = {"fitted_on": "val", "records": int(records), "temperature": float(temperature)}
    if chosen is None:
        return {"method": "temperature", "params": {"kind": "temperature", "temperature": float(temperature)},
                "chosen_by": "fallback: no evaluation calibrated these weights (run analyze.py to choose on val)",
                **common}
    return {"method": chosen["method"], "params": dict(chosen["params"]), "chosen_by": chosen.get("chosen_by"),
            "candidate": chosen.get("candidate"), "source": "evaluation.json", **common}


def _numbers(value: Any, where: str, field: str, length: int | None = None) -> list[float]:
    """`value` as a list of finite numbers (of `length` when given), else a BundleError naming the field."""
    ok = isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                                         for v in value)
    if not ok or (length is not None and len(value) != length):
        size = f"{length} " if length is not None else ""
        raise BundleError(f"{where}: field {field!r} must be a list of {size}finite numbers; export the bundle "
                          "again from its run")
    return [float(v) for v in value]


def _positive(value: Any, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise BundleError(f"{where}: field {field!r} is {value!r}, expected a positive number; export the bundle "
                          "again from its run")
    return float(value)


def calibration_params(config: Mapping[str, Any], where: str | Path) -> dict[str, Any]:
    """The checked calibrator parameters of a bundle's config (what `apply_json` takes).

    Every shape is checked against the bundle's classes, so a damaged or hand-edited calibrator fails at
    load with its file and field named, never as a numpy error inside predict."""
    where = str(where)
    calibration = config.get("calibration")
    if calibration is None:
        return {"kind": "temperature", "temperature": 1.0}
    if not isinstance(calibration, dict):
        raise BundleError(f"{where}: field 'calibration' must be an object")
    params = calibration.get("params")
    if params is None:  # a bundle from before calibrators: temperature scaling, T = 1 when absent
        temperature = calibration.get("temperature")
        t = 1.0 if temperature is None else _positive(temperature, where, "calibration.temperature")
        return {"kind": "temperature", "temperature": t}
    if not isinstance(params, dict):
        raise BundleError(f"{where}: field 'calibration.params' must be an object")
    kind, method = params.get("kind"), calibration.get("method")
    if kind not in KINDS.values():
        raise BundleError(f"{where}: field 'calibration.params.kind' is {kind!r}, not a calibrator this version "
                          f"knows ({', '.join(KINDS.values())}); export the bundle again or upgrade redheart")
    if KINDS.get(method) != kind:
        raise BundleError(f"{where}: field 'calibration.method' is {method!r}, which does not fit its parameters' "
                          f"kind {kind!r} (expected method {next(m for m, k in KINDS.items() if k == kind)!r})")
    classes = len((config.get("schema") or {}).get("class_names") or [])
    field = "calibration.params"
    if kind == "temperature":
        return {"kind": kind, "temperature": _positive(params.get("temperature"), where, f"{field}.temperature")}
    if kind == "vector":
        return {"kind": kind, "scale": _numbers(params.get("scale"), where, f"{field}.scale", classes),
                "bias": _numbers(params.get("bias"), where, f"{field}.bias", classes)}
    if kind == "platt_ovr":
        return {"kind": kind, "coef": _numbers(params.get("coef"), where, f"{field}.coef", classes),
                "intercept": _numbers(params.get("intercept"), where, f"{field}.intercept", classes)}
    if kind == "isotonic_ovr":
        xs, ys = params.get("x"), params.get("y")
        for name, value in (("x", xs), ("y", ys)):
            if not isinstance(value, list) or len(value) != classes:
                raise BundleError(f"{where}: field '{field}.{name}' must hold one list per class ({classes}); "
                                  "export the bundle again from its run")
        checked_x, checked_y = [], []
        for c, (x, y) in enumerate(zip(xs, ys, strict=True)):
            x = _numbers(x, where, f"{field}.x[{c}]")
            y = _numbers(y, where, f"{field}.y[{c}]", len(x))
            if not x or any(b < a for a, b in itertools.pairwise(x)) or any(not 0 <= v <= 1 for v in y):
                raise BundleError(f"{where}: field '{field}.x[{c}]'/'y[{c}]' must be a non-empty increasing "
                                  "step function with values in [0, 1]; export the bundle again from its run")
            checked_x.append(x)
            checked_y.append(y)
        return {"kind": kind, "x": checked_x, "y": checked_y}
    return {"kind": kind}
