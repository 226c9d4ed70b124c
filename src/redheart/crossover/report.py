"""The evaluation's files: evaluation.json, tables, figures and `final_report.md` (what was compared, how,
and whether the crossover beat best single).

The report links (relative paths) to every artefact of the pipeline that exists: the data report, the
LR sweep, the training curves, the sweet-spot analysis, the comparison; a missing one is named as
missing, never silently left out. The verdict is mechanical: "beat best single" only when the 95%
paired-bootstrap interval of the test difference lies entirely above 0.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from redheart.crossover.checkpoints import RunCheckpoints  # noqa: E402
from redheart.crossover.errors import CrossoverError  # noqa: E402
from redheart.crossover.paper_tables import write_paper_tables  # noqa: E402
from redheart.crossover.tables import TASK_COLUMNS, latex_table, markdown_table, task_tables  # noqa: E402
from redheart.io import atomic_write_json, atomic_write_text, atomic_write_with, read_json  # noqa: E402
from redheart.run_folder import EPOCH_HISTORY, RUN_INFO  # noqa: E402


def _save(fig, path: Path) -> Path:
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return path


def bar_chart(results: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Top: test accuracy and macro-F1 per candidate with their bootstrap CIs, on an axis fitted to the
    intervals (from 0 to 100 the differences would not show). Bottom: difference to best single with its CI."""
    labels = [r["label"] for r in results]
    x = range(len(results))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8.0, 0.7 * len(results)), 8), sharex=True)
    width = 0.4
    for offset, metric, name in ((-width / 4, "accuracy", "accuracy"), (width / 4, "macro_f1", "macro-F1")):
        value = [100 * r["test"][metric] for r in results]
        cis = [(r["test"].get("ci") or {}).get(metric) for r in results]
        low = [v - 100 * c["ci_low"] if c else 0.0 for v, c in zip(value, cis, strict=True)]
        high = [100 * c["ci_high"] - v if c else 0.0 for v, c in zip(value, cis, strict=True)]
        top.errorbar([i + offset for i in x], value, yerr=[low, high], fmt="o", capsize=3, label=name)
    confidence = next((c["confidence"] for r in results for c in (r["test"].get("ci") or {}).values()), None)
    top.set_ylabel("test, %" + (f" ({confidence:.0%} CI)" if confidence else ""))
    top.grid(axis="y", alpha=0.3)
    top.legend(loc="best")
    top.set_title("Candidates on the test split (selection on val only)")
    for offset, metric, name in ((-width / 2, "accuracy", "Δ accuracy"), (width / 2, "macro_f1", "Δ macro-F1")):
        cis = [r.get("vs_best_single", {}).get(metric) for r in results]
        centre = [100 * c["difference"] if c else 0.0 for c in cis]
        low = [100 * (c["difference"] - c["ci_low"]) if c else 0.0 for c in cis]
        high = [100 * (c["ci_high"] - c["difference"]) if c else 0.0 for c in cis]
        bottom.bar([i + offset for i in x], centre, width, yerr=[low, high], capsize=3, label=name)
    bottom.axhline(0.0, color="black", linewidth=0.8)
    bottom.set_ylabel("vs best single, points (95% CI)")
    bottom.legend(loc="lower right")
    bottom.set_xticks(list(x))
    bottom.set_xticklabels(labels, rotation=40, ha="right")
    return _save(fig, path)


