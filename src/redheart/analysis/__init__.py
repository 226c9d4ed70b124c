"""Per-module sweet-spot analysis of a training run (docs/analysis.md).

Reads only a run's `modular/manifest.json` and `modular/metrics_epoch_*.json` (never a weight file),
runs the registered techniques per module group (registry.py; built in: Mann-Kendall plateau,
penalised change points, task metrics, MCDA, gradient-flow health), bounds each group by its own
overfitting point, and lets a confidence-weighted vote pick each group's epoch.
Entry point: `redheart.analysis.run.analyze(cfg)`.
"""
