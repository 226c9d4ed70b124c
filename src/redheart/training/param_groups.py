"""Optimizer parameter groups: no weight decay on biases/norms, optional layer-wise LR decay
(docs/design.md, Training recipe).

Layer-wise decay: the backbone's transformer layer i of L gets lr · decay^(L - i), its tokenizer and
positions (below layer 0) lr · decay^(L + 1), its final norm lr; heads and phase networks the base lr;
every analyzer `analyzer_scale` · lr. Each group carries `lr_scale`, so schedulers and sweeps that set a
base LR keep the ratios (`initial_lr` is derived from it by the scheduler).

The fine-tuned encoder (`encoder.model.*`) has its own LR and its own decay (`encoder` dict: lr,
layer_decay): its top layer trains at the encoder LR, each lower layer × layer_decay, the embeddings
one step below the lowest layer; pretrained weights near the input hold general features that a small
dataset should move least. `encoder.project` (new, randomly initialised) trains at the base LR.
"""

from __future__ import annotations

import re

from torch import nn

_LAYER = re.compile(r"^backbone\.encoder\.layers\.(\d+)\.")
_ENCODER_LAYER = re.compile(r"^encoder\.model\..*?\blayers?\.(\d+)\.")
_ENCODER_EMBEDDINGS = re.compile(r"^encoder\.model\.(.*\.)?(embeddings|embed_tokens|wte|wpe)\b")


def encoder_lr_scale(name: str, num_layers: int, relative_lr: float, layer_decay: float) -> float:
    """Scale of an `encoder.model.*` parameter: relative_lr (= encoder LR / base LR) × decay^(depth below top)."""
    match = _ENCODER_LAYER.match(name)
    if match:
        return relative_lr * layer_decay ** (num_layers - 1 - int(match.group(1)))
    if _ENCODER_EMBEDDINGS.match(name):
        return relative_lr * layer_decay**num_layers
    return relative_lr  # anything above the layers (a final norm): the top LR


def lr_scale(name: str, num_layers: int, backbone_decay: float, analyzer_scale: float) -> float:
    if name.startswith("backbone."):
        match = _LAYER.match(name)
        if match:
            return backbone_decay ** (num_layers - int(match.group(1)))
        return 1.0 if name.startswith("backbone.norm") else backbone_decay ** (num_layers + 1)
    if name.startswith("analyzers."):
        return analyzer_scale
    return 1.0


def parameter_groups(net: nn.Module, lr: float, weight_decay: float, layerwise: dict | None = None,
                     encoder: dict | None = None) -> list[dict]:
    """Groups keyed by (lr scale, decayed or not); every trainable parameter lands in exactly one."""
    num_layers = len(net.backbone.encoder.layers)
    text_encoder = getattr(net, "encoder", None)
    encoder = encoder or {}
    groups: dict[tuple[float, bool], dict] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        scale = 1.0
        if name.startswith("encoder.model."):
            scale = encoder_lr_scale(name, text_encoder.num_layers, float(encoder.get("lr", lr)) / lr,
                                     float(encoder.get("layer_decay", 1.0)))
        elif layerwise and layerwise.get("enabled"):
            scale = lr_scale(name, num_layers, layerwise["backbone_decay"], layerwise["analyzer_scale"])
        decayed = param.ndim >= 2 and not name.endswith(("position", "query", "task_embedding"))
        key = (scale, decayed)
        if key not in groups:
            groups[key] = {"params": [], "lr": lr * scale, "lr_scale": scale,
                           "weight_decay": weight_decay if decayed else 0.0}
        groups[key]["params"].append(param)
    return list(groups.values())
