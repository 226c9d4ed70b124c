"""The bundle's model card (README.md), rendered from its config.json alone, so the two never disagree."""

from __future__ import annotations

from typing import Any


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _ci(metric: dict[str, Any] | None) -> str:
    if not metric:
        return "—"
    return f"{_pct(metric['value'])} [{_pct(metric['ci_low'])}, {_pct(metric['ci_high'])}]"


def _encoder_line(encoder: dict[str, Any] | None, embedding: dict[str, Any]) -> str:
    if encoder:
        return (f"Fine-tuned encoder: `{encoder.get('model')}` (tokenizer `{encoder.get('tokenizer_model_id')}`, "
                f"max_length {encoder.get('max_length')}); weights in weights.safetensors, tokenizer and config "
                "files in encoder/ (sha256-checked)")
    return (f"Embedding model: `{embedding.get('model_id')}` (input width {embedding.get('input_dim')}); predict "
            "refuses\n  any other installed model")


METHOD_NAMES = {"temperature": "temperature scaling", "vector": "vector scaling",
                "platt": "Platt scaling (one-vs-rest)",
                "isotonic": "isotonic regression (one-vs-rest)", "none": "none (plain softmax)"}


def _calibration_line(calibration: dict[str, Any]) -> str:
    method = calibration.get("method")
    temperature = calibration.get("temperature") or 1.0
    if calibration.get("params") is None:  # a bundle from before calibrators
        return f"Calibration: temperature scaling (T = {temperature:.4f}), fitted on val"
    name = METHOD_NAMES.get(method, str(method))
    if calibration.get("source") == "evaluation.json":
        return (f"Calibration: {name}, fitted on val ({calibration.get('records')} records) and chosen there "
                f"({calibration.get('chosen_by')}) for these weights;\n  predict's probabilities come from it. "
                f"The label is the network's own argmax (what the metrics below score); temperature on the same "
                f"val: T = {temperature:.4f}")
    return (f"Calibration: {name} (T = {temperature:.4f}), fitted on val ({calibration.get('records')} records); no "
            "analysis chose a calibrator\n  for these weights (analyze.py compares temperature, vector, Platt and "
            "isotonic on val)")


def model_card(config: dict[str, Any]) -> str:
    prov, metrics = config.get("provenance") or {}, config.get("metrics") or {}
    selection, data = prov.get("selection") or {}, prov.get("data") or {}
    test, val = metrics.get("test") or {}, metrics.get("selection") or {}
    schema, embedding = config["schema"], config["embedding"]
    counts = data.get("counts") or {}
    sizes = data.get("split_sizes") or {}
    tasks = test.get("tasks") or {}
    task_rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(tasks.items()) if isinstance(v, int | float))
    ci = test.get("ci") or {}
    val_row = (f"| val (selection) | {val.get('records')} | {_pct(val.get('accuracy'))} | "
               f"{_pct(val.get('macro_f1'))} | {val.get('ece_scaled', 0):.4f} | {val.get('brier_scaled', 0):.4f} |")
    test_row = (f"| test | {test.get('records')} | {_ci(ci.get('accuracy'))} | {_ci(ci.get('macro_f1'))} | "
                f"{test.get('ece_scaled', 0):.4f} | {test.get('brier_scaled', 0):.4f} |")
    return f"""# RedHeart model bundle: {selection.get('name', '?')}

A multi-task emotion and ethics model (RedHeartNet) over sentence embeddings: the emotion label with
calibrated probabilities, intensity, regret, Bentham hedonic-calculus scores and SURD scores.

## Use

    from redheart import load_model
    model = load_model("{'<this folder>'}")
    model.predict(["I finally passed the exam."])

    python predict.py bundle=<this folder> input=texts.jsonl output=predictions.jsonl
    python evaluate.py bundle=<this folder> data=records data.path=labelled.jsonl

## What it is

- Weights: `{config['weights']['file']}` (sha256 `{config['weights']['sha256']}`), {selection.get('weights')}
  weights, selection `{selection.get('select')}` ({selection.get('name')}); recipe per module group:
  {', '.join(f"{g}={'+'.join(map(str, e))}" for g, e in (selection.get('recipe') or {}).items())}
- Classes: {', '.join(schema['class_names'])}
- Bentham: {', '.join(schema['bentham_names'])}; SURD: {', '.join(schema['surd_names'])}
- {_encoder_line(config.get('encoder'), embedding)}
- {_calibration_line(config.get('calibration') or {})}

## Data

Trained on `{data.get('path')}` (sha256 `{data.get('sha256')}`): read {counts.get('read')}, kept
{counts.get('kept')} (near-duplicates {counts.get('near_duplicates')}, quarantined {counts.get('quarantined')});
train/val/test {sizes.get('train')}/{sizes.get('val')}/{sizes.get('test')} (seed {data.get('seed')}).
Run: `{prov.get('run_dir')}`, commit `{prov.get('git_commit')}`.

## Metrics

| split | records | accuracy | macro-F1 | ECE (calibrated) | Brier (calibrated) |
|---|---|---|---|---|---|
{val_row}
{test_row}

Test intervals: 95% percentile bootstrap over records. Other tasks on test:

| metric | value |
|---|---|
{task_rows}

## Intended use and limits

For research on emotion recognition and on how far a model trained on one corpus carries to another
(measure it with evaluate.py on your labelled data before relying on it). Not for decisions about
people. It knows only the classes above; text far from its training data (other languages, domains,
lengths) gets confident-looking but unreliable outputs: watch the uncertainty fields (Kalman variance,
module disagreement). Bentham and SURD scores are learned from proxy ratings where the data had them.
"""
