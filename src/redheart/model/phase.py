"""Phase networks (`phase.*`): the last stage, turning the fused estimates into the final outputs.

- calibrator (Phase0EmotionCalibrator): per example, a temperature and a bias per class for the
  Kalman-fused emotion logits, from the backbone features and the filter's own variance; trained by
  the final cross-entropy, so it learns to be confident only where the estimates agree.
- empathy (Phase1EmpathyLearner): how strongly the writer feels it; corrects the fused intensity and
  regret from the calibrated emotion distribution (regret tracks guilt/shame/sadness).
- community (Phase2CommunityNetwork): the social view; corrects the fused Bentham (extent, external
  cost, redistribution...) and SURD scores from the backbone features and all fused estimates.
Corrections are added in logit space to the average of the heads and analyzers.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int = 2, dropout: float = 0.1) -> nn.Sequential:
    """`depth` hidden GELU layers of width `hidden`."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers, nn.Linear(hidden, out_dim))


class EmotionCalibrator(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, hidden: int, depth: int = 2, dropout: float = 0.1):
        super().__init__()
        self.net = mlp(in_dim + 2 * num_classes, hidden, 2 * num_classes, depth, dropout)
        self.num_classes = num_classes

    def forward(self, pooled: torch.Tensor, logits: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        params = self.net(torch.cat([pooled, logits.to(pooled.dtype), variance.to(pooled.dtype)], dim=-1))
        log_temperature, bias = params.split(self.num_classes, dim=-1)
        return logits / torch.exp(log_temperature.clamp(-3, 3)) + bias


class EmpathyLearner(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, hidden: int, depth: int = 2, dropout: float = 0.1):
        super().__init__()
        self.net = mlp(in_dim + num_classes + 2, hidden, 2, depth, dropout)

    def forward(self, pooled: torch.Tensor, emotion_probs: torch.Tensor, intensity: torch.Tensor,
                regret: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([pooled, emotion_probs.to(pooled.dtype), intensity[:, None], regret[:, None]], dim=-1)
        correction = self.net(x)
        return intensity + correction[:, 0], regret + correction[:, 1]


class CommunityNetwork(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, num_bentham: int, num_surd: int, hidden: int,
                 depth: int = 2, dropout: float = 0.1):
        super().__init__()
        self.num_bentham = num_bentham
        self.net = mlp(in_dim + num_classes + num_bentham + num_surd, hidden, num_bentham + num_surd, depth, dropout)

    def forward(self, pooled: torch.Tensor, emotion_probs: torch.Tensor, bentham: torch.Tensor,
                surd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        correction = self.net(torch.cat([pooled, emotion_probs.to(pooled.dtype), bentham, surd], dim=-1))
        return bentham + correction[:, : self.num_bentham], surd + correction[:, self.num_bentham :]


class PhaseNetworks(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, num_bentham: int, num_surd: int, calibrator: dict,
                 empathy: dict, community: dict, dropout: float = 0.1):
        super().__init__()
        self.calibrator = EmotionCalibrator(in_dim, num_classes, dropout=dropout, **calibrator)
        self.empathy = EmpathyLearner(in_dim, num_classes, dropout=dropout, **empathy)
        self.community = CommunityNetwork(in_dim, num_classes, num_bentham, num_surd, dropout=dropout, **community)
