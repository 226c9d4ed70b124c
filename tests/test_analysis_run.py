"""analyze(cfg) on synthetic run folders (planted plateau, trend, overfitting) composed from the real
config; the run files' validation; the contract with the crossover; the analyze.py shim; calibration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from redheart.analysis.errors import AnalysisError
from redheart.analysis.run import analyze
from redheart.analysis.run_metrics import load_run
from redheart.analysis.synthetic import GROUPS, Plan, write_run
from redheart.run_folder import resolve_run_dir
from tests.conftest import REPO_ROOT

TECHNIQUES = ("mann_kendall", "cusum", "task", "mcda", "gradient", "vote")


def compose_analyze(*overrides: str):
    os.environ["REDHEART_ROOT"] = str(REPO_ROOT)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=["combine=false", *overrides])  # synthetic runs hold no weights
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A 30-checkpoint synthetic run (full-preset manifest, no weight files) and its analysis."""
    run = write_run(tmp_path_factory.mktemp("planted") / "run", Plan(spike={"heads": 20}))
    result = analyze(compose_analyze(f"ckpt_dir={run}", "plots=false"))
    return run, result


def test_every_technique_finds_the_planted_sweet_spot(planted):
    _, result = planted
    assert result["overfitting_epoch"] in (38, 40, 42)  # planted: the gap rises after epoch 40
    for group, entry in result["groups"].items():
        for technique in TECHNIQUES:
            found = entry["techniques"][technique]["epoch"]
            if technique == "task" and not entry["task_metrics"]:  # the backbone has no task metric of its own
                assert found is None, group
                continue
            assert found is not None and abs(found - 32) <= 2, (group, technique, found)
        first, last = entry["plateau"]
        # a plateau starts once no window still falls significantly: up to a window after the fall ends
        assert 22 <= first <= 28 and abs(last - 40) <= 2, (group, entry["plateau"])


PLANTED = {"backbone": (8, 16), "heads": (24, 36), "advanced_bentham": (44, 56)}  # sweet spots 12, 30, 50


@pytest.fixture(scope="module")
def planted_per_group(tmp_path_factory):
    """Groups with their own sweet spots; the train-val gap never rises (no run-level overfitting point)."""
    run = write_run(tmp_path_factory.mktemp("per_group") / "run", Plan(groups=PLANTED, overfit=None))
    return run, analyze(compose_analyze(f"ckpt_dir={run}", "plots=false"))


def test_groups_with_different_sweet_spots_get_their_own_epochs(planted_per_group):
    _, result = planted_per_group
    for group, (first, last) in PLANTED.items():
        entry = result["groups"][group]
        assert abs(entry["recommended_epoch"] - (first + last) / 2) <= 2, (group, entry["recommended_epoch"])
        own = entry["own_overfitting_epoch"]  # the rise after the group's own plateau, nobody else's
        assert own is not None and first < own <= last + 4 and entry["bound"] == own, (group, own)
    for group in set(GROUPS) - set(PLANTED):  # the rest keep the shared default plateau 24-40
        assert abs(result["groups"][group]["recommended_epoch"] - 32) <= 2, group
    recipe = result["recommended"]
    assert len(set(recipe.values())) >= 3  # so the assembled crossover is no single checkpoint of the run
    assert all(any(e != epoch for e in recipe.values()) for epoch in result["epochs"])


def test_the_vote_counts_each_signal_once():
    """The curve (Mann-Kendall + change points), the task metrics and gradient health weigh 1 each; MCDA,
    which mixes them, votes nothing: moving its epoch cannot move the vote."""
    from redheart.analysis.common import TechniqueResult
    from redheart.analysis.settings import parse_settings
    from redheart.analysis.vote import vote

    weights = parse_settings(compose_analyze("ckpt_dir=x").analysis).vote_weights
    signals = {"curve": ("mann_kendall", "cusum"), "task": ("task",), "gradient": ("gradient",), "mixed": ("mcda",)}
    assert {s: sum(weights[t] for t in ts) for s, ts in signals.items()} == {"curve": 1, "task": 1, "gradient": 1,
                                                                           "mixed": 0}
    epochs = list(range(2, 62, 2))
    base = {"mann_kendall": TechniqueResult(30, 0.9), "cusum": TechniqueResult(30, 0.9),
            "task": TechniqueResult(40, 0.9), "gradient": TechniqueResult(20, 0.9)}
    eligible = [True] * len(epochs)
    picks = {vote({**base, "mcda": TechniqueResult(e, 1.0)}, weights, epochs, eligible, 8, 2).epoch
             for e in (2, 40, 60)}
    assert picks == {30}


