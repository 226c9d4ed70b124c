"""Lightning callbacks of the redheart training run (modular checkpoints, monitors, ...).

A top-level package (the design card's `callbacks/`), installed with the project so configs can
name `callbacks.<module>.<Class>` as a Hydra `_target_`.
"""
