"""The comparison table in Markdown and LaTeX, in the layout docs/design.md keeps ("Crossover").

The original table has one row per method and the columns Method | Val Loss | Val Acc | Test Acc, with
\\hline rules and the winning entries in bold. Here the numbers are measured, and the columns add test
macro-F1, each test metric's 95% bootstrap interval, the paired-bootstrap difference against best single
with its 95% CI (percentage points;
`*` when the interval excludes 0), and calibration (ECE before → after temperature scaling, Brier).
Bold marks the best value of each metric column. The logistic-regression baseline has no multitask
loss: its Val Loss cell is "—".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = ("Method", "Val Loss", "Val Acc", "Test Acc [95% CI]", "Test Macro-F1 [95% CI]",
           "ΔAcc vs best single [95% CI]", "ΔF1 vs best single [95% CI]", "Test ECE → T-scaled", "Test Brier")
LATEX_COLUMNS = ("Method", "Val Loss", "Val Acc", "Test Acc [95\\% CI]", "Test Macro-F1 [95\\% CI]",
                 "$\\Delta$Acc [95\\% CI]", "$\\Delta$F1 [95\\% CI]", "ECE $\\rightarrow$ T-scaled", "Brier")
# column -> (how to read the value from a result, lower is better?)
BEST = {"Val Loss": (lambda r: r["val"]["loss"], True), "Val Acc": (lambda r: r["val"]["accuracy"], False),
        "Test Acc [95% CI]": (lambda r: r["test"]["accuracy"], False),
        "Test Macro-F1 [95% CI]": (lambda r: r["test"]["macro_f1"], False),
        "Test ECE → T-scaled": (lambda r: r["test"]["ece_scaled"], True),
        "Test Brier": (lambda r: r["test"]["brier"], True)}


def _pct(value: float, latex: bool) -> str:
    return f"{100 * value:.1f}" + ("\\%" if latex else "%")


def _with_ci(split: Mapping[str, Any], metric: str, latex: bool) -> str:
    """The metric in percent with its 95% bootstrap interval when the evaluation computed one."""
    ci = (split.get("ci") or {}).get(metric)
    text = _pct(split[metric], latex)
    return f"{text} [{100 * ci['ci_low']:.1f}, {100 * ci['ci_high']:.1f}]" if ci else text


def _diff(ci: Mapping[str, Any] | None, latex: bool) -> str:
    if ci is None:
        return "—" if not latex else "--"
    star = "*" if ci["better_beyond_ci"] or ci["worse_beyond_ci"] else ""
    text = f"{100 * ci['difference']:+.1f} [{100 * ci['ci_low']:+.1f}, {100 * ci['ci_high']:+.1f}]{star}"
    return text.replace("−", "-") if latex else text.replace("-", "−")


def rows(results: Sequence[Mapping[str, Any]], latex: bool) -> list[list[str]]:
    """One row of cell texts per candidate result (see run.py for the result's fields)."""
    best = {}
    for column, (read, lower) in BEST.items():
        values = [v for r in results if (v := read(r)) is not None]  # None: the baseline has no multitask loss
        best[column] = (min(values) if lower else max(values)) if values else None
    labels = {r.get("name"): r["label"] for r in results}
    out = []
    for r in results:
        cells = {
            "Method": _escape(_label(r, labels)) if latex else _label(r, labels),
            "Val Loss": ("--" if latex else "—") if r["val"]["loss"] is None else f"{r['val']['loss']:.3f}",
            "Val Acc": _pct(r["val"]["accuracy"], latex),
            "Test Acc [95% CI]": _with_ci(r["test"], "accuracy", latex),
            "Test Macro-F1 [95% CI]": _with_ci(r["test"], "macro_f1", latex),
            "ΔAcc vs best single [95% CI]": _diff(r.get("vs_best_single", {}).get("accuracy"), latex),
            "ΔF1 vs best single [95% CI]": _diff(r.get("vs_best_single", {}).get("macro_f1"), latex),
            "Test ECE → T-scaled": (f"{r['test']['ece']:.3f} $\\rightarrow$ {r['test']['ece_scaled']:.3f}" if latex
                                    else f"{r['test']['ece']:.3f} → {r['test']['ece_scaled']:.3f}"),
            "Test Brier": f"{r['test']['brier']:.3f}",
        }
        for column, (read, _) in BEST.items():
            if best[column] is not None and read(r) == best[column]:
                cells[column] = f"\\textbf{{{cells[column]}}}" if latex else f"**{cells[column]}**"
        out.append([cells[c] for c in COLUMNS])
    return out


def _label(result: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """The row's label; a candidate with the same weights as an earlier one says which."""
    same = result.get("same_weights_as")
    return f"{result['label']} (= {labels.get(same, same)})" if same else result["label"]


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results, latex=False)]
    return "\n".join(lines) + "\n"