def test_the_module_metrics_contract(planted):
    run, result = planted
    on_disk = json.loads((run / "analysis_results" / "module_metrics.json").read_text())
    assert on_disk["run_dir"] == str(run.resolve()) and on_disk["epochs"] == list(range(2, 62, 2))
    assert set(on_disk["recommended"]) == set(GROUPS) == set(on_disk["groups"])
    for group, entry in on_disk["groups"].items():
        epoch = entry["recommended_epoch"]
        assert on_disk["recommended"][group] == epoch and epoch in on_disk["epochs"]
        assert epoch not in entry["excluded_epochs"] and 0.0 <= entry["confidence"] <= 1.0
        first, last = entry["plateau"]
        assert first <= last and first in on_disk["epochs"] and last in on_disk["epochs"]
        assert entry["metric"]["mode"] in ("min", "max") and entry["metric"]["name"] in entry["series"]
        assert set(TECHNIQUES) <= set(entry["techniques"])
        for technique in entry["techniques"].values():
            assert set(technique) == {"epoch", "confidence", "evidence"}
        assert all(isinstance(e, int) for e in entry["candidates"]) and epoch in entry["candidates"]
        own = on_disk["group_overfitting_epochs"][group]
        assert entry["bound"] == own == entry["own_overfitting_epoch"]  # no coupling: each group's own point
        assert own is None or epoch <= own
        assert len(entry["series"][entry["metric"]["name"]]) == 30
    assert on_disk["groups"]["heads"]["techniques"]["gradient"]["evidence"]["failed_checks"] == {"20": ["spike"]}
    report = (run / "analysis_results" / "analysis_report.md").read_text()
    for group in GROUPS:  # the design's report format
        assert f"[Module: {group}]" in report
    assert report.count("- Recommended epoch:") == 9 and report.count("- Confidence:") == 9
    assert "Flat stretch (" in report and "Gradient stability:" in report and "Task:" in report


def test_non_finite_epochs_are_never_recommended(tmp_path):
    nan = {32: "val_loss", 30: "val/loss/module/analyzers.advanced_surd", 34: "groups/heads/grad_norm_mean"}
    run = write_run(tmp_path / "run", Plan(nan=nan))
    result = analyze(compose_analyze(f"ckpt_dir={run}", "plots=false"))
    for group, entry in result["groups"].items():
        assert 32 in entry["excluded_epochs"]  # a run-level loss: every group
        assert (30 in entry["excluded_epochs"]) == (group == "advanced_surd")
        assert (34 in entry["excluded_epochs"]) == (group == "heads")
        assert entry["recommended_epoch"] not in entry["excluded_epochs"]
        assert abs(entry["recommended_epoch"] - 32) <= 4
        for technique in entry["techniques"].values():
            assert technique["epoch"] not in entry["excluded_epochs"]
    assert result["groups"]["heads"]["excluded_reasons"]["34"] == ["groups/heads/grad_norm_mean"]


def test_analysis_opens_no_weight_file(tmp_path):
    """The manifest lists 9 weight files per epoch (full-preset sizes); some exist as junk, none is read."""
    opened: list[str] = []
    recording = [False]

    def hook(event, args):
        if recording[0] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(hook)  # audit hooks cannot be removed: this one records only while `recording`
    junk = write_run(tmp_path / "junk", junk_weights=True)
    missing = write_run(tmp_path / "missing")
    assert any((junk / "modular" / "epoch_002").glob("*.safetensors"))
    assert not (missing / "modular" / "epoch_002").exists()
    recording[0] = True
    try:
        for run in (junk, missing):
            analyze(compose_analyze(f"ckpt_dir={run}", "plots=false"))
    finally:
        recording[0] = False
    assert any(p.endswith("manifest.json") for p in opened)
    assert not [p for p in opened if p.endswith(".safetensors")]


