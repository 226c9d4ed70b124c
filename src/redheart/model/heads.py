"""The four task heads and the cross-task exchange between them (`heads.*`).

The design gives the heads group 153.1M although its four heads sum to 63.1M. The missing ~90M is
`heads.exchange`: after each head encodes its own task representation, the four representations
attend to each other (a transformer over four task tokens) so that, e.g., the regret head can use
what the emotion head saw; a gate then decides per task how much of the exchanged view to take.
"""

from __future__ import annotations

import torch
from torch import nn

from redheart.model.blocks import AttentiveReader, transformer_stack

TASKS = ("emotion", "bentham", "regret", "surd")


class CrossTaskExchange(nn.Module):
    """Transformer over the task representations [B, tasks, width] plus a per-task gate."""

    def __init__(self, width: int, tasks: int, layers: int, heads: int, ffn: int, gate_hidden: int,
                 dropout: float = 0.1):
        super().__init__()
        self.task_embedding = nn.Parameter(torch.randn(tasks, width) * 0.02)
        self.encoder = transformer_stack(width, heads, ffn, layers, dropout)
        self.gate = nn.Sequential(nn.Linear(tasks * width, gate_hidden), nn.GELU(), nn.Linear(gate_hidden, tasks))

    def forward(self, representations: torch.Tensor) -> torch.Tensor:
        exchanged = self.encoder(representations + self.task_embedding)
        gate = torch.sigmoid(self.gate(exchanged.flatten(1))).unsqueeze(-1)
        return representations + gate * exchanged


class TaskHeads(nn.Module):
    """`heads.emotion` (classes + intensity), `heads.bentham`, `heads.regret`, `heads.surd`, `heads.exchange`."""

    def __init__(self, in_dim: int, width: int, attn_heads: int, num_classes: int, num_bentham: int,
                 num_surd: int, emotion: dict, bentham: dict, regret: dict, surd: dict, exchange: dict,
                 dropout: float = 0.1):
        super().__init__()
        out_dims = {"emotion": num_classes + 1, "bentham": num_bentham, "regret": 1, "surd": num_surd}
        sizes = {"emotion": emotion, "bentham": bentham, "regret": regret, "surd": surd}
        for task in TASKS:
            # each head: its own attention read → residual MLP; `output` runs after the exchange
            self.add_module(task, AttentiveReader(in_dim, attn_heads, width, sizes[task]["depth"],
                                                  sizes[task]["hidden"], out_dims[task], dropout))
        self.exchange = CrossTaskExchange(width, len(TASKS), dropout=dropout, **exchange)
        self.num_classes = num_classes

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        heads = [getattr(self, task) for task in TASKS]
        exchanged = self.exchange(torch.stack([head.encode(tokens, padding) for head in heads], dim=1))
        out = {task: head.output(exchanged[:, i]) for i, (task, head) in enumerate(zip(TASKS, heads, strict=True))}
        emotion = out.pop("emotion")
        out["emotion"], out["intensity"] = emotion[:, : self.num_classes], emotion[:, self.num_classes]
        out["regret"] = out["regret"][:, 0]
        return out
