"""Paper tables, Markdown and LaTeX, generated from the run's own files and written beside final_report.md.

1. Dataset statistics, from the run's data_report.json: records read, quarantined, near-duplicates
   dropped, kept after dedup (each with its share of the records read), and the split sizes with their
   share of the kept records and the class fractions' range per split.
2. Architecture, from the run's parameters.json (the parameter table train.py saves): parameters per
   module and per group with their share of the total, and the total.
3. Results, from evaluation.json: every candidate, per task, with 95% bootstrap intervals: emotion
   accuracy and macro-F1 with their own CIs, ECE and Brier; for intensity, regret, Bentham and SURD the
   MAE and Spearman ρ with the paired Δ vs best single in MAE and its CI.
Each table names the file it was generated from; a missing file gives a line saying so, not a table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from redheart.crossover.tables import _escape
from redheart.io import atomic_write_text

REGRESSION = ("intensity", "regret", "bentham", "surd")


def _md(head: Sequence[str], rows: Sequence[Sequence[str]], caption: str) -> str:
    lines = [f"**{caption}**", "", "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1))
             + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _tex(head: Sequence[str], rows: Sequence[Sequence[str]], caption: str, label: str) -> str:
    body = "\n".join(" & ".join(_escape(c) for c in r) + " \\\\" for r in rows)
    return ("\\begin{table}[h]\n\\centering\n"
            f"\\caption{{{_escape(caption)}}}\n\\label{{{label}}}\n"
            f"\\begin{{tabular}}{{l{'r' * (len(head) - 1)}}}\n\\hline\n"
            + " & ".join(f"\\textbf{{{_escape(h)}}}" for h in head) + " \\\\\n\\hline\n"
            f"{body}\n\\hline\n\\end{{tabular}}\n\\end{{table}}\n")


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


def dataset_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    counts, split = report["counts"], report["split"]["stats"]
    read, kept = counts["read"], counts["kept"]
    rows = [["Records read", f"{read:,}", "100.0%"],
            ["Quarantined (invalid or placeholder)", f"{counts['quarantined']:,}", _share(counts["quarantined"], read)],
            ["Near-duplicates dropped", f"{counts['near_duplicates']:,}", _share(counts["near_duplicates"], read)],
            ["Kept after dedup", f"{kept:,}", _share(kept, read)]]
    for name in ("train", "val", "test"):
        if name in split:
            fractions = list((split[name].get("class_fraction") or {}).values())
            spread = (f"; classes {100 * min(fractions):.1f}–{100 * max(fractions):.1f}%" if fractions else "")
            rows.append([f"{name} split (of kept{spread})", f"{split[name]['size']:,}",
                         _share(split[name]["size"], kept)])
    return ["", "records", "share"], rows


def architecture_rows(table: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    total = table["total"]["actual"]
    rows = [[f"{prefix} ({row.get('seed_name', '')})" if row.get("seed_name") else prefix, f"{row['actual']:,}",
             _share(row["actual"], total)] for prefix, row in table["modules"].items()]
    rows += [[f"group: {g}", f"{row['actual']:,}", _share(row["actual"], total)] for g, row in table["groups"].items()]
    rows.append(["Total", f"{total:,}", "100.0%"])
    return ["module", "parameters", "share"], rows


def _ci(value: float | None, ci: Mapping[str, Any] | None, pct: bool) -> str:
    if value is None:
        return "—"
    scale, digits = (100, 1) if pct else (1, 3)
    text = f"{scale * value:.{digits}f}"
    if ci and ci.get("ci_low") is not None:
        text += f" [{scale * ci['ci_low']:.{digits}f}, {scale * ci['ci_high']:.{digits}f}]"
    return text


def _delta(ci: Mapping[str, Any] | None) -> str:
    if not ci or ci.get("difference") is None or ci.get("ci_low") is None:
        return "—"
    star = "*" if ci.get("better_beyond_ci") or ci.get("worse_beyond_ci") else ""
    return f"{ci['difference']:+.3f} [{ci['ci_low']:+.3f}, {ci['ci_high']:+.3f}]{star}"


def results_rows(evaluation: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    tasks = evaluation.get("tasks") or {}
    head = ["Method", "Emotion acc % [95% CI]", "Emotion macro-F1 % [95% CI]", "ECE", "Brier"]
    head += [x for t in REGRESSION for x in (f"{t} MAE / ρ", f"Δ{t} MAE [95% CI]")]
    rows = []
    for r in evaluation["candidates"]:
        name, test = r["name"], r["test"]
        ci = test.get("ci") or {}
        row = [r["label"], _ci(test["accuracy"], ci.get("accuracy"), True),
               _ci(test["macro_f1"], ci.get("macro_f1"), True), f"{test['ece']:.3f}", f"{test['brier']:.3f}"]
        for task in REGRESSION:
            entry = (tasks.get(task) or {}).get(name)
            if entry is None:
                row += ["—", "—"]
                continue
            mae, rho = entry["test"].get("mae"), entry["test"].get("spearman")
            row.append(("—" if mae is None else f"{mae:.3f}") + " / " + ("—" if rho is None else f"{rho:.3f}"))
            row.append(_delta(entry.get("vs_best_single", {}).get("mae")))
        rows.append(row)
    return head, rows


def write_paper_tables(out_dir: Path, run_dir: Path, evaluation: Mapping[str, Any],
                       data_report: Mapping[str, Any] | None, parameters: Mapping[str, Any] | None) -> list[Path]:
    """paper_tables.md and paper_tables.tex in `out_dir`."""
    test_n = evaluation["data"]["test_records"]
    specs = []
    if data_report is not None:
        specs.append((*dataset_rows(data_report), f"Dataset statistics (after dedup; {run_dir.name}/data_report.json)",
                      "tab:dataset"))
    if parameters is not None:
        specs.append((*architecture_rows(parameters), f"Model architecture: parameters per module "
                      f"({run_dir.name}/parameters.json)", "tab:architecture"))
    specs.append((*results_rows(evaluation),
                  f"Results on the test split (n = {test_n}), every candidate; 95% bootstrap CIs, Δ vs best single "
                  "paired (* excludes 0)", "tab:results"))
    missing = [f"- {name} not found in {run_dir}: its table is not written." for name, present in
               (("data_report.json", data_report is not None), ("parameters.json", parameters is not None))
               if not present]
    md = "# Paper tables\n\n" + "\n".join(missing + [""] if missing else []) + "\n".join(
        _md(head, rows, caption) for head, rows, caption, _ in specs)
    tex = "\n".join(_tex(head, rows, caption, label) for head, rows, caption, label in specs)
    return [atomic_write_text(out_dir / "paper_tables.md", md), atomic_write_text(out_dir / "paper_tables.tex", tex)]