def checkpoint_curve(epoch_scores: Mapping[int, float], metric: str, training: Mapping[int, Mapping[str, Any]],
                     choices: Mapping[str, int], path: Path) -> Path:
    """Val score of every checkpoint as evaluated here, the training's own losses, and the chosen epochs."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    epochs = sorted(epoch_scores)
    ax.plot(epochs, [epoch_scores[e] for e in epochs], "o-", label=f"val {metric} (this evaluation)")
    for key, style in (("train_loss", "--"), ("val_loss", ":")):
        points = [(e, m.get(key)) for e, m in sorted(training.items()) if isinstance(m.get(key), int | float)]
        if points and metric == "loss":
            ax.plot(*zip(*points, strict=True), style, label=f"{key} (training log)")
    by_epoch: dict[int, list[str]] = {}
    for group, epoch in choices.items():
        by_epoch.setdefault(epoch, []).append(group)
    for epoch in by_epoch:
        ax.axvline(epoch, color="grey", alpha=0.3)
    listing = "\n".join(f"{epoch}: {', '.join(groups)}" for epoch, groups in sorted(by_epoch.items()))
    ax.text(0.99, 0.98, "crossover epochs\n" + listing, transform=ax.transAxes, fontsize=7, va="top", ha="right",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "lightgrey"})
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.legend()
    ax.set_title("Every checkpoint on val; grey lines: the crossover's epochs")
    return _save(fig, path)


def _link(target: Path | None, base: Path, text: str | None = None) -> str:
    if target is None or not Path(target).exists():
        return f"{text or (Path(target).name if target else 'not available')} (not found)"
    rel = os.path.relpath(target, base)
    return f"[{text or rel}]({rel})"


def _verdict(name: str, comparison: Mapping[str, Any] | None) -> str:
    if not comparison:
        return f"- {name}: not evaluated."
    acc, f1 = comparison["accuracy"], comparison["macro_f1"]

    def one(ci: Mapping[str, Any], what: str) -> str:
        span = f"{100 * ci['difference']:+.1f} points, 95% CI [{100 * ci['ci_low']:+.1f}, {100 * ci['ci_high']:+.1f}]"
        if ci["better_beyond_ci"]:
            return f"**better** in {what} beyond its CI ({span})"
        if ci["worse_beyond_ci"]:
            return f"**worse** in {what} beyond its CI ({span})"
        return f"not distinguishable in {what} ({span}: the interval contains 0)"

    beat = acc["better_beyond_ci"] or f1["better_beyond_ci"]
    head = "beat best single beyond its CI" if beat else "did not beat best single beyond its CI"
    return f"- **{name} {head}**: {one(f1, 'macro-F1')}; {one(acc, 'accuracy')}."


def _baseline_verdict(baseline: Mapping[str, Any]) -> str:
    """Best single against the logistic regression on the same embeddings (signs flipped: network − baseline)."""
    parts = []
    for metric, what in (("macro_f1", "macro-F1"), ("accuracy", "accuracy")):
        ci = baseline["vs_best_single"][metric]
        diff, low, high = -ci["difference"], -ci["ci_high"], -ci["ci_low"]
        side = "above" if low > 0 else "below" if high < 0 else "not distinguishable from"
        parts.append(f"{what} {side} it ({100 * diff:+.1f} points, 95% CI [{100 * low:+.1f}, {100 * high:+.1f}])")
    return (f"- Best single vs the {baseline['label']} baseline on the same embeddings and split: "
            + "; ".join(parts) + ".")


def _task_cell(deltas: Mapping[str, Any] | None) -> str:
    if deltas is None:
        return "—"
    better = [m for m, ci in deltas.items() if ci.get("better_beyond_ci")]
    worse = [m for m, ci in deltas.items() if ci.get("worse_beyond_ci")]
    parts = ([f"better: {', '.join(better)}"] if better else []) + ([f"worse: {', '.join(worse)}"] if worse else [])
    return "; ".join(parts) or "no difference beyond CI"


def task_verdicts(evaluation: Mapping[str, Any]) -> list[str]:
    """Per task, which candidates beat (or lost to) best single beyond the 95% CI of some metric."""
    tasks = evaluation.get("tasks") or {}
    names = [r["name"] for r in evaluation["candidates"] if r["name"] != "best_single"]
    labels = {r["name"]: r["label"] for r in evaluation["candidates"]}
    lines = ["| candidate | " + " | ".join(TASK_COLUMNS) + " |", "|---|" + "---|" * len(TASK_COLUMNS)]
    for name in names:
        cells = [_task_cell((tasks.get(t) or {}).get(name, {}).get("vs_best_single")) for t in TASK_COLUMNS]
        lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
    summary = []
    for task in TASK_COLUMNS:
        winners = [labels[n] for n in names
                   if any(ci.get("better_beyond_ci")
                          for ci in (tasks.get(task) or {}).get(n, {}).get("vs_best_single", {}).values())]
        summary.append(f"- **{task}**: " + (f"beat best single beyond its CI: {', '.join(winners)}." if winners
                                            else "no candidate beat best single beyond its CI."))
    return summary + ["", *lines]


def selection_lines(evaluation: Mapping[str, Any]) -> list[str]:
    """The recommendation and, per candidate, selected vs confirmed gain over best single and the optimism."""
    check, rec = evaluation.get("selection_check"), evaluation.get("recommendation")
    if not check or not rec:
        return []
    sel = evaluation["selection"]
    labels = {r["name"]: r["label"] for r in evaluation["candidates"]}
    lines = ["## Selection check (val halves)", "",
             f"**Recommended: {labels.get(rec['recommended'], rec['recommended'])}** — {rec['reason']}.", "",
             f"Every search ran on the selection half of val ({sel.get('select_records')} records); the "
             f"confirmation half ({sel.get('confirm_records')} records) was read by none. Gain = val "
             f"`{sel['metric']}` better than best single's (positive = better); optimism = selected − confirmed. "
             "The analysis' crossover read the training's logs of the whole val split: its confirmation is "
             "not independent of its selection.", "",
             "| candidate | searched on the selection half | selected gain | confirmed gain | optimism |",
             "|---|---|---:|---:|---:|"]
    for name, c in check.items():
        lines.append(f"| {labels.get(name, name)} | {'yes' if c['searched_on_selection_half'] else 'no'} | "
                     f"{c['selected_gain']:+.4f} | {c['confirmed_gain']:+.4f} | {c['optimism']:+.4f} |")
    return lines + [""]


def calibration_lines(evaluation: Mapping[str, Any]) -> list[str]:
    """Per calibrated model: every method's test ECE, Brier and NLL, and the one chosen on val."""
    labels = {r["name"]: r["label"] for r in evaluation["candidates"]}
    lines = []
    for name, entry in (evaluation.get("calibration") or {}).items():
        lines += [f"**{labels.get(name, name)}**: chosen on val: **{entry['chosen']}** ({entry['chosen_by']}).", "",
                  "| method | val CV NLL | test ECE | test Brier | test NLL |", "|---|---:|---:|---:|---:|"]
        for method in entry["methods"]:
            t = entry["test"][method]
            mark = " (chosen)" if method == entry["chosen"] else ""
            lines.append(f"| {method}{mark} | {entry['val_cv_nll'][method]:.4f} | {t['ece']:.4f} | {t['brier']:.4f} | "
                         f"{t['nll']:.4f} |")
        lines.append("")
    return (["## Calibration (fitted on val, compared on test)", "", *lines]) if lines else []


