"""The fine-tuned sentence encoder (`encoder`): a Hugging Face transformer inside RedHeartNet.

Why inside the net: with frozen cached vectors the model can learn no more than a read-out of one
384-number summary; here the words' token states reach the backbone as a sequence and the encoder is
trained end to end (its own module group, LR and layer-wise decay; training/param_groups.py).

Outputs for a batch of token ids:
- `sentence`: masked mean of the token states, L2-normalised when `normalize` (what the frozen
  pipeline caches for sentence-transformers models), so the backbone's latent tokens start from
  exactly the vector the frozen model sees;
- `tokens`: every token state projected to the backbone width (`encoder.project`), for the real sequence.

Weights load with `from_pretrained` (safetensors; no remote code). On the meta device (parameter
table) only the config is read, so counting the encoder needs no weights in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from redheart.data.embeddings import resolve_model_path


def _on_meta() -> bool:
    return torch.empty(0).device.type == "meta"


class SentenceEncoder(nn.Module):
    def __init__(self, model: str, out_dim: int, normalize: bool = True, pretrained: bool = True,
                 gradient_checkpointing: bool = False):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        path = resolve_model_path(model)
        if Path(path).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model never needs the hub
        if pretrained and not _on_meta():
            self.model = AutoModel.from_pretrained(path, trust_remote_code=False)
        else:
            self.model = AutoModel.from_config(AutoConfig.from_pretrained(path, trust_remote_code=False))
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps submodule modes, dropout must train
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None  # unused (we pool the token states ourselves); would get no gradient
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.hidden = int(self.model.config.hidden_size)
        self.num_layers = int(self.model.config.num_hidden_layers)
        self.normalize = normalize
        self.project = nn.Linear(self.hidden, out_dim)
        self.frozen = False  # set by the LightningModule while the encoder is held for the first epochs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (sentence [B, hidden], projected token states [B, L, out_dim])."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(states.dtype)
        sentence = (states * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        if self.normalize:
            sentence = nn.functional.normalize(sentence, dim=-1)
        return sentence, self.project(states)
