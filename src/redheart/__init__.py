"""redheart: a reproducible training pipeline for a multi-task emotion and ethics model."""

__version__ = "0.1.0"
