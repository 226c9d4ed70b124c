"""Allowlist of what a config read from disk may instantiate.

Why: `hydra.utils.instantiate` calls whatever `_target_` names, so a run folder's `run.json`, a
checkpoint's hyperparameters or a bundle's config.json could otherwise run any Python callable
(`os.system`, `builtins.exec`, ...). Every `_target_` anywhere in such a config, nested ones included,
is checked here BEFORE anything is instantiated; one outside the allowlist refuses the whole config.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

NET = "redheart.model.net.RedHeartNet"
DATAMODULE = "redheart.data.datamodule.RedHeartDataModule"
LIT_MODULE = "redheart.training.lit_module.RedHeartLitModule"
# The project's own model and datamodule classes: the only things a stored config may build.
ALLOWED_TARGETS = frozenset({NET, DATAMODULE, LIT_MODULE})
# A checkpoint's hyperparameters also name its optimizer and scheduler factories (torch's own, never a module
# that could reach the shell): they are checked against torch.optim's namespace, class names only.
OPTIMIZER_PREFIXES = ("torch.optim.",)


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
                  prefixes: tuple[str, ...] = ()) -> None:
    """Raise `error` naming the first `_target_` in `config` that is not allowed; instantiate nothing."""
    if hasattr(config, "_metadata"):  # a DictConfig/ListConfig: walk its plain, unresolved form
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(config, resolve=False)
    for path, target in targets(config):
        ok = isinstance(target, str) and (target in allowed or (
            target.startswith(prefixes) and prefixes and _is_plain_name(target)))
        if not ok:
            raise error(f"{source}: {path} = {target!r} is not one of the project's own classes "
                        f"({', '.join(sorted(allowed))}); refusing to instantiate it, as a stored config must "
                        "never run other code")


def _is_plain_name(target: str) -> bool:
    return all(part.isidentifier() and not part.startswith("_") for part in target.split("."))
