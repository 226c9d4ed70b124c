"""RedHeartNet: the whole module tree (docs/design.md, Model) and how its outputs are fused.

State-dict prefixes (fixed; checkpoints, analysis and crossover rely on them):
  backbone · heads.{emotion,bentham,regret,surd,exchange} ·
  analyzers.{neural,advanced}_{emotion,bentham,regret,surd} · analyzers.dsp · analyzers.kalman ·
  phase.{calibrator,empathy,community}

Optional first group: `encoder` (model/encoder.py), the fine-tuned sentence encoder; present only when
`encoder` is configured (conf/encoder/finetune.yaml). Then the net reads token ids and an attention mask
instead of cached vectors, and the backbone's sequence carries the words (with a padding mask that
every attention reader, GRU and pooled mean honours).

Data flow for one batch of cached sentence embeddings (or the encoder's output):
  backbone → tokens, pooled
  emotion:   heads, neural, advanced, DSP logits → Kalman fusion → phase.calibrator → final logits
  intensity: heads.emotion → phase.empathy;   regret: mean(heads, neural, advanced) → phase.empathy
  bentham, surd: mean(heads, neural, advanced) → phase.community
Regression outputs are logits; targets live in [0, 1], so predictions are sigmoid(logit).
`out["modules"]` holds every module's own prediction for deep supervision and per-module metrics.
"""

from __future__ import annotations

import torch
from torch import nn

from redheart.model.advanced_analyzers import (
    AdvancedBenthamCalculator,
    AdvancedEmotionAnalyzer,
    AdvancedRegretAnalyzer,
    AdvancedSURDAnalyzer,
)
from redheart.model.backbone import UnifiedBackbone
from redheart.model.dsp_kalman import DynamicKalmanFilter, EmotionDSPSimulator
from redheart.model.encoder import SentenceEncoder
from redheart.model.heads import TaskHeads
from redheart.model.neural_analyzers import NeuralAnalyzer
from redheart.model.phase import PhaseNetworks

# prefix → the original design's class name, in the design's order
MODULE_TREE: dict[str, str] = {
    "backbone": "RedHeartUnifiedBackbone",
    "heads.emotion": "EmotionHead",
    "heads.bentham": "BenthamHead",
    "heads.regret": "RegretHead",
    "heads.surd": "SURDHead",
    "heads.exchange": "CrossTaskExchange (heads group remainder, see heads.py)",
    "analyzers.neural_emotion": "NeuralEmotionAnalyzer",
    "analyzers.neural_bentham": "NeuralBenthamCalculator",
    "analyzers.neural_regret": "NeuralRegretAnalyzer",
    "analyzers.neural_surd": "NeuralSURDAnalyzer",
    "analyzers.advanced_emotion": "AdvancedEmotionAnalyzer",
    "analyzers.advanced_regret": "AdvancedRegretAnalyzer",
    "analyzers.advanced_bentham": "AdvancedBenthamCalculator",
    "analyzers.advanced_surd": "AdvancedSURDAnalyzer",
    "analyzers.dsp": "EmotionDSPSimulator",
    "analyzers.kalman": "DynamicKalmanFilter",
    "phase.calibrator": "Phase0EmotionCalibrator",
    "phase.empathy": "Phase1EmpathyLearner",
    "phase.community": "Phase2CommunityNetwork",
}

# the groups whose parameter counts the parameter table checks against the preset targets (param_targets.groups)
PARAMETER_COUNT_GROUPS: dict[str, tuple[str, ...]] = {
    "backbone": ("backbone",),
    "heads": ("heads.",),
    "neural_analyzers": ("analyzers.neural_",),
    "advanced_analyzers": ("analyzers.advanced_",),
    "dsp_kalman": ("analyzers.dsp", "analyzers.kalman"),
    "phase": ("phase.",),
}

# what each module predicts on its own (deep supervision, per-module metrics)
MODULE_TASKS: dict[str, tuple[str, ...]] = {
    "heads.emotion": ("emotion", "intensity"),
    "heads.bentham": ("bentham",), "heads.regret": ("regret",), "heads.surd": ("surd",),
    "analyzers.neural_emotion": ("emotion",), "analyzers.neural_bentham": ("bentham",),
    "analyzers.neural_regret": ("regret",), "analyzers.neural_surd": ("surd",),
    "analyzers.advanced_emotion": ("emotion",), "analyzers.advanced_regret": ("regret",),
    "analyzers.advanced_bentham": ("bentham",), "analyzers.advanced_surd": ("surd",),
    "analyzers.dsp": ("emotion",), "analyzers.kalman": ("emotion",),
}

EMOTION_SOURCES = ("heads.emotion", "analyzers.neural_emotion", "analyzers.advanced_emotion", "analyzers.dsp")


