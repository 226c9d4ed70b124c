"""evaluate.py's evaluation_report.md, rendered from its evaluation.json content alone."""

from __future__ import annotations

from typing import Any


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _ci(m: dict[str, Any]) -> str:
    return f"{_pct(m['value'])} [{_pct(m['ci_low'])}, {_pct(m['ci_high'])}]"


def _method(metrics: dict[str, Any]) -> str:
    method = metrics.get("calibration_method") or "temperature"
    return f"T = {metrics['temperature']:.3f}" if method in ("temperature", "temperature scaling") else method


def evaluation_report(result: dict[str, Any]) -> str:
    data, metrics = result["data"], result["metrics"]
    counts, ci = data["counts"], metrics["ci"]
    lines = [
        "# Bundle evaluation", "",
        f"Bundle `{result['bundle']}` on `{data['source']['path']}` (sha256 `{data['source']['sha256']}`, "
        f"{data['source']['format']}).", "",
        "## Data", "",
        f"Every valid labelled record is a test record (no split). Read {counts['read']} = kept {counts['kept']} + "
        f"near-duplicates {counts['near_duplicates']} (threshold {data['dedup']['threshold']}) + quarantined "
        f"{counts['quarantined']} ({data['validation']['problems']} validation problems, "
        f"on_invalid={data['validation']['on_invalid']}).",
    ]
    if result.get("trained_on") == data["source"]["sha256"]:
        lines += ["", "**Warning:** this is the file the bundle was trained on: these numbers include its "
                      "training records and are not a test of generalisation."]
    lines += ["", "## Emotion", "",
              "| metric | value (95% bootstrap CI) |", "|---|---|",
              f"| accuracy | {_ci(ci['accuracy'])} |", f"| macro-F1 | {_ci(ci['macro_f1'])} |",
              f"| ECE (raw → calibrated, {_method(metrics)}) | {metrics['ece']:.4f} → "
              f"{metrics['ece_scaled']:.4f} |",
              f"| Brier (raw → calibrated) | {metrics['brier']:.4f} → {metrics['brier_scaled']:.4f} |", "",
              "![confusion matrix](confusion_matrix.png)", "",
              "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name in result["confusion_matrix"]["classes"]:
        row = result["per_class"].get(name, {})
        lines.append(f"| {name} | {row.get('precision', 0):.3f} | {row.get('recall', 0):.3f} | "
                     f"{row.get('f1-score', 0):.3f} | {int(row.get('support', 0))} |")
    tasks = metrics.get("tasks") or {}
    lines += ["", "## Other tasks (where the data has targets)", ""]
    if any(not k.startswith("emotion/") for k in tasks):
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in sorted(tasks.items())
                  if not k.startswith("emotion/") and v is not None]
    else:
        lines.append("None: the data has no intensity, regret, Bentham or SURD targets.")
    if result.get("baseline"):
        b = result["baseline"]
        diff = b["bundle_minus_baseline"]
        lines += ["", f"## Logistic-regression baseline (C={b['C']:g}, from {b['run_dir']})", "",
                  f"Accuracy {_ci(b['ci']['accuracy'])}, macro-F1 {_ci(b['ci']['macro_f1'])}. Bundle − baseline: "
                  f"accuracy {100 * diff['accuracy']['difference']:+.1f} points "
                  f"[{100 * diff['accuracy']['ci_low']:+.1f}, "
                  f"{100 * diff['accuracy']['ci_high']:+.1f}], macro-F1 {100 * diff['macro_f1']['difference']:+.1f} "
                  f"[{100 * diff['macro_f1']['ci_low']:+.1f}, {100 * diff['macro_f1']['ci_high']:+.1f}] "
                  "(paired bootstrap)."]
    lines += ["", f"{result['bootstrap']['resamples']} bootstrap resamples (seed {result['bootstrap']['seed']}); "
                  f"{result['seconds']} s.", ""]
    return "\n".join(lines)
