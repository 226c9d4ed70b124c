"""Hydra plugin: the hierarchical 5-5-5-5 learning-rate sweeper (`hydra/sweeper=hierarchical_lr`).

Hydra only instantiates sweepers that live in the `hydra_plugins` namespace package, hence this
folder; the planning and scoring it uses are in `redheart.sweep`.
"""
