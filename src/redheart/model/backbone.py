"""RedHeartUnifiedBackbone: the cached sentence embedding → a short sequence of learned tokens → transformer.

Why this shape: the pipeline caches one vector per text (re-encoding 10k texts every epoch is what
the cache exists to avoid), but a transformer needs a sequence. A two-layer projection expands the
vector into `tokens` token vectors (each with a learned position), in the spirit of Perceiver
latents / prefix tokens; self-attention then lets those tokens specialise. Heads and analyzers read
the token sequence with their own attention queries, so every task can look at different tokens.

With the fine-tuned encoder (model/encoder.py) the words themselves join the sequence: the latent
tokens (from the encoder's sentence vector, as above) are followed by every word's projected token
state, and a padding mask [B, T + L] travels with the sequence so no reader attends to padding. The
backbone's parameters are the same in both modes (the word projection belongs to `encoder`).
"""

from __future__ import annotations

import torch
from torch import nn

from redheart.model.blocks import masked_mean, transformer_stack


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

    def forward(self, embedding: torch.Tensor, words: torch.Tensor | None = None,
                word_padding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """[B, input_dim] (+ words [B, L, dim], word_padding [B, L]) → (tokens, pooled [B, dim], padding).

        Without words: tokens [B, T, dim] and padding None; with words: [B, T + L, dim] and its mask.
        """
        x = self.tokenize(embedding).view(-1, self.tokens, self.dim) + self.position
        padding = None
        if words is not None:
            x = torch.cat([x, words.to(x.dtype)], dim=1)
            latent = torch.zeros(x.shape[0], self.tokens, dtype=torch.bool, device=x.device)
            padding = torch.cat([latent, word_padding], dim=1)
        tokens = self.norm(self.encoder(x, src_key_padding_mask=padding))
        return tokens, masked_mean(tokens, padding), padding
