"""One error base: every exception the entry points turn into exit code 2 is a `RedHeartError`.

The entry points are read as source (ast), so a new `except SomeError: ... SystemExit(2)` added to one of
them fails here unless SomeError is a RedHeartError; every error class the package defines is checked too.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil

import pytest

import callbacks
import redheart
from redheart.errors import RedHeartError
from tests.conftest import REPO_ROOT

ENTRY_POINTS = ("train.py", "analyze.py", "combine.py", "src/redheart/demo.py", "src/redheart/train.py")


def _exits_2(handler: ast.ExceptHandler) -> bool:
    for node in ast.walk(handler):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "SystemExit":
            return any(isinstance(a, ast.Constant) and a.value == 2 for a in node.args)
    return False


def _caught(handler: ast.ExceptHandler) -> list[str]:
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return [t.id if isinstance(t, ast.Name) else ast.unparse(t) for t in types if t is not None]


def _resolve(name: str, tree: ast.Module) -> type:
    """The class a name in an entry point refers to, through its `from X import name` lines."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return getattr(importlib.import_module(node.module), alias.name)
    raise AssertionError(f"{name} is not imported by name")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_exception_an_entry_point_maps_to_exit_2_is_a_redheart_error(entry):
    tree = ast.parse((REPO_ROOT / entry).read_text(encoding="utf-8"))
    handlers = [h for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and _exits_2(h)]
    for handler in handlers:
        for name in _caught(handler):
            assert issubclass(_resolve(name, tree), RedHeartError), f"{entry}: catches {name} for exit code 2"
    if entry in ("train.py", "analyze.py", "combine.py"):
        assert [_caught(h) for h in handlers] == [["RedHeartError"]]


def _error_classes() -> list[type]:
    found = set()
    for package in (redheart, callbacks):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            found |= {c for _, c in inspect.getmembers(module, inspect.isclass)
                      if issubclass(c, Exception) and c.__module__ == module.__name__}
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__name__}")


def test_every_error_class_of_the_project_is_a_redheart_error():
    classes = _error_classes()
    assert len(classes) >= 12
    assert [f"{c.__module__}.{c.__name__}" for c in classes if not issubclass(c, RedHeartError)] == []