class Analyzers(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, num_bentham: int, num_surd: int, attn_heads: int,
                 neural_emotion: dict, neural_bentham: dict, neural_regret: dict, neural_surd: dict,
                 advanced_emotion: dict, advanced_regret: dict, advanced_bentham: dict, advanced_surd: dict,
                 dsp: dict, kalman: dict, dropout: float = 0.1):
        super().__init__()
        self.neural_emotion = NeuralAnalyzer(in_dim, attn_heads, out_dim=num_classes, dropout=dropout, **neural_emotion)
        self.neural_bentham = NeuralAnalyzer(in_dim, attn_heads, out_dim=num_bentham, dropout=dropout, **neural_bentham)
        self.neural_regret = NeuralAnalyzer(in_dim, attn_heads, out_dim=1, dropout=dropout, **neural_regret)
        self.neural_surd = NeuralAnalyzer(in_dim, attn_heads, out_dim=num_surd, dropout=dropout, **neural_surd)
        self.advanced_emotion = AdvancedEmotionAnalyzer(in_dim, num_classes, dropout=dropout, **advanced_emotion)
        self.advanced_regret = AdvancedRegretAnalyzer(in_dim, dropout=dropout, **advanced_regret)
        self.advanced_bentham = AdvancedBenthamCalculator(in_dim, num_bentham, **advanced_bentham)
        self.advanced_surd = AdvancedSURDAnalyzer(in_dim, num_surd, dropout=dropout, **advanced_surd)
        self.dsp = EmotionDSPSimulator(in_dim, num_classes, dropout=dropout, **dsp)
        self.kalman = DynamicKalmanFilter(num_classes, sources=len(EMOTION_SOURCES), **kalman)


ENCODER = "encoder"  # the fine-tuned encoder's prefix; outside MODULE_TREE, which stays the seed's tree


def net_inputs(batch: dict) -> dict[str, torch.Tensor]:
    """The net's keyword inputs from a batch: token ids and mask when the batch has them, else the vector."""
    if "input_ids" in batch:
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    return {"embedding": batch["embedding"]}


class RedHeartNet(nn.Module):
    def __init__(self, input_dim: int, backbone: dict, heads: dict, analyzers: dict, phase: dict,
                 num_classes: int = 7, num_bentham: int = 10, num_surd: int = 4, dropout: float = 0.1,
                 encoder: dict | None = None):
        super().__init__()
        dim = backbone["dim"]
        self.num_classes = num_classes
        self.encoder = SentenceEncoder(out_dim=dim, **encoder) if encoder else None
        if self.encoder is not None:
            input_dim = self.encoder.hidden  # the backbone reads the encoder's sentence vector
        self.backbone = UnifiedBackbone(input_dim, dropout=dropout, **backbone)
        self.heads = TaskHeads(dim, num_classes=num_classes, num_bentham=num_bentham, num_surd=num_surd,
                               dropout=dropout, **heads)
        self.analyzers = Analyzers(dim, num_classes, num_bentham, num_surd, dropout=dropout, **analyzers)
        self.phase = PhaseNetworks(dim, num_classes, num_bentham, num_surd, dropout=dropout, **phase)

    def forward(self, embedding: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> dict:
        words = word_padding = None
        if self.encoder is not None:
            if input_ids is None or attention_mask is None:
                raise ValueError("this net fine-tunes its encoder: pass input_ids and attention_mask, not embeddings")
            embedding, words = self.encoder(input_ids, attention_mask)
            word_padding = attention_mask == 0
        elif embedding is None:
            raise ValueError("this net reads cached sentence embeddings: pass `embedding`")
        tokens, pooled, pad = self.backbone(embedding, words, word_padding)
        a = self.analyzers
        head_out = self.heads(tokens, pad)
        neural = {task: getattr(a, f"neural_{task}")(tokens, pad)[0]
                  for task in ("emotion", "bentham", "regret", "surd")}
        modules = {
            "heads.emotion": {"emotion": head_out["emotion"], "intensity": head_out["intensity"]},
            "heads.bentham": {"bentham": head_out["bentham"]},
            "heads.regret": {"regret": head_out["regret"]},
            "heads.surd": {"surd": head_out["surd"]},
            "analyzers.neural_emotion": {"emotion": neural["emotion"]},
            "analyzers.neural_bentham": {"bentham": neural["bentham"]},
            "analyzers.neural_regret": {"regret": neural["regret"][:, 0]},
            "analyzers.neural_surd": {"surd": neural["surd"]},
            "analyzers.advanced_emotion": {"emotion": a.advanced_emotion(tokens, pad)},
            "analyzers.advanced_regret": {"regret": a.advanced_regret(tokens, pad)},
            "analyzers.advanced_bentham": {"bentham": a.advanced_bentham(pooled)},
            "analyzers.advanced_surd": {"surd": a.advanced_surd(pooled)},
            "analyzers.dsp": {"emotion": a.dsp(pooled)},
        }
        estimates = torch.stack([modules[name]["emotion"] for name in EMOTION_SOURCES], dim=1)
        fused_logits, variance = a.kalman(estimates)
        modules["analyzers.kalman"] = {"emotion": fused_logits}

        def mean_of(task: str) -> torch.Tensor:
            return torch.stack([m[task] for m in modules.values() if task in m]).mean(0)

        p = self.phase
        emotion = p.calibrator(pooled, fused_logits, variance)
        probs = emotion.softmax(-1)
        intensity, regret = p.empathy(pooled, probs, head_out["intensity"], mean_of("regret"))
        bentham, surd = p.community(pooled, probs, mean_of("bentham"), mean_of("surd"))
        final = {"emotion": emotion, "intensity": intensity, "regret": regret, "bentham": bentham, "surd": surd}
        return {"final": final, "modules": modules, "emotion_variance": variance}
