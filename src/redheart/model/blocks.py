"""Building blocks shared by the modules of the tree: a residual MLP and attention pooling.

Every width and depth is an argument, so presets (conf/model/*.yaml) size the whole tree.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """Pre-norm feed-forward block: x + W2·GELU(W1·LN(x))."""

    def __init__(self, width: int, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, hidden)
        self.act = nn.GELU()  # a module, not F.gelu: the dead-unit monitor hooks activation modules
        self.down = nn.Linear(hidden, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.down(self.act(self.up(self.norm(x)))))


class ResidualMLP(nn.Module):
    """in_dim → width → `depth` residual blocks (feed-forward width `hidden`) → LayerNorm."""

    def __init__(self, in_dim: int, width: int, depth: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(in_dim, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width, hidden, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.proj(x)))


class AttentionPool(nn.Module):
    """A learned query attends over a token sequence [B, T, D] → [B, D] (task-specific reading)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """`padding` [B, T], True where a token is padding: never attended to."""
        query = self.query.expand(tokens.shape[0], -1, -1)
        pooled, _ = self.attn(query, tokens, tokens, key_padding_mask=padding, need_weights=False)
        return pooled[:, 0]


class AttentiveReader(nn.Module):
    """Own attention query over the tokens → residual MLP → linear output (heads and neural analyzers)."""

    def __init__(self, in_dim: int, attn_heads: int, width: int, depth: int, hidden: int, out_dim: int,
                 dropout: float = 0.1):
        super().__init__()
        self.pool = AttentionPool(in_dim, attn_heads)
        self.encoder = ResidualMLP(in_dim, width, depth, hidden, dropout)
        self.output = nn.Linear(width, out_dim)

    def encode(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.pool(tokens, padding))

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (prediction [B, out_dim], features [B, width])."""
        features = self.encode(tokens, padding)
        return self.output(features), features


def transformer_stack(dim: int, heads: int, ffn: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    """torch's pre-norm TransformerEncoder with GELU; nested tensors off (they warn with norm_first).

    The activation is an nn.GELU module (torch's fast path accepts it) so activation hooks see it.
    """
    layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout, activation=nn.GELU(), batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def masked_mean(tokens: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
    """Mean over the non-padding tokens of [B, T, D] (`padding` True where padded; None: plain mean)."""
    if padding is None:
        return tokens.mean(dim=1)
    keep = (~padding).unsqueeze(-1).to(tokens.dtype)
    return (tokens * keep).sum(1) / keep.sum(1).clamp_min(1.0)
