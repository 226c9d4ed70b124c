"""Module groups: named sets of state-dict prefixes (config `module_groups`), shared by the callbacks.

A parameter `p` belongs to group g when `p == prefix` or `p.startswith(prefix + ".")` for one of g's
prefixes. Every parameter must belong to exactly one group: a checkpoint that silently leaves weights
out is a non-strict load in another form: the model would run with weights nobody chose.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from redheart.run_folder import group_of


def target_module(pl_module: nn.Module) -> nn.Module:
    """The network whose parameter names the groups use: `pl_module.net` when there is one."""
    return getattr(pl_module, "net", pl_module)


class ModuleGroups:
    """Named sets of parameter-name prefixes; checks that no prefix is in two groups.

    Args:
        groups: group -> non-empty list of prefixes.
    """

    def __init__(self, groups: Mapping[str, Sequence[str]]):
        if not groups:
            raise ValueError("module_groups is empty: name at least one group and its prefixes")
        seen: dict[str, str] = {}
        for name, prefixes in groups.items():
            if isinstance(prefixes, str) or not prefixes:
                raise ValueError(f"module_groups.{name} must be a non-empty list of prefixes, got {prefixes!r}")
            for prefix in prefixes:
                if prefix in seen:
                    raise ValueError(f"prefix {prefix!r} is in both module_groups.{seen[prefix]} and .{name}")
                seen[prefix] = name
        self.groups = {name: tuple(prefixes) for name, prefixes in groups.items()}

    def group_of(self, name: str) -> str | None:
        """The group that claims parameter `name`, or None."""
        return group_of(name, self.groups)

    def partition(self, named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
        """{group: {name: tensor}} in group order; raises naming every tensor no group claims."""
        out: dict[str, dict[str, torch.Tensor]] = {g: {} for g in self.groups}
        orphans = []
        for name, tensor in named:
            group = self.group_of(name)
            if group is None:
                orphans.append(name)
            else:
                out[group][name] = tensor
        if orphans:
            shown = ", ".join(orphans[:5]) + (f" and {len(orphans) - 5} more" if len(orphans) > 5 else "")
            raise ValueError(f"{len(orphans)} parameters belong to no module group: {shown}; "
                             f"extend module_groups (groups: {list(self.groups)})")
        empty = [g for g, members in out.items() if not members]
        if empty:
            raise ValueError(f"module groups {empty} match no parameter; check their prefixes")
        return out
