"""Neural analyzers (`analyzers.neural_*`): one deep network per task, each with its own prediction.

Each reads the backbone tokens with its own attention query and runs a deep residual MLP. They are
deliberately independent of the heads: deep supervision gives every analyzer its own loss, so the
analysis can score each module group at every checkpoint, and the fused output averages them with the
heads (analyzers outside the loss never learn: docs/design.md, Model).
"""

from __future__ import annotations

from redheart.model.blocks import AttentiveReader


class NeuralAnalyzer(AttentiveReader):
    """The heads' reader (attention query → residual MLP → output), deeper and wider, used on its own."""
