"""redheart: a reproducible training pipeline for a multi-task emotion and ethics model."""

__version__ = "0.1.0"


def load_model(path, **kwargs):
    """A trained model bundle, ready for `predict(texts)` (redheart.bundle.model.load_model)."""
    from redheart.bundle.model import load_model as _load  # deferred: `import redheart` stays free of torch

    return _load(path, **kwargs)
