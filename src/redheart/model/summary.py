"""Parameter table: target vs actual per module and per seed group, built on the meta device.

    python -m redheart.model.summary model=full        # prints the table; exit 1 if off target

On the meta device tensors have shapes but no storage, so the 730M tree is counted in about a second
with no memory. `train(cfg)` builds the same table at start-up, saves it as parameters.json in the run
directory and stops with a clear error when a preset with targets is off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from redheart.errors import RedHeartError
from redheart.model.net import ENCODER, MODULE_TREE, PARAMETER_COUNT_GROUPS


class ParameterCountError(RedHeartError, ValueError):
    """The built model does not match the preset's parameter targets (docs/design.md, Model)."""


def build_on_meta(net_cfg: dict | DictConfig) -> torch.nn.Module:
    with torch.device("meta"):
        return hydra.utils.instantiate(net_cfg)


def _row(actual: int, target: int | None, tolerance: float) -> dict[str, Any]:
    row: dict[str, Any] = {"actual": actual, "target": target}
    if target is not None:
        row["difference"] = actual - target
        row["relative"] = (actual - target) / target
        row["ok"] = abs(actual - target) <= tolerance * target
    return row


def parameter_table(net: torch.nn.Module, targets: dict | None = None) -> dict[str, Any]:
    """Counts per module prefix, per seed group and in total, compared with `targets` when given.

    A fine-tuned encoder is counted on its own row (`encoder`) and left out of TOTAL: the seed's figures
    describe the network behind the sentence encoder, so the targets hold whichever encoder is chosen.
    """
    targets = targets or {}
    tolerance = float(targets.get("tolerance", 0.01))
    module_targets, group_targets = targets.get("modules", {}), targets.get("groups", {})
    counts = {prefix: sum(p.numel() for p in net.get_submodule(prefix).parameters()) for prefix in MODULE_TREE}
    text_encoder = getattr(net, ENCODER, None)
    encoder_count = sum(p.numel() for p in text_encoder.parameters()) if text_encoder is not None else 0
    total = sum(p.numel() for p in net.parameters()) - encoder_count
    unassigned = total - sum(counts.values())
    if unassigned:  # every parameter must live under a fixed prefix: checkpoints and crossover rely on it
        raise ParameterCountError(f"{unassigned} parameters sit outside the module tree {list(MODULE_TREE)}")
    modules = {p: {"seed_name": MODULE_TREE[p], **_row(c, module_targets.get(p), tolerance)} for p, c in counts.items()}
    groups = {
        group: _row(sum(c for p, c in counts.items() if p.startswith(prefixes)), group_targets.get(group), tolerance)
        for group, prefixes in PARAMETER_COUNT_GROUPS.items()
    }
    total_row = _row(total, targets.get("total"), 0.0)
    failures = [f"module {p}" for p, r in modules.items() if r.get("ok") is False]
    failures += [f"group {g}" for g, r in groups.items() if r.get("ok") is False]
    failures += ["total"] if total_row.get("ok") is False else []
    table = {"modules": modules, "groups": groups, "total": total_row, "tolerance": tolerance, "failures": failures}
    if text_encoder is not None:
        table["encoder"] = {"seed_name": "fine-tuned sentence encoder", "actual": encoder_count, "target": None}
        table["total_with_encoder"] = {"actual": total + encoder_count, "target": None}
    return table


def verify(table: dict[str, Any]) -> None:
    """Raise ParameterCountError naming every module/group/total that misses its target."""
    if not table["failures"]:
        return
    lines = []
    for name in table["failures"]:
        kind, _, key = name.partition(" ")
        row = table["total"] if kind == "total" else table[f"{kind}s"][key]
        lines.append(f"  {name}: {row['actual']:,} vs target {row['target']:,} ({row['relative']:+.2%})")
    raise ParameterCountError(
        f"the model misses the preset's parameter targets (tolerance {table['tolerance']:.0%} per module/group, "
        "total exact):\n" + "\n".join(lines) + "\nCheck the preset's widths (conf/model/) or model.param_targets."
    )


def format_table(table: dict[str, Any]) -> str:
    def line(name: str, row: dict, seed_name: str = "") -> str:
        target = f"{row['target']:>13,}" if row.get("target") is not None else f"{'-':>13}"
        diff = f"{row['difference']:>+12,} {row['relative']:>+8.3%}" if "difference" in row else f"{'':>21}"
        mark = {True: "ok", False: "OFF", None: ""}[row.get("ok")]
        return f"{name:<28} {seed_name:<30} {row['actual']:>13,} {target} {diff} {mark}"

    header = f"{'module':<28} {'seed name':<30} {'actual':>13} {'target':>13} {'difference':>21}"
    out = [header, "-" * len(header)]
    out += [line(p, r, r["seed_name"][:30]) for p, r in table["modules"].items()]
    out += ["", f"{'group':<28}"] + [line(g, r) for g, r in table["groups"].items()]
    out += ["", line("TOTAL", table["total"])]
    if "encoder" in table:
        out += ["", line(ENCODER, table["encoder"], table["encoder"]["seed_name"]),
                line("TOTAL with encoder", table["total_with_encoder"])]
    return "\n".join(out)


def config_dir() -> Path:
    root = Path(os.environ.get("REDHEART_ROOT", Path(__file__).resolve().parents[3]))
    if not (root / "conf" / "train.yaml").is_file():
        raise SystemExit(f"conf/train.yaml not found under {root}; set REDHEART_ROOT to the redheart checkout")
    return root / "conf"


def main(argv: list[str] | None = None) -> int:
    from hydra import compose, initialize_config_dir

    overrides = list(sys.argv[1:] if argv is None else argv)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    targets = OmegaConf.to_container(cfg.model.param_targets, resolve=True) if cfg.model.get("param_targets") else None
    table = parameter_table(build_on_meta(cfg.model.net), targets)
    print(format_table(table))
    if table["failures"]:
        print(f"\nOFF TARGET: {', '.join(table['failures'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
