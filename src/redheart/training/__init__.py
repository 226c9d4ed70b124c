"""Training: the LightningModule (lit_module.py), its losses, metrics and parameter groups."""
