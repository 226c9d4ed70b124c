"""Strict assembly of one model from per-group checkpoint files, one group at a time, with provenance.

A recipe maps every module group to the epochs whose weights it takes: one epoch is an exact copy of
that checkpoint's tensors (the crossover), several are their uniform average (soups, plateau average).
Before any tensor is read, `plan_assembly` reads only the files' headers and checks that every
parameter and buffer of the model is provided exactly once, by the file of the group that owns it, with
the model's shape: missing, extra, duplicated, misplaced and mis-shaped tensors are all listed in one
error. Loading then never needs a non-strict load_state_dict.

Memory: tensors are read lazily (safetensors, one tensor at a time) and one group is in flight at a
time; `write_assembly` holds the assembled weights once, in their stored dtype (bench/crossover_memory.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from redheart.crossover.checkpoints import GroupFile, RunCheckpoints
from redheart.crossover.errors import CrossoverError
from redheart.io import atomic_write_json, atomic_write_with, sha256_file
from redheart.run_folder import group_of

FORMAT = "redheart-crossover-v1"
Recipe = Mapping[str, Sequence[int]]  # group -> epochs (one: exact copy; several: uniform average)


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype


def expected_tensors(net: nn.Module) -> dict[str, TensorSpec]:
    """Every parameter and persistent buffer of the model (its state dict); works on the meta device."""
    return {name: TensorSpec(tuple(t.shape), t.dtype) for name, t in net.state_dict().items()}


@dataclass
class AssemblyPlan:
    """Validated sources of every model tensor: name -> (group, epochs, file entries)."""

    weights: str
    recipe: dict[str, tuple[int, ...]]
    groups: dict[str, list[str]]  # group -> tensor names, in file order
    expected: dict[str, TensorSpec]
    files: dict[tuple[int, str], GroupFile] = field(default_factory=dict)

    def key(self, name: str) -> str:
        return f"{self.weights}/{name}"


def plan_assembly(checkpoints: RunCheckpoints, recipe: Recipe, weights: str,
                  expected: Mapping[str, TensorSpec]) -> AssemblyPlan:
    """Check coverage, placement, shapes and dtypes from the files' headers; raise listing every problem."""
    if weights not in ("raw", "ema"):
        raise CrossoverError(f"weights must be 'raw' or 'ema', got {weights!r}")
    recipe = {g: tuple(int(e) for e in epochs) for g, epochs in recipe.items()}
    missing_groups = [g for g in checkpoints.groups if not recipe.get(g)]
    unknown_groups = [g for g in recipe if g not in checkpoints.groups]
    if missing_groups or unknown_groups:
        raise CrossoverError(f"the recipe must give every module group of {checkpoints.manifest_path} at least one "
                             f"epoch: missing {missing_groups}, not a group {unknown_groups}")
    prefix = f"{weights}/"
    problems: dict[str, list[str]] = {"missing": [], "extra": [], "misplaced": [], "duplicated": [],
                                      "mis-shaped": [], "inconsistent": []}
    plan = AssemblyPlan(weights, recipe, {}, dict(expected))
    provided: dict[str, str] = {}  # name -> file that provides it
    for group, epochs in recipe.items():
        names_per_epoch = []
        for epoch in epochs:
            entry = checkpoints.file(epoch, group)
            plan.files[(epoch, group)] = entry
            if weights == "ema" and not checkpoints.ema[epoch]:
                raise CrossoverError(f"{entry.path}: weights=ema, but epoch {epoch} was saved without EMA weights")
            if weights == "raw" and not checkpoints.raw[epoch]:
                raise CrossoverError(f"{entry.path}: weights=raw, but epoch {epoch} was saved with the evaluated (EMA) "
                                     "weights only (callbacks.modular_checkpoint.weights=both keeps both)")
            with checkpoints.open(epoch, group) as f:
                names = []
                for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                    if not key.startswith(prefix):
                        if not key.startswith(("raw/", "ema/")):
                            problems["extra"].append(f"{entry.relpath}:{key} (neither raw/ nor ema/)")
                        continue
                    name = key[len(prefix):]
                    names.append(name)
                    spec = expected.get(name)
                    where = f"{entry.relpath}:{key}"
                    if spec is None:
                        problems["extra"].append(f"{where} (no such tensor in the model)")
                        continue
                    claimed = group_of(name, checkpoints.groups)
                    if claimed != group:
                        problems["misplaced"].append(f"{where} (belongs to group {claimed!r})")
                    view = f.get_slice(key)
                    shape = tuple(view.get_shape())
                    if shape != spec.shape:
                        problems["mis-shaped"].append(f"{where}: file {list(shape)}, model {list(spec.shape)}")
                    if not _dtype_fits(view.get_dtype(), spec.dtype):
                        problems["mis-shaped"].append(f"{where}: dtype {view.get_dtype()}, model {spec.dtype}")
                    if epoch == epochs[0]:
                        if name in provided and provided[name] != entry.relpath:
                            problems["duplicated"].append(f"{name}: in {provided[name]} and {entry.relpath}")
                        provided[name] = entry.relpath
            names_per_epoch.append(names)
        first = set(names_per_epoch[0])
        for epoch, names in zip(epochs[1:], names_per_epoch[1:], strict=True):
            if set(names) != first:
                problems["inconsistent"].append(f"group {group!r}: epoch {epoch} holds other tensors than "
                                                f"epoch {epochs[0]} ({sorted(set(names) ^ first)})")
        plan.groups[group] = [n for n in names_per_epoch[0] if n in expected]
    problems["missing"] = [f"{name} (group {group_of(name, checkpoints.groups)!r})"
                           for name in expected if name not in provided]
    found = {kind: items for kind, items in problems.items() if items}
    if found:
        lines = [f"crossover assembly refused: the {weights} weights of {checkpoints.modular} do not cover the "
                 f"model's {len(expected)} tensors exactly once:"]
        for kind, items in found.items():
            lines.append(f"  {kind} ({len(items)}):")
            lines.extend(f"    {item}" for item in items)
        raise CrossoverError("\n".join(lines))
    return plan


