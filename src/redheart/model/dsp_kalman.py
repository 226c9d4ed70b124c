"""Signal-processing view of emotion (`analyzers.dsp`) and Kalman fusion of the estimates (`analyzers.kalman`)."""

from __future__ import annotations

import torch
from torch import nn


class EmotionDSPSimulator(nn.Module):
    """A learnable filter bank over an 'emotion signal'.

    The features are projected into a multi-channel signal of `length` samples; a bank of `bands`
    learnable FIR filters (a Conv1d) splits it into frequency bands; the log energy of each band (the
    classic filter-bank feature of speech processing) is classified into emotion logits.
    """

    def __init__(self, in_dim: int, num_classes: int, channels: int, length: int, bands: int, kernel: int,
                 hidden: int, dropout: float = 0.1):
        super().__init__()
        self.channels, self.length = channels, length
        self.to_signal = nn.Linear(in_dim, channels * length)
        self.filter_bank = nn.Conv1d(channels, bands, kernel, padding=kernel // 2)
        self.classifier = nn.Sequential(nn.LayerNorm(bands), nn.Linear(bands, hidden), nn.GELU(),
                                        nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        signal = self.to_signal(features).view(-1, self.channels, self.length)
        band_energy = torch.log(self.filter_bank(signal).float().pow(2).mean(dim=-1) + 1e-6)
        return self.classifier(band_energy.to(features.dtype))


class DynamicKalmanFilter(nn.Module):
    """Fuses `sources` noisy estimates of the emotion logits with a Kalman filter.

    State: the emotion logits (n = classes). Prior: a learned initial state and covariance pushed through
    a learned transition F with process noise Q. Each source i is an observation z_i = H_i x + noise with
    learned diagonal noise R_i; "dynamic": a small network reads how far each source is from the prior
    (its innovation) and rescales that source's noise per example, so a source that disagrees is trusted
    less. Updates run source by source in the Joseph form (stays symmetric positive definite), in float32.
    """

    def __init__(self, num_classes: int, sources: int, noise_hidden: int):
        super().__init__()
        n, m = num_classes, sources
        self.transition = nn.Parameter(torch.eye(n))
        self.log_process_noise = nn.Parameter(torch.full((n,), -2.0))
        self.initial_state = nn.Parameter(torch.zeros(n))
        self.log_initial_variance = nn.Parameter(torch.zeros(n))
        self.observation = nn.Parameter(torch.eye(n).repeat(m, 1, 1))
        self.log_observation_noise = nn.Parameter(torch.zeros(m, n))
        self.noise_net = nn.Sequential(nn.Linear(m * n, noise_hidden), nn.Tanh(), nn.Linear(noise_hidden, m))

    def forward(self, estimates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """estimates [B, sources, n] → (fused state [B, n], its variance [B, n])."""
        # float32 throughout, also when a strategy (DeepSpeed fp16) has cast the parameters to half
        with torch.autocast(device_type=estimates.device.type, enabled=False):
            z = estimates.float()
            transition, observation = self.transition.float(), self.observation.float()
            batch, m, n = z.shape
            eye = torch.eye(n, device=z.device)
            x = (transition @ self.initial_state.float()).expand(batch, n)
            p0 = torch.diag(self.log_initial_variance.float().exp())
            p = (transition @ p0 @ transition.T + torch.diag(self.log_process_noise.float().exp())).expand(batch, n, n)
            innovation = z - torch.einsum("mij,bj->bmi", observation, x)
            noise_in = innovation.abs().flatten(1).to(self.noise_net[0].weight.dtype)
            scale = nn.functional.softplus(self.noise_net(noise_in).float()) + 1e-3  # [B, m]
            observation_noise = self.log_observation_noise.float().exp()
            for i in range(m):
                h = observation[i]
                r = torch.diag_embed(observation_noise[i] * scale[:, i : i + 1])
                s = h @ p @ h.T + r
                gain = torch.linalg.solve(s, h @ p).transpose(-1, -2)  # P Hᵀ S⁻¹ (S, P symmetric)
                x = x + (gain @ (z[:, i] - x @ h.T).unsqueeze(-1)).squeeze(-1)
                joseph = eye - gain @ h
                p = joseph @ p @ joseph.transpose(-1, -2) + gain @ r @ gain.transpose(-1, -2)
            return x, torch.diagonal(p, dim1=-2, dim2=-1)
