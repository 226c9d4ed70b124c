"""`evaluate_bundle(...)`: a bundle measured on any labelled dataset described by a data config.

Every valid labelled record is a test record: the data pipeline's reading, validation and near-duplicate
removal run (and are reported) exactly as for training, but nothing is split off, since none of these
records trained the bundle (unless they did: the report names the training data's sha256 beside this
file's). Metrics are the crossover evaluation's own definitions (redheart.crossover: torchmetrics task
metrics, ECE/Brier/NLL before and after the bundle's calibrator (the method chosen on val that the bundle
carries, or its temperature), percentile bootstrap CIs), plus sklearn's
per-class report and a confusion matrix. Optionally the training run's logistic-regression baseline
(fitted on that run's train split, C chosen on its val split) is scored on the same records.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from redheart.bundle.errors import BundleError
from redheart.bundle.model import RedHeartModel, load_model
from redheart.io import atomic_write_json, atomic_write_text, nulls_for_non_finite, sha256_file
from redheart.schema import Record

log = logging.getLogger(__name__)
DATA_KEYS = ("path", "format", "table", "clean", "on_invalid", "max_text_chars", "max_samples", "dedup_threshold",
             "schema")


def labelled_records(model: RedHeartModel, data: dict[str, Any]) -> tuple[list[Record], dict[str, Any]]:
    """Read → validate → dedup with the data config's settings and the bundle's task names; no split."""
    from redheart.data.dedup import deduplicate
    from redheart.data.errors import DataFileError, DataValidationError
    from redheart.data.pipeline import _select_samples, read_raw_records
    from redheart.data.validation import TextCleaning, validate_records

    path = Path(str(data.get("path") or "")).expanduser()
    if not str(data.get("path") or "") or str(data.get("path")) == "???":
        raise BundleError("data.path=FILE is required: the labelled dataset to evaluate on")
    given = data.get("schema") or {}
    if given.get("class_names") and list(given["class_names"]) != list(model.class_names):
        log.warning("data.schema.class_names %s differ from the bundle's %s: labels are read as the bundle's "
                    "classes", list(given["class_names"]), list(model.class_names))
    kind, raw = read_raw_records(path, model.schema, data.get("format") or "auto", data.get("table"))
    n_in_file = len(raw)
    raw = _select_samples(raw, data.get("max_samples"), 0)
    validated = validate_records(raw, model.schema, str(path), TextCleaning.from_config(data.get("clean")),
                                 int(data.get("max_text_chars") or 20_000))
    if validated.problems and (data.get("on_invalid") or "error") == "error":
        raise DataValidationError(validated.problems, validated.n_read)
    if not validated.records:
        raise DataFileError(path, f"no valid labelled record among {validated.n_read}")
    threshold = float(data.get("dedup_threshold") or 0.92)
    dedup = deduplicate([r.text for r in validated.records], threshold, progress=False)
    kept = [validated.records[i] for i in dedup.kept_indices]
    counts = {"in_file": n_in_file, "read": len(raw), "quarantined": len(validated.quarantined),
              "near_duplicates": dedup.n_dropped, "kept": len(kept)}
    counts["reconciles"] = counts["read"] == counts["kept"] + counts["near_duplicates"] + counts["quarantined"]
    report = {"source": {"path": str(path), "sha256": sha256_file(path), "format": kind}, "counts": counts,
              "validation": {"on_invalid": data.get("on_invalid") or "error", "problems": len(validated.problems),
                             "examples": [str(p) for p in validated.problems[:10]]},
              "dedup": {"threshold": threshold, "dropped": dedup.n_dropped},
              "split": "none: every kept record is a test record"}
    return kept, report


@torch.no_grad()
def run_network(model: RedHeartModel, records: list[Record], batch_size: int) -> tuple[Any, np.ndarray]:
    """Predictions (logits, labels, every task metric the targets allow) and the embeddings."""
    from redheart.crossover.evaluate import Predictions
    from redheart.data.datamodule import EmbeddingDataset
    from redheart.data.tokens import pad_collate
    from redheart.model.net import MODULE_TASKS, net_inputs
    from redheart.training.metrics import TaskMetrics

    collate, token_ids = None, None
    if model.tokenizer is not None:  # fine-tuned encoder: token ids, no sentence embeddings
        token_ids = [np.asarray(x) for x in model.tokenizer.encode([model.cleaning.clean(r.text) for r in records])]
        embeddings = np.zeros((len(records), 0), dtype=np.float32)
        collate = pad_collate(model.tokenizer.pad_id)
    else:
        chunks = [model.embed([r.text for r in records[i:i + batch_size]]).numpy()
                  for i in range(0, len(records), batch_size)]
        embeddings = np.concatenate(chunks)
    dataset = EmbeddingDataset(records, embeddings, np.arange(len(records)), model.schema, token_ids)
    metrics = TaskMetrics(len(model.class_names), len(model.schema.bentham_names), MODULE_TASKS).to(model.device)
    logits, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        batch = {k: v.to(model.device) for k, v in batch.items()}
        out = model.net(**net_inputs(batch))
        metrics.update(out, batch)
        logits.append(out["final"]["emotion"].float().cpu())
        labels.append(batch["label"].cpu())
    return Predictions(torch.cat(logits), torch.cat(labels), None, metrics.compute()), embeddings


def confusion_png(matrix: np.ndarray, names: tuple[str, ...], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from redheart.io import atomic_write_with

    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 1.0 * len(names) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    high = matrix.max() / 2 if matrix.size else 0
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > high else "black", fontsize=8)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path


def _baseline(run: Path, model: RedHeartModel, embeddings: np.ndarray, predictions: Any, settings: dict[str, Any],
              boot: dict[str, Any], bins: int) -> dict[str, Any]:
    from redheart.crossover.baseline import DEFAULT_C, fit_logistic_regression, predict_log_probs
    from redheart.crossover.evaluate import Predictions, summarize
    from redheart.crossover.rebuild import datamodule_of, run_config
    from redheart.crossover.run import metric_cis, versus

    if model.tokenizer is not None:
        raise BundleError(f"baseline={run}: the logistic-regression baseline reads frozen sentence embeddings, which "
                          "a bundle with a fine-tuned encoder does not have; run without baseline")
    cfg = run_config(run)
    datamodule = datamodule_of(cfg)
    if datamodule.encoder.model_id != model.config["embedding"]["model_id"]:
        raise BundleError(f"baseline={run}: its embedding model {datamodule.encoder.model_id!r} is not the "
                          f"bundle's {model.config['embedding']['model_id']!r}")
    fit = fit_logistic_regression(datamodule.datasets, len(model.class_names), settings.get("C") or DEFAULT_C,
                                  int(settings.get("max_iter", 2000)), int(boot["seed"]))
    ours = Predictions(predict_log_probs(fit, embeddings, len(model.class_names)), predictions.labels, None)
    return {"name": "logistic_regression", "run_dir": str(run), "C": fit.C, "converged": fit.converged,
            "chosen_by": "the run's val emotion log-loss", **summarize(ours, 1.0, bins),
            "ci": metric_cis(ours, boot), "bundle_minus_baseline": versus(ours, predictions, boot)}


def evaluate_bundle(bundle: str | Path, data: dict[str, Any], out_dir: str | Path | None = None,
                    batch_size: int | None = None, device: str | None = None, bootstrap: dict[str, Any] | None = None,
                    bins: int = 15, baseline: Any = None, baseline_settings: dict[str, Any] | None = None,
                    embedding_model: str | None = None) -> dict[str, Any]:
    """Measure the bundle on every valid record of `data`; write evaluation.json, evaluation_report.md and
    confusion_matrix.png in `out_dir` (default: ./evaluation_<data file stem>)."""
    from sklearn.metrics import classification_report, confusion_matrix

    from redheart.bundle.report import evaluation_report
    from redheart.crossover.calibrators import scaled_scores
    from redheart.crossover.evaluate import summarize
    from redheart.crossover.run import metric_cis

    started = time.monotonic()
    model = load_model(bundle, device=device, embedding_model=embedding_model)
    records, data_report = labelled_records(model, data)
    if len(records) < 2:
        raise BundleError(f"data.path={data.get('path')}: {len(records)} valid record(s); the bootstrap needs two")
    size = int(batch_size or model.batch_size)
    predictions, embeddings = run_network(model, records, size)
    boot = {"resamples": 1000, "confidence": 0.95, "seed": 0, **(bootstrap or {})}
    summary = summarize(predictions, model.temperature, bins)
    # ECE/Brier/NLL after the bundle's own calibrator (what predict's probabilities are), not the temperature's
    summary |= scaled_scores(model.calibrator, predictions.logits, predictions.labels, bins, model.calibration_method)
    summary.pop("loss")  # the bundle carries no training loss settings; the tasks' own metrics are below
    labels, predicted = predictions.labels.numpy(), predictions.predicted.numpy()
    classes = list(range(len(model.class_names)))
    matrix = confusion_matrix(labels, predicted, labels=classes)
    result: dict[str, Any] = {
        "bundle": str(model.folder), "data": data_report, "records": len(records),
        "metrics": summary | {"ci": metric_cis(predictions, boot)},
        "per_class": classification_report(labels, predicted, labels=classes, target_names=list(model.class_names),
                                           output_dict=True, zero_division=0),
        "confusion_matrix": {"classes": list(model.class_names), "matrix": matrix.tolist()},
        "bootstrap": boot, "calibration_bins": bins,
        "trained_on": (model.config.get("provenance") or {}).get("data", {}).get("sha256"),
    }
    if baseline:
        run = Path(str(baseline)) if baseline is not True and str(baseline).lower() != "true" else Path(
            model.config["provenance"]["run_dir"])
        result["baseline"] = _baseline(run, model, embeddings, predictions, baseline_settings or {}, boot, bins)
    out = Path(out_dir) if out_dir else Path(f"evaluation_{Path(str(data['path'])).stem}")
    out.mkdir(parents=True, exist_ok=True)
    confusion_png(matrix, model.class_names, out / "confusion_matrix.png", f"{Path(str(data['path'])).name}")
    result["seconds"] = round(time.monotonic() - started, 2)
    result = nulls_for_non_finite(result)
    atomic_write_json(out / "evaluation.json", result)
    atomic_write_text(out / "evaluation_report.md", evaluation_report(result))
    log.info("evaluated %s on %d records of %s: accuracy %.4f, macro-F1 %.4f; report in %s", model.folder,
             len(records), data["path"], summary["accuracy"], summary["macro_f1"], out / "evaluation_report.md")
    result["out_dir"] = str(out)
    return result
