"""Allowlist of what a config read from disk may instantiate.

Why: `hydra.utils.instantiate` calls whatever `_target_` names, so a run folder's `run.json`, a
checkpoint's hyperparameters or a bundle's config.json could otherwise run any Python callable
(`os.system`, `builtins.exec`, ...). Every `_target_` anywhere in such a config, nested ones included,
is checked here BEFORE anything is instantiated; one outside the allowlist refuses the whole config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

NET = "redheart.model.net.RedHeartNet"
DATAMODULE = "redheart.data.datamodule.RedHeartDataModule"
LIT_MODULE = "redheart.training.lit_module.RedHeartLitModule"
# The project's own model and datamodule classes: the only things a stored config may build.
ALLOWED_TARGETS = frozenset({NET, DATAMODULE, LIT_MODULE})
OPTIMIZER_MODULES = ("torch.optim", "torch.optim.lr_scheduler")
# The project's own LR schedules (a function returning a torch LambdaLR), besides torch's classes.
SCHEDULES = frozenset({"redheart.training.schedules.one_cycle"})


def is_torch_optimizer(target: str) -> bool:
    """A checkpoint's hyperparameters also name its optimizer and scheduler: only torch's own optimizer and
    LR-scheduler classes, looked up as attributes of those two modules (importing them runs no stored code)."""
    import importlib

    import torch

    module, _, name = target.rpartition(".")
    if module not in OPTIMIZER_MODULES or not name.isidentifier() or name.startswith("_"):
        return False
    found = getattr(importlib.import_module(module), name, None)
    return isinstance(found, type) and issubclass(found, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler))


def targets(config: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every (`path`, `_target_` value) in a nested dict/list config, depth first."""
    if isinstance(config, Mapping):
        for key, value in config.items():
            path = f"{where}.{key}" if where else str(key)
            if key == "_target_":
                yield path, value
            else:
                yield from targets(value, path)
    elif isinstance(config, Sequence) and not isinstance(config, str | bytes):
        for i, value in enumerate(config):
            yield from targets(value, f"{where}[{i}]")


def check_targets(config: Any, source: str, error: type[Exception], allowed: frozenset[str] = ALLOWED_TARGETS,
                  also: Callable[[str], bool] | None = None) -> None:
    """Raise `error` naming the first `_target_` in `config` that is not allowed; instantiate nothing."""
    if hasattr(config, "_metadata"):  # a DictConfig/ListConfig: walk its plain, unresolved form
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(config, resolve=False)
    for path, target in targets(config):
        ok = isinstance(target, str) and (target in allowed or (also is not None and also(target)))
        if not ok:
            raise error(f"{source}: {path} = {target!r} is not one of the project's own classes "
                        f"({', '.join(sorted(allowed))}); refusing to instantiate it, as a stored config must "
                        "never run other code")
