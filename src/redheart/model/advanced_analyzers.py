"""Advanced analyzers (`analyzers.advanced_*`): task models with a different inductive bias each.

- emotion: its own transformer layers over the backbone tokens (a second, task-only view).
- regret: a bidirectional GRU reading the tokens as a sequence (regret compares what happened with
  what could have happened, so an order-aware reader), then an MLP.
- bentham: one small expert per Bentham dimension over a shared projection (per-dimension weights,
  batched with einsum).
- surd: a compact residual MLP over the pooled backbone features.
"""

from __future__ import annotations

import torch
from torch import nn

from redheart.model.blocks import AttentionPool, ResidualMLP, masked_mean, transformer_stack


class AdvancedEmotionAnalyzer(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, layers: int, heads: int, ffn: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = transformer_stack(in_dim, heads, ffn, layers, dropout)
        self.pool = AttentionPool(in_dim, heads)
        self.norm = nn.LayerNorm(in_dim)
        self.output = nn.Linear(in_dim, num_classes)

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        encoded = self.encoder(tokens, src_key_padding_mask=padding)
        return self.output(self.norm(self.pool(encoded, padding)))


class AdvancedRegretAnalyzer(nn.Module):
    def __init__(self, in_dim: int, hidden: int, layers: int, mlp_width: int, mlp_depth: int, mlp_hidden: int,
                 dropout: float = 0.1):
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.mlp = ResidualMLP(4 * hidden, mlp_width, mlp_depth, mlp_hidden, dropout)
        self.output = nn.Linear(mlp_width, 1)

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        if padding is None:
            sequence, _ = self.gru(tokens)
            last = sequence[:, -1]
        else:  # packed: each direction runs over the real tokens only (padding sits at the end)
            lengths = (~padding).sum(1)
            packed = nn.utils.rnn.pack_padded_sequence(tokens, lengths.cpu(), batch_first=True, enforce_sorted=False)
            sequence, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True,
                                                           total_length=tokens.shape[1])
            last = sequence[torch.arange(len(lengths), device=tokens.device), lengths - 1]
        half = sequence.shape[-1] // 2
        # forward direction's last step and backward direction's first step, plus the mean over steps
        summary = torch.cat([last[:, :half], sequence[:, 0, half:], masked_mean(sequence, padding)], dim=-1)
        return self.output(self.mlp(summary))[:, 0]


class AdvancedBenthamCalculator(nn.Module):
    def __init__(self, in_dim: int, num_bentham: int, shared: int, expert_hidden: int):
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(in_dim, shared), nn.GELU())
        self.expert_in = nn.Parameter(torch.randn(num_bentham, shared, expert_hidden) * shared**-0.5)
        self.expert_in_bias = nn.Parameter(torch.zeros(num_bentham, expert_hidden))
        self.expert_out = nn.Parameter(torch.randn(num_bentham, expert_hidden) * expert_hidden**-0.5)
        self.expert_out_bias = nn.Parameter(torch.zeros(num_bentham))
        self.act = nn.GELU()

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        shared = self.shared(pooled)
        hidden = self.act(torch.einsum("bs,dsh->bdh", shared, self.expert_in) + self.expert_in_bias)
        return torch.einsum("bdh,dh->bd", hidden, self.expert_out) + self.expert_out_bias


class AdvancedSURDAnalyzer(nn.Module):
    def __init__(self, in_dim: int, num_surd: int, width: int, depth: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.mlp = ResidualMLP(in_dim, width, depth, hidden, dropout)
        self.output = nn.Linear(width, num_surd)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.output(self.mlp(pooled))
