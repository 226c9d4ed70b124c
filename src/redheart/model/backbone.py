"""RedHeartUnifiedBackbone: the cached sentence embedding → a short sequence of learned tokens → transformer.

Why this shape: the pipeline caches one vector per text (re-encoding 10k texts every epoch is what
the cache exists to avoid), but a transformer needs a sequence. A two-layer projection expands the
vector into `tokens` token vectors (each with a learned position), in the spirit of Perceiver
latents / prefix tokens; self-attention then lets those tokens specialise. Heads and analyzers read
the token sequence with their own attention queries, so every task can look at different tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from redheart.model.blocks import transformer_stack


class UnifiedBackbone(nn.Module):
    def __init__(self, input_dim: int, dim: int, tokens: int, layers: int, heads: int, ffn: int,
                 tokenizer_hidden: int, dropout: float = 0.1):
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.tokenize = nn.Sequential(nn.Linear(input_dim, tokenizer_hidden), nn.GELU(),
                                      nn.Linear(tokenizer_hidden, tokens * dim))
        self.position = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.encoder = transformer_stack(dim, heads, ffn, layers, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, input_dim] → (tokens [B, T, dim], pooled [B, dim])."""
        x = self.tokenize(embedding).view(-1, self.tokens, self.dim) + self.position
        tokens = self.norm(self.encoder(x))
        return tokens, tokens.mean(dim=1)
