"""Wrong override types and ranges end in one line and exit code 2, before a run builds anything."""

from __future__ import annotations

import subprocess
import sys

import pytest

from redheart.config_check import ConfigError, check_config
from tests.conftest import REPO_ROOT


def test_the_default_and_sweep_configs_pass(compose_cfg):
    check_config(compose_cfg())
    check_config(compose_cfg("callbacks=sweep", "model=tiny", "debug=quick"))
    check_config(compose_cfg("~model", "callbacks=none", "trainer.max_epochs=-1"))


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lr=abc", "optim.lr='abc': expected a number > 0"),
    ("optim.lr=-1e-4", "optim.lr=-0.0001"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0: expected an integer >= 1"),
    ("trainer.max_epochs=2.5", "trainer.max_epochs=2.5"),
    ("data.batch_size=true", "data.batch_size=True"),
    ("data.dedup_threshold=1.5", "data.dedup_threshold=1.5: expected a number > 0 and <= 1"),
    ("data.split.val=0.9", "data.split.val + data.split.test = 1"),
    ("callbacks.ema.decay=1", "callbacks.ema.decay=1"),
])
def test_a_wrong_value_names_the_key_the_value_and_what_is_expected(compose_cfg, override, message):
    with pytest.raises(ConfigError) as err:
        check_config(compose_cfg(override))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_train_py_stops_a_wrong_type_with_one_line_exit_2_and_no_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "train.py", "optim.lr=abc", f"hydra.run.dir={run_dir}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, lines
    assert len(lines) == 1 and "ConfigError: optim.lr='abc': expected a number > 0" in lines[0]
    assert not run_dir.exists()