_FLOAT_CODES = {"F64", "F32", "F16", "BF16"}
_CODES = {torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}


def _dtype_fits(code: str, dtype: torch.dtype) -> bool:
    """Floating tensors may change precision (bf16 storage of an fp32 model); integer and bool ones may not."""
    if dtype.is_floating_point:
        return code in _FLOAT_CODES
    return _CODES.get(dtype) == code


FINITE_CHUNK = 1 << 16  # elements per isfinite call: a few hundred KB of temporaries, whatever the tensor size


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN/inf, checked a chunk at a time: `isfinite` of a whole tensor allocates several temporaries of its
    size, and freeing them between the assembly's large reads fragments the heap (measured: the full preset's
    assembly peak rose from 1.22x to 1.32x the weights, bench/crossover_memory.py)."""
    return all(bool(torch.isfinite(chunk).all()) for chunk in tensor.reshape(-1).split(FINITE_CHUNK))


def finite_tensor(tensor: torch.Tensor, plan: AssemblyPlan, epoch: int, group: str, name: str) -> torch.Tensor:
    """The tensor, unless it holds NaN or inf: weights saved after a non-finite loss are never combined."""
    if tensor.dtype.is_floating_point and not all_finite(tensor):
        bad = sum(int((~torch.isfinite(chunk)).sum()) for chunk in tensor.reshape(-1).split(FINITE_CHUNK))
        raise CrossoverError(f"{plan.files[(epoch, group)].path}: tensor {plan.key(name)!r} (group {group!r}, epoch "
                             f"{epoch}) holds {bad} non-finite value(s) of {tensor.numel()}: the training had "
                             "diverged (NaN/inf loss) by this checkpoint; take an earlier epoch for this group")
    return tensor


def read_group(checkpoints: RunCheckpoints, plan: AssemblyPlan, group: str) -> dict[str, torch.Tensor]:
    """One group's tensors: as stored for a single epoch (bit-exact), the float32 mean for several.

    A tensor holding NaN or inf is refused (CrossoverError naming the file, group and tensor).
    """
    epochs = plan.recipe[group]
    if len(epochs) == 1:
        with checkpoints.open(epochs[0], group) as f:
            return {name: finite_tensor(f.get_tensor(plan.key(name)), plan, epochs[0], group, name)
                    for name in plan.groups[group]}
    total: dict[str, torch.Tensor] = {}
    for epoch in epochs:
        with checkpoints.open(epoch, group) as f:
            for name in plan.groups[group]:
                tensor = finite_tensor(f.get_tensor(plan.key(name)), plan, epoch, group, name)
                if not tensor.dtype.is_floating_point:  # integer buffers (counters) are not averaged
                    total[name] = tensor
                elif name in total:
                    total[name] += tensor.float()
                else:
                    total[name] = tensor.float()
    for tensor in total.values():
        if tensor.dtype.is_floating_point:
            tensor /= len(epochs)
    return total


@torch.no_grad()
def load_into(net: nn.Module, checkpoints: RunCheckpoints, plan: AssemblyPlan) -> None:
    """Copy the plan's tensors into the model, group by group (every tensor is written: the plan is checked)."""
    state = net.state_dict(keep_vars=True)
    if set(state) != set(plan.expected):
        raise CrossoverError("the model to load into is not the model the plan was checked against")
    written = 0
    for group in plan.recipe:  # one group in memory at a time, each tensor freed once copied
        tensors = read_group(checkpoints, plan, group)
        for name in list(tensors):
            state[name].copy_(tensors.pop(name))
            written += 1
    if written != len(state):  # cannot happen after plan_assembly; a guard, not a silent partial load
        raise CrossoverError(f"loaded {written} tensors into a model of {len(state)}")


