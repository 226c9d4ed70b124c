"""Model bundles: one chosen set of trained weights, ready to use (docs in README, "Using a trained model").

format    the folder: weights.safetensors (+ sha256), config.json, README.md model card; reading verifies
model     load_model(DIR) -> RedHeartModel with predict(texts): labels, calibrated probabilities, every task
export    a bundle from a run folder (crossover, best single, last or any epoch)
inputs    texts from JSON Lines, JSON, plain text or a mapped table, in batches; outputs written atomically
evaluate  a bundle measured on any labelled dataset (every valid record is a test record)
"""

from redheart.bundle.errors import BundleError
from redheart.bundle.model import RedHeartModel, load_model

__all__ = ["BundleError", "RedHeartModel", "load_model"]
