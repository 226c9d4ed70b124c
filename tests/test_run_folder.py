"""The run-folder contract lives in one module: its format tag is written once in the code, and its one
manifest reader names the file and the field of a problem, raising the caller's error class."""

from __future__ import annotations

import json

import pytest

from redheart.analysis.errors import AnalysisError
from redheart.analysis.synthetic import GROUPS, Plan, write_run
from redheart.crossover.errors import CrossoverError
from redheart.run_folder import FORMAT, MANIFEST, MODULAR_DIR, read_manifest
from tests.conftest import REPO_ROOT

CODE = ("src", "callbacks", "hydra_plugins", "bench", "scripts", "train.py", "analyze.py", "combine.py")


def test_the_format_tag_is_declared_once_in_the_code():
    files = [p for top in CODE for p in ([REPO_ROOT / top] if top.endswith(".py") else (REPO_ROOT / top).rglob("*.py"))]
    holders = [str(p.relative_to(REPO_ROOT)) for p in files if f'"{FORMAT}"' in p.read_text(encoding="utf-8")]
    assert holders == ["src/redheart/run_folder.py"]


@pytest.mark.parametrize("error", [AnalysisError, CrossoverError])
def test_the_manifest_reader_names_file_and_field_in_the_callers_error(tmp_path, error):
    run = write_run(tmp_path / "run", Plan(epochs=[2, 4, 6]))
    manifest = read_manifest(run / MODULAR_DIR, error)
    assert manifest.groups == GROUPS and manifest.epochs == [2, 4, 6] and manifest.every_n_epochs == 2
    path = run / MODULAR_DIR / MANIFEST
    data = json.loads(path.read_text())
    del data["checkpoints"][1]["files"]["phase"]
    path.write_text(json.dumps(data))
    with pytest.raises(error, match=r"manifest.json: field 'checkpoints\[1\].files' must hold one file per group; "
                                    r"missing \['phase'\]"):
        read_manifest(run / MODULAR_DIR, error)