def test_run_folder_or_modular_folder_resolve_alike(planted, tmp_path):
    run, _ = planted
    assert resolve_run_dir(run) == resolve_run_dir(run / "modular") == (run.resolve(), run.resolve() / "modular")
    with pytest.raises(AnalysisError, match="no such folder"):
        resolve_run_dir(tmp_path / "nope", AnalysisError)
    with pytest.raises(AnalysisError, match="neither .*manifest.json"):
        resolve_run_dir(tmp_path, AnalysisError)


def _edit(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("target", "edit", "message"), [
    ("manifest.json", lambda m: m.update(format="other"), r"manifest.json: field 'format' is 'other'"),
    ("manifest.json", lambda m: m["checkpoints"][1].update(epoch=2),
     r"checkpoints\[1\].epoch': epoch 2 is listed twice"),
    ("manifest.json", lambda m: m["checkpoints"][0].update(metrics="gone.json"), r"lists metrics file gone.json"),
    ("metrics_epoch_004.json", lambda r: r["val"].update({"emotion/f1": "high"}),
     r"metrics_epoch_004.json: field 'val.emotion/f1': expected a number or null, got str"),
    ("metrics_epoch_004.json", lambda r: r["groups"].pop("phase"),
     r"metrics_epoch_004.json: field 'groups.phase' is missing"),
    ("metrics_epoch_004.json", lambda r: r.pop("train_loss"), r"metrics_epoch_004.json: field 'train_loss' is missing"),
    ("metrics_epoch_004.json", lambda r: r.update(epoch=5), r"metrics_epoch_004.json: field 'epoch' is 5"),
    ("metrics_epoch_004.json", lambda r: r.update(val_confusion=[[1, 2]]), r"'val_confusion' must be a square matrix"),
])
def test_bad_run_files_name_the_file_and_field(tmp_path, target, edit, message):
    run = write_run(tmp_path / "run", Plan(epochs=list(range(2, 22, 2))))
    _edit(run / "modular" / target, edit)
    with pytest.raises(AnalysisError, match=message):
        load_run(run, verify_sha256=False)


def test_an_edited_metrics_file_fails_the_sha256_check(tmp_path):
    run = write_run(tmp_path / "run", Plan(epochs=list(range(2, 22, 2))))
    _edit(run / "modular" / "metrics_epoch_006.json", lambda r: r.update(val_loss=0.1))
    with pytest.raises(AnalysisError, match="metrics_epoch_006.json: its sha256 differs"):
        load_run(run)
    assert load_run(run, verify_sha256=False).values["val_loss"][2] == 0.1


def test_config_errors_name_the_key(tmp_path):
    run = write_run(tmp_path / "run", Plan(epochs=list(range(2, 22, 2))))
    with pytest.raises(AnalysisError, match=r"groups.heads.metric.mode: expected 'min' or 'max'"):
        analyze(compose_analyze(f"ckpt_dir={run}", "analysis.groups.heads.metric.mode=lowest"))
    with pytest.raises(AnalysisError, match=r"groups.heads.metric.name 'val/nothing' matches no metric"):
        analyze(compose_analyze(f"ckpt_dir={run}", "analysis.groups.heads.metric.name=val/nothing", "plots=false"))
    with pytest.raises(AnalysisError, match=r"\['phase'\] are in neither conf/analysis couplings nor independent"):
        analyze(compose_analyze(f"ckpt_dir={run}", "analysis.independent=[backbone,heads]",
                                "+analysis.couplings.rest=[neural_analyzers,dsp_kalman,advanced_emotion,"
                                "advanced_regret,advanced_bentham,advanced_surd]", "plots=false"))


def test_thresholds_file_replaces_the_configured_ones(planted, tmp_path):
    run, before = planted
    file = tmp_path / "t.json"
    thresholds = {"plateau_variance": 0.001, "improvement_rate": 0.002, "stability_window": 7,
                  "mcda_weights": {"loss": 0.1, "task": 0.7, "stability": 0.1, "gradient": 0.1},
                  "voting_confidence": 0.5}
    file.write_text(json.dumps(thresholds))
    result = analyze(compose_analyze(f"ckpt_dir={run}", f"thresholds={file}", f"output={tmp_path / 'out'}",
                                     "plots=false"))
    assert result["thresholds"] == thresholds and result["thresholds_source"] == str(file.resolve())
    assert result["groups"]["backbone"]["techniques"]["mann_kendall"]["evidence"]["window"] == 7
    assert (tmp_path / "out" / "module_metrics.json").is_file()
    file.write_text(json.dumps({**thresholds, "stability_window": 2}))
    with pytest.raises(AnalysisError, match=r"t.json.stability_window: expected an integer >= 3, got 2"):
        analyze(compose_analyze(f"ckpt_dir={run}", f"thresholds={file}", "plots=false"))
    file.write_text(json.dumps({**thresholds, "plateau_varience": 1}))
    with pytest.raises(AnalysisError, match=r"unknown key\(s\) \['plateau_varience'\]"):
        analyze(compose_analyze(f"ckpt_dir={run}", f"thresholds={file}", "plots=false"))


