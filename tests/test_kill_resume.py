"""SIGKILL a real `train.py` process 12 times, resume it with ckpt_path=last, end on the uninterrupted run.

The seeded plan of tests/kill_harness.py: inside a modular safetensors write, a metrics file write,
the manifest write, the epoch_history.json write and the Lightning resume checkpoint write (temp file
written, not renamed), inside Lightning's relink of last.ckpt (the old one deleted, the new link not
made), once during start-up, at 4 random times in random epochs, and inside the final metrics.json
write. ~1.5 min on 2 cores; bench/kill_resume.py runs other seeds and records timings
(docs/reliability.md). The harness and its checks: tests/kill_harness.py.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from safetensors.torch import save_file

from redheart.io import sha256_file
from redheart.train import resume_checkpoint
from tests.kill_harness import KillResume, plan, verify_manifest


@pytest.mark.slow
def test_twelve_sigkills_resume_to_the_uninterrupted_run(tmp_path):
    harness = KillResume(tmp_path, seed=0)
    harness.run_killed(plan(seed=0, time_kills=4))
    harness.check_final()
    assert harness.problems == [], "\n".join(harness.problems)  # files, manifest, epochs lost, final weights

    kills = {k["moment"].split(" @")[0]: k for k in harness.kills}  # one per kind but `time`
    assert len(harness.kills) == 12
    assert all(k["epochs_lost"] <= 1 for k in harness.kills), harness.kills
    assert all(k["next_process_resumed_from"] in (None, k["resumes_from_epoch"]) for k in harness.kills)
    for pattern in ("*.safetensors", "metrics_epoch_*.json", "manifest.json", "epoch_history.json",
                    "resume-*.ckpt", "metrics.json"):
        assert kills[f"write {pattern}"]["temp_file_existed"] is True, kills[f"write {pattern}"]
    link = kills["link last.ckpt"]
    assert link["paused_in"] == "last.ckpt (link)"
    assert link["last_ckpt"] in ("dangling", "missing")  # last.ckpt alone would have restarted from epoch 0
    assert link["resumes_from_epoch"] == link["epochs_finished"] >= 3
    assert link["next_process_resumed_from"] in (None, link["epochs_finished"])  # not from scratch
    assert sum(k["paused_in"] is None and k["killed_at_s"] > 0 for k in harness.kills) == 5  # time + startup
    assert harness.attempts[-1].rc == 0


def test_a_missing_last_ckpt_resumes_from_the_newest_resume_checkpoint(tmp_path):
    """Killed between Lightning's delete of last.ckpt and its relink: not a restart from scratch."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    older, newer = (run / "checkpoints" / f"resume-epoch={n:03d}.ckpt" for n in (2, 3))
    for path in (older, newer):
        torch.save({"epoch": 0}, path)
    os.utime(older, (time.time() - 60, time.time() - 60))
    (run / "checkpoints" / ".resume-epoch=004.ckpt.x1y2.tmp").write_bytes(b"half")  # a killed write
    last = run / "checkpoints" / "last.ckpt"
    os.symlink("resume-epoch=001.ckpt", last)  # dangling: resume-epoch=001 was deleted, the relink not made
    assert resume_checkpoint("last", run) == str(last)
    assert os.readlink(last) == newer.name  # the relink finished, so Lightning deletes `newer` when it is old
    last.unlink()  # no link at all
    assert resume_checkpoint("last", run) == str(last) and os.readlink(last) == newer.name
    assert sorted(p.name for p in last.parent.iterdir()) == [".resume-epoch=004.ckpt.x1y2.tmp", "last.ckpt",
                                                             older.name, newer.name]
    for path in (last, older, newer):
        path.unlink()
    assert resume_checkpoint("last", run) is None  # nothing saved yet: starts again (a warning says so)


def test_a_last_ckpt_still_on_the_previous_checkpoint_moves_to_the_newer_whole_one(tmp_path):
    """Killed after resume-epoch=N was written but before Lightning removed N-1 and relinked: resuming from
    last.ckpt as it stands would redo epoch N; the relink is finished and the superseded N-1 removed."""
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    older, newer = (checkpoints / f"resume-epoch={n:03d}.ckpt" for n in (2, 3))
    for path in (older, newer):
        torch.save({"epoch": 0}, path)
    os.utime(older, (time.time() - 60, time.time() - 60))
    last = checkpoints / "last.ckpt"
    os.symlink(older.name, last)
    assert resume_checkpoint("last", tmp_path / "run") == str(last)
    assert os.readlink(last) == newer.name
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", newer.name]
    assert resume_checkpoint("last", tmp_path / "run") == str(last) and newer.exists()  # consistent: untouched


def test_the_manifest_check_finds_a_changed_a_missing_and_a_temp_file(tmp_path):
    """The harness's checks can fail: a file that no longer hashes to the manifest, one that is gone,
    and a temp name are each reported, while the epoch being redone is only required to exist."""
    modular = tmp_path / "modular"
    (modular / "epoch_001").mkdir(parents=True)
    (modular / "epoch_002").mkdir()
    entries = []
    for epoch in (1, 2):
        path = modular / f"epoch_{epoch:03d}" / "heads.safetensors"
        save_file({"raw/w": torch.ones(2) * epoch}, path)
        metrics = modular / f"metrics_epoch_{epoch:03d}.json"
        metrics.write_text(json.dumps({"epoch": epoch}))
        heads = {"path": str(path.relative_to(modular)), "sha256": sha256_file(path)}
        entries.append({"epoch": epoch, "metrics": metrics.name, "metrics_sha256": sha256_file(metrics),
                        "files": {"heads": heads}})
    manifest = modular / "manifest.json"
    manifest.write_text(json.dumps({"checkpoints": entries}))
    assert verify_manifest(manifest, 2) == []

    save_file({"raw/w": torch.zeros(2)}, modular / "epoch_002" / "heads.safetensors")  # rewritten (a redo)
    assert verify_manifest(manifest, 1) == []  # epoch 2 is past the resume point: existence is enough
    assert verify_manifest(manifest, 2) == ["epoch_002/heads.safetensors: sha256 differs from the manifest's "
                                            "(epoch 2)"]
    entries[0]["files"]["heads"]["path"] = "epoch_001/.heads.safetensors.abc.tmp"
    entries[1]["metrics"] = "metrics_epoch_009.json"
    manifest.write_text(json.dumps({"checkpoints": entries}))
    problems = verify_manifest(manifest, 1)
    assert problems == ["manifest lists a temp file epoch_001/.heads.safetensors.abc.tmp",
                        "manifest lists metrics_epoch_009.json, which does not exist"]


def test_the_file_sweep_finds_a_truncated_file_under_a_final_name(tmp_path):
    run = tmp_path / "run"
    (run / "modular" / "epoch_001").mkdir(parents=True)
    good = run / "modular" / "epoch_001" / "heads.safetensors"
    save_file({"raw/w": torch.ones(64)}, good)
    (run / "modular" / "epoch_001" / "backbone.safetensors").write_bytes(good.read_bytes()[:-40])
    (run / "epoch_history.json").write_text('{"epochs": [')
    (run / "modular" / ".manifest.json.k3j.tmp").write_text("{")  # a temp file: left over, not judged
    harness = KillResume(tmp_path)
    assert harness.check_files(run, 0, "now") == ["modular/.manifest.json.k3j.tmp"]
    assert len(harness.problems) == 2
    assert harness.problems[0].startswith("now: epoch_history.json does not load: JSONDecodeError")
    assert harness.problems[1].startswith("now: modular/epoch_001/backbone.safetensors does not load")
