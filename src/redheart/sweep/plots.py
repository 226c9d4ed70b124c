"""PNG figures of a sweep: loss curves per LR with the score, and one figure per hierarchical stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from redheart.io import atomic_write_with  # noqa: E402
from redheart.sweep.score import LRSelection, criteria_definitions  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    out = atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def _score_axis(ax, selection: LRSelection) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"{selection.method} score ({'higher' if selection.higher_is_better else 'lower'} is better)")
    ax.grid(alpha=0.3, which="both")


def plot_lr_curves(entries: list[dict[str, Any]], selection: LRSelection, path: Path) -> Path:
    """Left: loss curves per LR with the scored val-loss statistic. Right: score vs LR, the chosen one starred."""
    fig, (curves, scores) = plt.subplots(1, 2, figsize=(12, 4.5))
    by_lr = draw_curves(curves, entries, selection)
    lrs = sorted(selection.scores)
    scores.plot(lrs, [selection.scores[lr] for lr in lrs], "-o", color="tab:blue")
    for lr in selection.unscored:
        scores.axvline(lr, color="tab:red", ls=":", lw=1)
        scores.annotate("unscored", (lr, 0), rotation=90, fontsize=7, color="tab:red", va="bottom")
    if selection.best_lr is not None:
        scores.plot([selection.best_lr], [selection.best_score], "*", ms=16, color="tab:orange",
                    label=f"chosen {selection.best_lr:.3g}")
        scores.legend()
    _score_axis(scores, selection)
    scores.set_title(f"{len(selection.scores)} scored of {len(by_lr)} LRs")
    return _save(fig, path)


def draw_curves(ax, entries: list[dict[str, Any]], selection: LRSelection) -> list[tuple[float, dict[str, Any]]]:
    """Val (solid) and train (dotted) loss per epoch for every LR, and, as a thick bar over the epochs it
    averages, the val-loss number the score used (optimal_lr.json), so the figure shows the number quoted."""
    by_lr = sorted({float(e["lr"]): e for e in entries}.items())
    cmap = plt.get_cmap("viridis")
    for i, (lr, entry) in enumerate(by_lr):
        color = cmap(i / max(1, len(by_lr) - 1))
        epochs = entry.get("epochs") or []
        x = [e["epoch"] for e in epochs]
        ax.plot(x, [e.get("val_loss") for e in epochs], "-o", ms=3, color=color, label=f"{lr:.2g}")
        ax.plot(x, [e.get("train_loss") for e in epochs], ":", color=color)
        scored = selection.criteria.get(lr)
        if scored is not None:
            averaged = [e["epoch"] for e in epochs if e.get("val_loss") is not None][-selection.last_k:]
            ax.plot([averaged[0], averaged[-1]], [scored["val_loss"]] * 2, "-", lw=5, alpha=0.35, color=color,
                    solid_capstyle="butt")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (solid: val, dotted: train)")
    ax.set_title(f"thick bar: the score's val loss, {criteria_definitions(selection.last_k)['val_loss']}", fontsize=9)
    ax.legend(title="lr", fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return by_lr


def plot_stage(stage_lrs: list[float], stage: int, selection: LRSelection, path: Path) -> Path:
    """Score vs LR after `stage`: earlier stages grey, this stage's LRs (run or reused) highlighted."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lrs = sorted(selection.scores)
    ax.plot(lrs, [selection.scores[lr] for lr in lrs], "-", color="0.8", zorder=1)
    earlier = [lr for lr in lrs if lr not in stage_lrs]
    current = [lr for lr in lrs if lr in stage_lrs]
    ax.scatter(earlier, [selection.scores[lr] for lr in earlier], color="0.55", s=25, label="earlier stages", zorder=2)
    ax.scatter(current, [selection.scores[lr] for lr in current], color="tab:red", s=60, label=f"stage {stage}",
               zorder=3)
    if selection.best_lr is not None:
        ax.plot([selection.best_lr], [selection.best_score], "*", ms=16, color="tab:orange", zorder=4,
                label=f"best so far {selection.best_lr:.3g}")
    _score_axis(ax, selection)
    ax.set_title(f"hierarchical LR sweep, after stage {stage}")
    ax.legend(fontsize=8)
    return _save(fig, path)
