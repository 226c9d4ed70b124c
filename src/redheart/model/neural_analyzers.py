"""Neural analyzers (`analyzers.neural_*`): one deep network per task, each with its own prediction.

Each reads the backbone tokens with its own attention query and runs a deep residual MLP. They are
deliberately independent of the heads: deep supervision gives every analyzer its own loss, so the
analysis can score each module group at every checkpoint, and the fused output averages them with the
heads (seed 002's analyzers never entered the loss and so never learned).
"""

from __future__ import annotations

import torch
from torch import nn

from redheart.model.blocks import AttentionPool, ResidualMLP


class NeuralAnalyzer(nn.Module):
    def __init__(self, in_dim: int, attn_heads: int, width: int, depth: int, hidden: int, out_dim: int,
                 dropout: float = 0.1):
        super().__init__()
        self.pool = AttentionPool(in_dim, attn_heads)
        self.encoder = ResidualMLP(in_dim, width, depth, hidden, dropout)
        self.output = nn.Linear(width, out_dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (prediction [B, out_dim], features [B, width])."""
        features = self.encoder(self.pool(tokens))
        return self.output(features), features
