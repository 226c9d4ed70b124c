"""analysis_report.md from module_metrics.json, one section per module group in the design's report form:

    [Module: backbone]
    - Recommended epoch: 44
    - Reasons: 1. plateau range (42-48) ... 2. best task metric ... 3. gradient stability ...
    - Confidence: 92%
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redheart.analysis.registry import label


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def _plateau_reason(entry: dict, thresholds: dict) -> str:
    mk = entry["techniques"]["mann_kendall"]
    first, last = entry["plateau"]
    metric = entry["metric"]["name"]
    chosen = entry["recommended_epoch"]
    where = f"epoch {chosen} is " + (
        "its centre" if mk["epoch"] == chosen else "inside it" if first <= chosen <= last else "outside it")
    where += _still_improving(entry, last, chosen)
    if entry["plateau_source"] == "mann_kendall":
        ev = mk["evidence"]
        rate = 100 * thresholds["improvement_rate"]
        return (f"Flat stretch ({first}-{last}, the 'plateau' of module_metrics.json) of {metric}: every "
                f"{ev['window']}-checkpoint window centred there is flat (Hamed-Rao Mann-Kendall: no significant "
                f"trend, mean p {ev['mean_p']:.2f}, or |Sen slope| ≤ {rate:.2g} %/epoch of the level); {where}")
    if entry["plateau_source"] == "cusum":
        return (f"No Mann-Kendall flat stretch; the change-point detector's best-level segment of {metric} is "
                f"{first}-{last}; {where}")
    return f"No flat stretch found in {metric}; candidates are the checkpoints around the vote ({first}-{last})"


def _still_improving(entry: dict, last: int, chosen: int) -> str:
    """A flat stretch before the chosen epoch is not where learning ended: say so when the metric improved since."""
    series = entry["series"].get(entry["metric"]["name"], {})
    end, at = series.get(str(last)), series.get(str(chosen))
    if chosen <= last or end is None or at is None:
        return ""
    improved = at < end if entry["metric"]["mode"] == "min" else at > end
    return (f"; {entry['metric']['name']} still improves after the stretch ({_fmt(end)} at epoch {last}, "
            f"{_fmt(at)} at epoch {chosen})") if improved else ""


def _task_reason(entry: dict) -> str:
    task = entry["techniques"]["task"]
    metrics = task["evidence"].get("metrics", {})
    if not metrics:
        return "Task metrics: none recorded for this group"
    epoch = entry["recommended_epoch"]
    head, spec = next(iter(metrics.items()))
    series = entry["series"].get(head, {})
    line = (f"Task: {head} {_fmt(series.get(str(epoch)))} at epoch {epoch}; its best is {_fmt(spec['best'])} "
            f"(epoch {spec['best_epoch']})")
    if task["epoch"] is not None:
        line += f"; the combined task score of {len(metrics)} metric(s) peaks at epoch {task['epoch']}"
    return line


def _gradient_reason(group: str, entry: dict) -> str:
    epoch = str(entry["recommended_epoch"])
    health = entry["series"]["health"].get(epoch)
    grad = entry["techniques"]["gradient"]["evidence"]
    unhealthy = grad.get("unhealthy_epochs", [])
    state = "healthy (all 4 checks pass)" if health == 1.0 else f"{_fmt(health, 2)} of the checks pass"
    update = entry["series"].get(f"groups/{group}/update_ratio", {}).get(epoch)
    text = f"Gradient stability: {state} at epoch {epoch}, update/parameter ratio {_fmt(update, 3)}"
    text += f"; unhealthy eligible epochs: {', '.join(map(str, unhealthy))}" if unhealthy else \
        "; no eligible epoch is unhealthy"
    return text


def group_section(group: str, entry: dict, thresholds: dict) -> str:
    techniques = entry["techniques"]
    cusum = techniques["cusum"]["evidence"]
    mcda = techniques["mcda"]["evidence"]
    coupling = "independent"
    if entry["coupling"]:
        partners = entry["coupled_with"]
        coupling = f"coupling {entry['coupling']}" + (f" with {', '.join(partners)}" if partners else "")
    lines = [f"### [Module: {group}]", "",
             f"- Recommended epoch: **{entry['recommended_epoch']}**",
             "- Reasons:",
             f"  1. {_plateau_reason(entry, thresholds)}",
             f"  2. {_task_reason(entry)}",
             f"  3. {_gradient_reason(group, entry)}",
             "  4. Change points (penalised piecewise-linear fit) at "
             + (', '.join(map(str, cusum.get('change_points', []))) or 'none')
             + (f"; best-level segment {cusum['segment'][0]}-{cusum['segment'][1]}" if "segment" in cusum else ""),
             f"  5. MCDA score {_fmt(mcda.get('score'), 3)} (" + ", ".join(
                 f"{c} {_fmt(v, 2)}" for c, v in mcda.get("criteria", {}).items()) + ")",
             f"- Confidence: **{entry['confidence']:.0%}**" + (
                 f" (below {thresholds['voting_confidence']:.0%}: review by hand)" if entry["needs_review"] else ""),
             "",
             f"Modules {', '.join(entry['modules'])}; {coupling}"
             + (f"; not after its overfitting point {entry['bound']} (its own validation metric turns clearly worse "
                f"after it{'; shared by its coupling' if entry['coupling'] else ''})" if entry["bound"] is not None
                else "; its own validation metric never turns clearly worse: no bound")
             + f". Candidates for the crossover: {', '.join(map(str, entry['candidates']))}.",
             ""]
    if entry["excluded_epochs"]:
        lines += [f"Excluded (non-finite metrics): {', '.join(map(str, entry['excluded_epochs']))}.", ""]
    lines += ["| technique | epoch | confidence |", "|---|---|---|"]
    for name, result in techniques.items():
        reason = result["evidence"].get("reason")
        lines.append(f"| {label(name)} | {result['epoch'] if result['epoch'] is not None else '-'} | "
                     f"{result['confidence']:.2f}{' (' + reason + ')' if reason else ''} |")
    return "\n".join(lines) + "\n"


def render_report(result: dict[str, Any], plots: bool = True) -> str:
    epochs = result["epochs"]
    t = result["thresholds"]
    overfit = result["overfitting_epoch"]
    rising = result["overfitting"].get("rising")
    lines = [f"# Sweet-spot analysis: {Path(result['run_dir']).name}", "",
             f"Run `{result['run_dir']}`: {len(epochs)} checkpoints (epochs {epochs[0]}-{epochs[-1]}, every "
             f"{result['every_n_epochs']}); validation metrics measured with the {result['weights_evaluated']} "
             "weights. Analysis read only the manifest and the metrics files.", ""]
    if overfit is not None:
        lines.append(f"**Run overfitting point: epoch {overfit}** (train-val gap rising over epochs "
                     f"{', '.join(map(str, rising))}). Reported only: each group is bounded by its own point.")
    else:
        lines.append("No overfitting point: the train-val gap never rises over "
                     f"{result['overfitting']['consecutive']} consecutive checkpoints (beyond noise, sustained, while "
                     "the validation loss stops improving).")
    w = t["mcda_weights"]
    lines += ["", f"Thresholds ({result.get('thresholds_source', 'conf/analysis')}): plateau_variance "
              f"{t['plateau_variance']:g}, improvement_rate {t['improvement_rate']:g}, stability_window "
              f"{t['stability_window']}, MCDA weights loss {w['loss']:.2f} / task {w['task']:.2f} / stability "
              f"{w['stability']:.2f} / gradient {w['gradient']:.2f}, voting_confidence {t['voting_confidence']:g}.",
              "", "Own overfitting point per group: " + ", ".join(
                  f"{g} {e if e is not None else 'none'}"
                  for g, e in (result.get("group_overfitting_epochs") or {}).items()) + ".",
              "", "## Summary", "", "| group | coupling | epoch | confidence | flat stretch | excluded | review |",
              "|---|---|---|---|---|---|---|"]
    for group, entry in result["groups"].items():
        lines.append(f"| {group} | {entry['coupling'] or 'independent'} | {entry['recommended_epoch']} | "
                     f"{entry['confidence']:.0%} | {entry['plateau'][0]}-{entry['plateau'][1]} | "
                     f"{len(entry['excluded_epochs'])} | {'yes' if entry['needs_review'] else ''} |")
    lines += ["", "## Per module", ""]
    lines += [group_section(g, e, t) for g, e in result["groups"].items()]
    if result["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    if plots:
        lines += ["Plots: `visualizations/` (curves_<group>.png, mcda_heatmap.png, vote.png, overfitting.png).", ""]
    lines += ["How each technique works: docs/analysis.md.", ""]
    return "\n".join(lines)