def latex_table(results: Sequence[Mapping[str, Any]], caption: str) -> str:
    head = " & ".join(f"\\textbf{{{c}}}" for c in LATEX_COLUMNS)
    body = "\n".join(" & ".join(row) + " \\\\" for row in rows(results, latex=True))
    return ("\\begin{table}[h]\n\\centering\n"
            f"\\caption{{{_escape(caption)}}}\n"
            f"\\begin{{tabular}}{{l{'c' * (len(COLUMNS) - 1)}}}\n\\hline\n{head} \\\\\n\\hline\n{body}\n"
            "\\hline\n\\end{tabular}\n\\end{table}\n")


_LATEX_ESCAPES = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
                  "{": "\\{", "}": "\\}", "−": "-", "±": "$\\pm$"}


def _escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(char, char) for char in text)


TASK_COLUMNS = {"emotion": (("accuracy", "Acc", True), ("macro_f1", "Macro-F1", True), ("ece", "ECE", False),
                            ("brier", "Brier", False)),
                "intensity": (("mae", "MAE", False), ("spearman", "Spearman ρ", False)),
                "regret": (("mae", "MAE", False), ("spearman", "Spearman ρ", False)),
                "bentham": (("mae", "MAE", False), ("spearman", "Spearman ρ", False)),
                "surd": (("mae", "MAE", False), ("spearman", "Spearman ρ", False))}


def _task_diff(ci: Mapping[str, Any] | None, percent: bool) -> str:
    """Δ [95% CI] of one task metric; `*` when the interval excludes 0 (better or worse)."""
    if not ci or ci.get("difference") is None:
        return "—"
    scale, digits = (100, 1) if percent else (1, 3)
    star = "*" if ci.get("better_beyond_ci") or ci.get("worse_beyond_ci") else ""
    if ci.get("ci_low") is None:
        return f"{scale * ci['difference']:+.{digits}f}".replace("-", "−")
    text = (f"{scale * ci['difference']:+.{digits}f} [{scale * ci['ci_low']:+.{digits}f}, "
            f"{scale * ci['ci_high']:+.{digits}f}]{star}")
    return text.replace("-", "−")


def task_tables(tasks: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    """One Markdown table per task: each candidate's test value and its Δ vs best single [95% CI]."""
    out = []
    for task, columns in TASK_COLUMNS.items():
        by_candidate = tasks.get(task) or {}
        if not by_candidate:
            continue
        records = next(iter(by_candidate.values()))["test"].get("records", 0)
        head = ["Method"] + [x for _, name, pct in columns
                             for x in (name + (" %" if pct else ""), f"Δ{name} [95% CI]")]
        lines = [f"### {task} (test records with the target: {records})", "",
                 "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for name, entry in by_candidate.items():
            cells = [labels.get(name, name)]
            for metric, _, pct in columns:
                value = entry["test"].get(metric)
                cells.append("—" if value is None else f"{100 * value:.1f}" if pct else f"{value:.3f}")
                cells.append(_task_diff(entry.get("vs_best_single", {}).get(metric), pct))
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)
