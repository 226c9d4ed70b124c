"""visualizations/: PNGs drawn from module_metrics.json (matplotlib, Agg backend: no display needed).

- curves_<group>.png: the validation metric with the plateau, change points, excluded epochs,
  the overfitting bound and the chosen epoch; below it the MCDA criteria and score, unhealthy epochs red.
- mcda_heatmap.png: module group × epoch MCDA scores (grey: not eligible), the chosen epoch boxed.
- vote.png: each technique's epoch per group (marker size ∝ confidence), the plateau bar, the vote.
- overfitting.png: train and validation loss, their gap, the overfitting point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from redheart.analysis.registry import techniques  # noqa: E402
from redheart.io import atomic_write_with  # noqa: E402


def _xy(series: dict[str, float | None], epochs: list[int]) -> np.ndarray:
    return np.array([np.nan if series.get(str(e)) is None else series[str(e)] for e in epochs], dtype=float)


def _save(fig, path: Path) -> Path:
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def _mark_common(ax, entry: dict, overfit: int | None) -> None:
    first, last = entry["plateau"]
    ax.axvspan(first - 0.5, last + 0.5, color="tab:green", alpha=0.12,
               label=f"flat stretch {first}-{last} (Mann-Kendall)")
    if entry["bound"] is not None:  # the group's own overfitting point (or its coupling's)
        ax.axvline(entry["bound"], color="tab:red", ls=":", lw=1.2, label=f"overfitting point {entry['bound']}")
    ax.axvline(entry["recommended_epoch"], color="black", lw=1.6, label=f"chosen epoch {entry['recommended_epoch']}")


def group_curves(group: str, entry: dict, epochs: list[int], overfit: int | None, path: Path) -> Path:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    name = entry["metric"]["name"]
    y = _xy(entry["series"][name], epochs)
    top.plot(epochs, y, "-o", ms=3.5, color="tab:blue", label=f"{name} ({entry['metric']['mode']})")
    for k, cp in enumerate(entry["techniques"]["cusum"]["evidence"].get("change_points", [])):
        top.axvline(cp - 0.5 * (epochs[1] - epochs[0] if len(epochs) > 1 else 1), color="tab:orange", ls="--",
                    lw=0.9, label="change point" if k == 0 else None)
    excluded = [e for e in entry["excluded_epochs"] if e in epochs]
    for k, e in enumerate(excluded):  # on the curve where the metric itself is finite, else on the x axis
        value = y[epochs.index(e)]
        where = (e, value) if np.isfinite(value) else (e, 0.02)
        top.plot(*where, "x", color="red", ms=9, mew=2, transform=top.transData if np.isfinite(value) else
                 top.get_xaxis_transform(), label="excluded (a non-finite metric)" if k == 0 else None)
    _mark_common(top, entry, overfit)
    top.set_ylabel(name)
    top.set_title(f"{group}: epoch {entry['recommended_epoch']}, confidence {entry['confidence']:.0%}")
    top.legend(fontsize=7, loc="best")
    top.grid(alpha=0.3)
    for criterion, color in (("loss", "tab:blue"), ("task", "tab:green"), ("stability", "tab:gray"),
                             ("gradient", "tab:brown")):
        if f"mcda/{criterion}" in entry["series"]:
            bottom.plot(epochs, _xy(entry["series"][f"mcda/{criterion}"], epochs), lw=1, alpha=0.7, color=color,
                        label=criterion)
    bottom.plot(epochs, _xy(entry["series"]["mcda_score"], epochs), "-", lw=2.2, color="black", label="MCDA score")
    health = _xy(entry["series"]["health"], epochs)
    for e, h in zip(epochs, health, strict=True):
        if np.isfinite(h) and h < 1:
            bottom.axvspan(e - 0.5, e + 0.5, color="red", alpha=0.15 + 0.3 * (1 - h))
    _mark_common(bottom, entry, overfit)
    bottom.set_ylabel("normalised (1 = best)")
    bottom.set_xlabel("epoch (red: unhealthy gradients)")
    bottom.legend(fontsize=7, ncol=3, loc="lower left")
    bottom.grid(alpha=0.3)
    return _save(fig, path)


def mcda_heatmap(result: dict[str, Any], path: Path) -> Path:
    epochs, groups = result["epochs"], list(result["groups"])
    matrix = np.vstack([_xy(result["groups"][g]["series"]["mcda_score"], epochs) for g in groups])
    fig, ax = plt.subplots(figsize=(max(7.0, 0.32 * len(epochs) + 2), 0.45 * len(groups) + 1.8))
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("lightgrey")
    image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap=cmap, interpolation="nearest")
    for row, g in enumerate(groups):
        col = epochs.index(result["groups"][g]["recommended_epoch"])
        ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(range(len(epochs)), [str(e) for e in epochs], fontsize=7, rotation=90)
    ax.set_yticks(range(len(groups)), groups, fontsize=8)
    ax.set_xlabel("epoch (grey: not eligible; red box: chosen)")
    ax.set_title("MCDA score per module group and epoch")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    return _save(fig, path)


def vote_plot(result: dict[str, Any], path: Path) -> Path:
    groups = list(result["groups"])
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(groups) + 1.6))
    for row, g in enumerate(groups):
        entry = result["groups"][g]
        first, last = entry["plateau"]
        ax.plot([first, last], [row, row], color="tab:green", lw=7, alpha=0.25, solid_capstyle="butt",
                label="flat stretch (Mann-Kendall)" if row == 0 else None)
        drawn = [t for t in techniques().values() if t.name in entry["techniques"]]
        for k, t in enumerate(drawn):
            technique = entry["techniques"][t.name]
            if technique["epoch"] is not None:
                ax.scatter(technique["epoch"], row + (k - (len(drawn) - 1) / 2) * 0.08, marker=t.marker,
                           color=t.color, s=20 + 180 * technique["confidence"], alpha=0.8,
                           label=t.name if row == 0 else None)
        ax.scatter(entry["recommended_epoch"], row, marker="*", color="red", s=260, zorder=5, ec="black",
                   label="vote" if row == 0 else None)
        ax.text(1.01, row, f"{entry['recommended_epoch']} ({entry['confidence']:.0%})", fontsize=8, va="center",
                transform=ax.get_yaxis_transform())  # a column right of the axes: epoch (vote confidence)
    if result["overfitting_epoch"] is not None:
        ax.axvline(result["overfitting_epoch"], color="tab:red", ls=":", label="overfitting point")
    ax.set_yticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylim(len(groups) - 0.4, -0.6)
    ax.set_xlim(result["epochs"][0] - 1, result["epochs"][-1] + 1)
    ax.set_xlabel("epoch (marker size: technique confidence; right: chosen epoch and vote confidence)")
    ax.set_title("Ensemble vote per module group")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def overfitting_plot(result: dict[str, Any], path: Path) -> Path:
    epochs, series = result["epochs"], result["run_series"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    top.plot(epochs, _xy(series["train_loss"], epochs), "-o", ms=3, label="train loss (raw weights, dropout)")
    top.plot(epochs, _xy(series["val_loss"], epochs), "-o", ms=3,
             label=f"val loss ({result['weights_evaluated']} weights)")
    bottom.plot(epochs, _xy(series["gap"], epochs), "-o", ms=3, color="tab:red", label="gap = val - train")
    rising = result["overfitting"].get("rising")
    for ax in (top, bottom):
        if result["overfitting_epoch"] is not None:
            ax.axvline(result["overfitting_epoch"], color="tab:red", ls=":",
                       label=f"overfitting point {result['overfitting_epoch']}")
        if rising:
            ax.axvspan(rising[0], rising[-1], color="tab:red", alpha=0.08)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    top.set_title("Train-validation gap (overfitting: rising over "
                  f"{result['overfitting']['consecutive']} consecutive checkpoints)")
    bottom.set_xlabel("epoch")
    return _save(fig, path)


def write_plots(result: dict[str, Any], folder: Path) -> list[Path]:
    folder = Path(folder)
    paths = [group_curves(g, e, result["epochs"], result["overfitting_epoch"], folder / f"curves_{g}.png")
             for g, e in result["groups"].items()]
    paths += [mcda_heatmap(result, folder / "mcda_heatmap.png"), vote_plot(result, folder / "vote.png"),
              overfitting_plot(result, folder / "overfitting.png")]
    return paths
