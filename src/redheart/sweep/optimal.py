"""`optimal_lr.json` and `lr_curves.png` at the sweep root, and reading the chosen LR back.

The main run starts with the chosen LR through the `optimal_lr` resolver (registered by train.py):
    python train.py optim.lr='${optimal_lr:outputs/train/multiruns/<time>/optimal_lr.json}'
(a sweep folder works too). The file also holds that command line under `next`.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from redheart.errors import RedHeartError
from redheart.io import atomic_write_json, read_json
from redheart.sweep.cumulative import CumulativeResults
from redheart.sweep.score import LRSelection, select

log = logging.getLogger(__name__)
FILENAME = "optimal_lr.json"
CUMULATIVE = "lr_sweep_cumulative.json"


class OptimalLRError(RedHeartError, ValueError):
    """optimal_lr.json is missing, unreadable or holds no chosen LR."""


def cumulative_path(config: DictConfig) -> Path:
    """`lr_sweep.cumulative_file`, or `<hydra.sweep.dir>/lr_sweep_cumulative.json` when it is null."""
    shared = OmegaConf.select(config, "lr_sweep.cumulative_file")
    return Path(shared) if shared else Path(config.hydra.sweep.dir) / CUMULATIVE


def select_from_config(entries: list[dict[str, Any]], config: DictConfig) -> LRSelection:
    score = OmegaConf.to_container(config.lr_sweep.score, resolve=True)
    return select(entries, method=score["method"], weights=score.get("weights"), last_k=score.get("last_k", 3),
                  gap_weight=score.get("gap_weight", 0.1))


def comparable(entries: list[dict[str, Any]], sweep_dir: Path, signature: str | None = None) -> list[dict[str, Any]]:
    """Entries to compare: those sharing `signature`, by default the most common one among this sweep's jobs."""
    if signature is None:
        mine = Counter(e["signature"] for e in entries if Path(e["sweep_dir"]) == Path(sweep_dir).resolve())
        if not mine:
            return []
        signature, _ = mine.most_common(1)[0]
        if len(mine) > 1:
            log.warning("this sweep changed more than the learning rate (%d config signatures): choosing among the "
                        "%d jobs of the most common one", len(mine), mine[signature])
    return [e for e in entries if e["signature"] == signature]


def write_optimal(config: DictConfig, signature: str | None = None) -> LRSelection | None:
    """Score the sweep's jobs; write optimal_lr.json and lr_curves.png into the sweep folder."""
    sweep_dir = Path(config.hydra.sweep.dir).resolve()
    path = cumulative_path(config)
    entries = comparable(CumulativeResults(path).read(), sweep_dir, signature)
    if not entries:
        return None
    selection = select_from_config(entries, config)
    body = {**selection.as_json(), "param": "optim.lr", "jobs": len(entries), "cumulative_file": str(path),
            "signature": entries[0]["signature"], "sweep_dir": str(sweep_dir)}
    if selection.best_lr is not None:
        body["next"] = f"python train.py optim.lr='${{optimal_lr:{sweep_dir / FILENAME}}}'"
    atomic_write_json(sweep_dir / FILENAME, body)
    from redheart.sweep.plots import plot_lr_curves  # matplotlib: imported only when a sweep ends

    plot_lr_curves(entries, selection, sweep_dir / "lr_curves.png")
    log.info("optimal LR: %s (%s); %s", selection.best_lr, selection.reason, sweep_dir / FILENAME)
    return selection


def read_optimal_lr(path: str | Path) -> float:
    """The chosen LR of an optimal_lr.json (or of the sweep folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise OptimalLRError(f"{path}: no such file (run an LR sweep first: docs/sweeps.md)")
    data = read_json(path, OptimalLRError)
    lr = data.get("lr") if isinstance(data, dict) else None
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise OptimalLRError(f"{path}: field 'lr' holds no chosen learning rate ({lr!r})")
    return float(lr)


def register_resolver() -> None:
    """`${optimal_lr:PATH}` in any config (idempotent)."""
    if not OmegaConf.has_resolver("optimal_lr"):
        OmegaConf.register_new_resolver("optimal_lr", lambda p: read_optimal_lr(p))
