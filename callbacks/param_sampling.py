"""Cheap parameter-change estimates without copying the weights (730M fp32 = 2.9 GB per copy).

A fixed random sample of at most `per_tensor` entries of every tensor is kept per snapshot (≤ 16 KiB
per tensor), plus a float64 checksum of each whole tensor. The relative change of a set of tensors is
‖θ_now − θ_then‖ / ‖θ_then‖ over the sampled entries, an unbiased estimate of the squared-norm ratio
for dense updates; "unchanged" additionally requires the full-tensor checksum to be equal, so a change
outside the sample is still seen. Hand-written: no library keeps sampled weight snapshots.
"""

from __future__ import annotations

import torch


class ParameterSampler:
    def __init__(self, params: dict[str, torch.Tensor], per_tensor: int = 4096, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.indices: dict[str, torch.Tensor] = {}
        for name, p in params.items():
            n = p.numel()
            idx = torch.randperm(n, generator=generator)[:per_tensor] if n > per_tensor else torch.arange(n)
            self.indices[name] = idx.to(p.device)
        self.params = params

    @torch.no_grad()
    def snapshot(self) -> dict[str, tuple[torch.Tensor, float]]:
        return {name: (p.detach().reshape(-1)[self.indices[name]].float().clone(), float(torch.sum(p.detach(), dtype=torch.float64)))
                for name, p in self.params.items()}

    @staticmethod
    def relative_change(old: dict, new: dict, names: list[str]) -> tuple[float, bool]:
        """(‖Δ‖ / ‖θ_old‖ over the samples of `names`, whether anything in those tensors changed)."""
        diff = sum(float((new[n][0] - old[n][0]).pow(2).sum()) for n in names)
        base = sum(float(old[n][0].pow(2).sum()) for n in names)
        changed = diff > 0 or any(new[n][1] != old[n][1] for n in names)
        return (diff**0.5) / max(base**0.5, 1e-12), changed
