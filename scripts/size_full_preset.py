"""How the widths in conf/model/full.yaml were found (a development aid, not part of the pipeline).

The design fixes the backbone at exactly 90,624,132 and the model at exactly 730,466,848 parameters, with
the other modules at rounded figures (±1%). Counts grow with every width, so each ±1% module gets one
width bisected to its target; the backbone and
`heads.exchange` (which takes the remainder of the heads group, see heads.py) each have two widths with
coprime steps, searched for an exact solution. Counts come from instantiating on the meta device, so
they are the real module tree, not a formula kept in sync by hand.

    python scripts/size_full_preset.py      # prints the YAML blocks to paste into conf/model/full.yaml
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import yaml

from redheart.model.net import RedHeartNet

REPO = Path(__file__).resolve().parents[1]
TOTAL = 730_466_848
BACKBONE = 90_624_132


def count(cfg: dict, prefix: str | None = None, input_dim: int = 384) -> int:
    with torch.device("meta"):
        net = RedHeartNet(input_dim, **cfg)
    module = net if prefix is None else net.get_submodule(prefix)
    return sum(p.numel() for p in module.parameters())


def set_key(cfg: dict, path: str, value: int) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, leaf = path.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = value
    return cfg


def solve_one(cfg: dict, prefix: str, key: str, target: int) -> dict:
    """The value of `key` whose module count is closest to `target` (bisection: counts grow with widths)."""
    low, high = 1, 1 << 16
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(set_key(cfg, key, mid), prefix) <= target else (low, mid)
    best = min((low, high), key=lambda v: abs(count(set_key(cfg, key, v), prefix) - target))
    return set_key(cfg, key, best)


def solve_exact(cfg: dict, prefix: str | None, key_a: str, key_b: str, b_range: range, target: int,
                outer: tuple[str, list[int]] | None = None) -> dict:
    """Values of two keys making the count exactly `target`: for each b, solve a and check.

    The count is affine in a and in b, so it is computed at three points per `outer` value, not per b.
    """
    for value in outer[1] if outer else [None]:
        base = set_key(cfg, outer[0], value) if outer else cfg
        c00 = count(set_key(set_key(base, key_a, 100), key_b, 100), prefix)
        step_a = count(set_key(set_key(base, key_a, 101), key_b, 100), prefix) - c00
        step_b = count(set_key(set_key(base, key_a, 100), key_b, 101), prefix) - c00
        for b in b_range:
            a, remainder = divmod(target - c00 - step_b * (b - 100), step_a)
            if remainder == 0 and 256 <= 100 + a <= 8192:
                found = set_key(set_key(base, key_b, b), key_a, 100 + a)
                assert count(found, prefix) == target
                return found
    raise ValueError(f"no exact solution for {prefix} in {b_range} x {outer}")


def main() -> None:
    cfg = yaml.safe_load((REPO / "conf" / "model" / "full.yaml").read_text())["net"]
    targets = yaml.safe_load((REPO / "conf" / "model" / "full.yaml").read_text())["param_targets"]["modules"]
    cfg = solve_exact(cfg, "backbone", "backbone.tokenizer_hidden", "backbone.ffn", range(3072, 5120), BACKBONE,
                      outer=("backbone.tokens", [8, 6, 10, 12, 7, 9, 5, 11, 14, 16]))
    one_knob = {
        "heads.emotion": "heads.emotion.hidden", "heads.bentham": "heads.bentham.hidden",
        "heads.regret": "heads.regret.hidden", "heads.surd": "heads.surd.hidden",
        "analyzers.neural_emotion": "analyzers.neural_emotion.hidden",
        "analyzers.neural_bentham": "analyzers.neural_bentham.hidden",
        "analyzers.neural_regret": "analyzers.neural_regret.hidden",
        "analyzers.neural_surd": "analyzers.neural_surd.hidden",
        "analyzers.advanced_emotion": "analyzers.advanced_emotion.ffn",
        "analyzers.advanced_regret": "analyzers.advanced_regret.mlp_hidden",
        "analyzers.advanced_bentham": "analyzers.advanced_bentham.expert_hidden",
        "analyzers.advanced_surd": "analyzers.advanced_surd.hidden",
        "analyzers.dsp": "analyzers.dsp.hidden",
        "analyzers.kalman": "analyzers.kalman.noise_hidden",
        "phase.calibrator": "phase.calibrator.hidden",
        "phase.empathy": "phase.empathy.hidden",
        "phase.community": "phase.community.hidden",
    }
    for prefix, key in one_knob.items():
        cfg = solve_one(cfg, prefix, key, targets[prefix])
    # both exchange steps are multiples of 3 at width 1024; nudging a small ±1% module fixes the residue
    empathy = cfg["phase"]["empathy"]["hidden"]
    cfg = solve_exact(cfg, None, "heads.exchange.gate_hidden", "heads.exchange.ffn", range(2048, 6144), TOTAL,
                      outer=("phase.empathy.hidden", [empathy, empathy + 1, empathy - 1]))
    print(yaml.safe_dump({"net": cfg}, sort_keys=False, default_flow_style=None))
    print("total", count(cfg), "backbone", count(cfg, "backbone"))


if __name__ == "__main__":
    main()