def test_calibration_back_solves_thresholds_that_reproduce_the_accepted_epochs(tmp_path):
    """The task metrics peak at 40, later than the plateau's centre (32): a researcher accepts 40."""
    run = write_run(tmp_path / "run", Plan(plateau=(20, 44), overfit=None, task_peak=40, seed=3))
    accepted = {g: 40 for g in GROUPS}
    (tmp_path / "accepted.json").write_text(json.dumps({"recommended": accepted}))  # an edited module_metrics
    out = tmp_path / "out"
    result = analyze(compose_analyze(f"ckpt_dir={run}", f"output={out}", f"calibrate={tmp_path / 'accepted.json'}",
                                     "plots=false"))
    calibrated = json.loads((out / "calibrated_thresholds.json").read_text())
    assert set(calibrated) == {"plateau_variance", "improvement_rate", "stability_window", "mcda_weights",
                               "voting_confidence", "calibration"}
    info = calibrated["calibration"]
    # MCDA's weights move to the task metrics and MCDA moves towards 40; the vote is never farther off than
    # with the configured thresholds, and where it still misses (plateau, CUSUM and gradients say 32) the
    # group needs review
    assert calibrated["mcda_weights"]["task"] > 0.4 and sum(calibrated["mcda_weights"].values()) == pytest.approx(1)
    assert info["technique_errors_after"]["mcda"] < info["technique_errors_before"]["mcda"] - 2
    assert info["mean_abs_error_after"] <= info["mean_abs_error_before"]
    assert info["plateau_thresholds_from"] != "configured"
    for entry in info["groups"].values():
        assert entry["needs_review_after"] == (abs(entry["after"] - entry["accepted"]) > 2)
    for entry in info["groups"].values():  # every accepted window is flat under the calibrated thresholds
        assert entry["accepted_window"]["variance"] <= calibrated["plateau_variance"]
        assert abs(entry["accepted_window"]["sen_slope"]) <= calibrated["improvement_rate"]
    again = analyze(compose_analyze(f"ckpt_dir={run}", f"output={tmp_path / 'again'}",
                                    f"thresholds={out / 'calibrated_thresholds.json'}", "plots=false"))
    errors = [abs(again["recommended"][g] - e) for g, e in accepted.items()]
    assert sum(errors) / len(errors) == pytest.approx(info["mean_abs_error_after"], abs=1e-3)
    assert result["calibrated_thresholds"]["stability_window"] == calibrated["stability_window"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"backbone": 33}))
    with pytest.raises(AnalysisError, match=r"field 'backbone': 33 is not a checkpoint epoch"):
        analyze(compose_analyze(f"ckpt_dir={run}", f"output={out}", f"calibrate={bad}", "plots=false"))


def test_analyze_py_exits_2_with_the_message_and_leaves_no_litter(tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "analyze.py"), f"ckpt_dir={tmp_path / 'nope'}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "AnalysisError" in output and "no such folder" in output and "Traceback" not in output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no outputs/, .hydra/ or log file


def test_calibrating_on_the_automatic_choice_keeps_it_and_marks_nothing_for_review(planted, tmp_path):
    run, result = planted
    accepted = tmp_path / "accepted.json"
    accepted.write_text(json.dumps({"sweet_spots": result["recommended"]}))
    analyze(compose_analyze(f"ckpt_dir={run}", f"output={tmp_path}", f"calibrate={accepted}", "plots=false"))
    calibrated = json.loads((tmp_path / "calibrated_thresholds.json").read_text())
    info = calibrated["calibration"]
    assert info["mean_abs_error_before"] == info["mean_abs_error_after"] == 0
    assert not any(g["needs_review_after"] for g in info["groups"].values())
    assert calibrated["voting_confidence"] == pytest.approx(min(g["confidence_after"] for g in info["groups"].values()))