def provenance(checkpoints: RunCheckpoints, plan: AssemblyPlan) -> dict[str, Any]:
    """Every tensor -> group, epoch(s), source file and its sha256 (verified before use)."""
    tensors = {}
    for group, names in plan.groups.items():
        epochs = plan.recipe[group]
        sources = [plan.files[(e, group)] for e in epochs]
        for name in names:
            tensors[name] = {"group": group, "epoch": epochs[0] if len(epochs) == 1 else list(epochs),
                             "source": sources[0].relpath if len(sources) == 1 else [s.relpath for s in sources],
                             "sha256": sources[0].sha256 if len(sources) == 1 else [s.sha256 for s in sources],
                             "key": plan.key(name)}
    files = {entry.relpath: {"epoch": e, "group": g, "sha256": entry.sha256, "bytes": entry.bytes}
             for (e, g), entry in sorted(plan.files.items())}
    return {"format": FORMAT, "run_dir": str(checkpoints.run_dir), "weights": plan.weights,
            "recipe": {g: list(e) for g, e in plan.recipe.items()}, "tensor_count": len(tensors),
            "files": files, "tensors": tensors}


def _assembled(checkpoints: RunCheckpoints, plan: AssemblyPlan) -> dict[str, torch.Tensor]:
    """Every group's tensors, read one group at a time, in their stored dtype."""
    state: dict[str, torch.Tensor] = {}
    for group in plan.recipe:
        state.update({name: t.contiguous() for name, t in read_group(checkpoints, plan, group).items()})
    return state


def write_assembly(checkpoints: RunCheckpoints, plan: AssemblyPlan, out_path: Path,
                   provenance_path: Path | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The assembled weights as one safetensors file (plain state-dict names) and provenance.json beside it."""
    out_path = Path(out_path)
    meta = {"format": FORMAT, "weights": plan.weights, "run_dir": str(checkpoints.run_dir),
            "recipe": ",".join(f"{g}={'+'.join(map(str, e))}" for g, e in plan.recipe.items())}
    atomic_write_with(out_path, lambda tmp: save_file(_assembled(checkpoints, plan), tmp, meta))
    record = provenance(checkpoints, plan) | dict(extra or {})
    record["output"] = {"path": out_path.name, "sha256": sha256_file(out_path), "bytes": out_path.stat().st_size}
    atomic_write_json(provenance_path or out_path.with_name("provenance.json"), record)
    return record