def final_report(path: Path, *, run_dir: Path, evaluation: Mapping[str, Any], table_md: str,
                 links: Mapping[str, Path | None], analysis_files: Sequence[Path]) -> Path:
    base = path.parent
    by_name = {r["name"]: r for r in evaluation["candidates"]}
    cross = by_name.get("crossover", {}).get("vs_best_single")
    greedy = by_name.get("greedy_crossover", {}).get("vs_best_single")
    best = by_name["best_single"]
    test_n = best["test"]["records"]
    boot = evaluation["settings"]["bootstrap"]
    lines = [
        "# Final report: parameter crossover vs. baselines", "",
        f"Run: `{run_dir}`  ",
        f"Weights: `{evaluation['weights']}`; selection metric on val: `{evaluation['selection']['metric']}` "
        f"({evaluation['selection']['mode']}); test split: {test_n} records, used for nothing but these numbers.",
        "", "## Verdict", "",
        _verdict("The parameter crossover", cross),
        _verdict("The greedy crossover", greedy),
        *([_baseline_verdict(by_name["logistic_regression"])] if "logistic_regression" in by_name else []),
        "",
        f"Differences are test metric(candidate) − metric(best single, epoch {best['details']['epoch']}), "
        f"paired bootstrap over test records ({boot['resamples']} resamples, seed {boot['seed']}, percentile "
        f"interval). With {test_n} test records one record is {100 / max(test_n, 1):.2f} accuracy points.",
        "", *selection_lines(evaluation),
        "## Pipeline artefacts", "",
        f"- Data report: {_link(links.get('data_report'), base)}",
        f"- LR sweep: {sweep if isinstance(sweep := links.get('lr_sweep'), str) else _link(sweep, base)}",
        f"- Training curves: {_link(links.get('tensorboard'), base, 'TensorBoard logs')}, "
        f"{_link(links.get('epoch_history'), base)}, {_link(links.get('checkpoint_curve'), base)}",
        f"- Sweet spots: {_link(links.get('module_metrics'), base)}"
        + "".join(f", {_link(p, base)}" for p in analysis_files),
        f"- Crossover: {_link(links.get('crossover'), base)}, {_link(links.get('provenance'), base)}",
        f"- Comparison: {_link(links.get('comparison_md'), base)}, {_link(links.get('comparison_tex'), base)}, "
        f"{_link(links.get('chart'), base)}, {_link(links.get('evaluation'), base)}",
        f"- Paper tables (dataset, architecture, results): {_link(links.get('paper_md'), base)}, "
        f"{_link(links.get('paper_tex'), base)}",
        "", "## Crossover choices", "",
        "| group | crossover epoch | from | greedy crossover epoch |", "|---|---:|---|---:|",
    ]
    greedy_choice = by_name.get("greedy_crossover", {}).get("details", {}).get("choices", {})
    for group, epoch in evaluation["choices"].items():
        lines.append(f"| {group} | {epoch} | {evaluation['choice_sources'][group]} | {greedy_choice.get(group, '—')} |")
    stats = evaluation["running_statistics"]
    lines += ["", "## Per-task verdict (test)", "",
              "Every task's final output, each candidate against best single: emotion accuracy, macro-F1, ECE and "
              "Brier; intensity, regret, Bentham and SURD MAE and Spearman ρ over the test records with the target "
              "(paired bootstrap, 95% CI; tables in comparison.md).", "", *task_verdicts(evaluation)]
    lines += ["", *calibration_lines(evaluation)]
    lines += ["", "## Comparison (test; val for selection)", "", table_md,
              "Bold: best value of the column. Δ columns: points vs best single, 95% CI; `*` marks an interval "
              "that excludes 0. ECE: 15 bins; T-scaled: temperature fitted on val per candidate. The val columns "
              "of best single, greedy soup and greedy crossover are the values they were chosen for (optimistic "
              "by construction); only the test columns compare the candidates fairly.", "",
              f"Running statistics: {stats}.", ""]
    notes = evaluation.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return atomic_write_text(path, "\n".join(lines))


