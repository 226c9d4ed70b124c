"""`make test` is what CI runs: it must fail when pytest ran no test at all."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_fails_when_no_test_is_collected():
    # -o: the venv counts as installed (this interpreter runs the tests); a filter no test matches
    result = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "test", f"PY={sys.executable}",
         "PYTEST_ARGS=-q -p no:cacheprovider tests/test_makefile.py -k no_test_has_this_name"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0, result.stdout[-2000:]
    assert "deselected" in result.stdout  # pytest did run, and selected nothing
