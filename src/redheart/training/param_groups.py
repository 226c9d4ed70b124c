"""Optimizer parameter groups: no weight decay on biases/norms, optional layer-wise LR decay
(docs/design.md, Training recipe).

Layer-wise decay: the backbone's transformer layer i of L gets lr · decay^(L - i), its tokenizer and
positions (below layer 0) lr · decay^(L + 1), its final norm lr; heads and phase networks the base lr;
every analyzer `analyzer_scale` · lr. Each group carries `lr_scale`, so schedulers and sweeps that set a
base LR keep the ratios (`initial_lr` is derived from it by the scheduler).
"""

from __future__ import annotations

import re

from torch import nn

_LAYER = re.compile(r"^backbone\.encoder\.layers\.(\d+)\.")


def lr_scale(name: str, num_layers: int, backbone_decay: float, analyzer_scale: float) -> float:
    if name.startswith("backbone."):
        match = _LAYER.match(name)
        if match:
            return backbone_decay ** (num_layers - int(match.group(1)))
        return 1.0 if name.startswith("backbone.norm") else backbone_decay ** (num_layers + 1)
    if name.startswith("analyzers."):
        return analyzer_scale
    return 1.0


def parameter_groups(net: nn.Module, lr: float, weight_decay: float, layerwise: dict | None = None) -> list[dict]:
    """Groups keyed by (lr scale, decayed or not); every trainable parameter lands in exactly one."""
    num_layers = len(net.backbone.encoder.layers)
    groups: dict[tuple[float, bool], dict] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        scale = 1.0
        if layerwise and layerwise.get("enabled"):
            scale = lr_scale(name, num_layers, layerwise["backbone_decay"], layerwise["analyzer_scale"])
        decayed = param.ndim >= 2 and not name.endswith(("position", "query", "task_embedding"))
        key = (scale, decayed)
        if key not in groups:
            groups[key] = {"params": [], "lr": lr * scale, "lr_scale": scale,
                           "weight_decay": weight_decay if decayed else 0.0}
        groups[key]["params"].append(param)
    return list(groups.values())