def write_outputs(evaluation: dict, checkpoints: RunCheckpoints, epoch_scores: dict[int, float], out_dir: Path,
                  crossover_path: Path) -> None:
    """evaluation.json, the tables, the figures, greedy_crossover.json and final_report.md."""
    choices, greedy_choice = evaluation["choices"], evaluation["greedy_crossover"]["choices"]
    results = evaluation["candidates"]
    test_n = evaluation["data"]["test_records"]
    md = markdown_table(results)
    caption = (f"Crossover vs baselines ({evaluation['weights']} weights; test n = {test_n}; "
               f"differences vs best single with 95% paired-bootstrap CIs)")
    paths = {"evaluation": out_dir / "evaluation.json", "comparison_md": out_dir / "comparison.md",
             "comparison_tex": out_dir / "comparison.tex", "chart": out_dir / "comparison.png",
             "checkpoint_curve": out_dir / "checkpoint_val_curve.png"}
    atomic_write_json(paths["evaluation"], evaluation)
    labels = {r["name"]: r["label"] for r in results}
    per_task_md = task_tables(evaluation.get("tasks") or {}, labels)
    atomic_write_text(paths["comparison_md"], f"# {caption}\n\n{md}\n## Per task (test; Δ vs best single, "
                                              f"95% paired-bootstrap CI, `*` excludes 0)\n\n{per_task_md}")
    atomic_write_text(paths["comparison_tex"], latex_table(results, caption))
    bar_chart(results, paths["chart"])
    training = {e: checkpoints.epoch_metrics(e) or {} for e in checkpoints.epochs}
    checkpoint_curve(epoch_scores, evaluation["selection"]["metric"], training, choices, paths["checkpoint_curve"])
    if greedy_choice is not None:
        atomic_write_json(out_dir / "greedy_crossover.json", {
            "recommended": greedy_choice, "source": "greedy crossover on val (docs/crossover.md)",
            "selection": evaluation["selection"], "start": {"best_single_epoch": evaluation["best_single_epoch"]},
            "plateaus": evaluation["plateaus"]})
    run_dir = checkpoints.run_dir
    paths["paper_md"], paths["paper_tex"] = write_paper_tables(
        out_dir, run_dir, evaluation, _optional_json(run_dir / "data_report.json"),
        _optional_json(run_dir / "parameters.json"))
    mine = {p.name for p in paths.values()} | {"final_report.md", "greedy_crossover.json", "provenance.json"}
    analysis_files = sorted(p for p in out_dir.glob("*.md") if p.name not in mine)  # analysis_report.md
    analysis_files += [p for p in (out_dir / "visualizations", out_dir / "calibrated_thresholds.json") if p.exists()]
    links = {**paths, "data_report": run_dir / "data_report.json", "lr_sweep": _find_lr_sweep(run_dir),
             "tensorboard": run_dir / "tensorboard", "epoch_history": run_dir / EPOCH_HISTORY,
             "module_metrics": out_dir / "module_metrics.json", "crossover": crossover_path,
             "provenance": out_dir / "provenance.json"}
    final_report(out_dir / "final_report.md", run_dir=run_dir, evaluation=evaluation, table_md=md, links=links,
                 analysis_files=analysis_files)


def _optional_json(path: Path) -> dict | None:
    """A run file the paper tables read, None when absent (the tables file says so)."""
    if not path.is_file():
        return None
    return read_json(path, CrossoverError)


def _find_lr_sweep(run_dir: Path) -> Path | str:
    """The LR sweep the run took an LR from (`optim.lr` or `optim.encoder.lr` = `${optimal_lr:<path>}`, recorded
    in run.json), or why none."""
    try:
        run = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "run.json not readable: unknown"
    sources = run.get("lr_sources") or {"optim.lr": run.get("lr_source")}  # lr_sources: runs since 2026-12-03
    for source in sources.values():
        match = re.fullmatch(r"\$\{optimal_lr:(.+)\}", source.strip()) if isinstance(source, str) else None
        if match is not None:
            path = Path(run.get("cwd", ".")) / match.group(1).strip()
            return path / "optimal_lr.json" if path.is_dir() else path
    settings = ", ".join(f"{key}={value}" for key, value in sources.items())
    return f"none: {settings} {'was' if len(sources) == 1 else 'were'} set in the config"
