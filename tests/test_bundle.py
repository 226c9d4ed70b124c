"""Model bundles end to end on a real tiny run: export, predict, evaluate, and what they refuse.

One tiny-preset run on the bundled sample (hashing embeddings, 4 epochs) is trained and analysed once
for the module; every test reads it. Refusals are checked through the entry points, as a user meets
them: exit code 2 and one line naming the problem and the fix.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from safetensors.torch import load_file

from redheart import load_model
from redheart.analysis.run import analyze
from redheart.bundle.errors import BundleError
from redheart.bundle.export import export_bundle
from redheart.crossover.assemble import expected_tensors, plan_assembly
from redheart.crossover.checkpoints import RunCheckpoints
from redheart.crossover.evaluate import Evaluator
from redheart.crossover.rebuild import build_net, datamodule_of, loss_settings, run_config
from redheart.train import train
from tests.conftest import LABELS, REPO_ROOT, compose_for, distinct_text

TINY = ("model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64", "data.progress=false", "logger=none",
        "+trainer.enable_progress_bar=false", "trainer.max_epochs=4")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "REDHEART_ROOT": str(REPO_ROOT)}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A trained tiny run, analysed (crossover, evaluation, the crossover's bundle)."""
    root = tmp_path_factory.mktemp("bundle")
    torch.set_num_threads(1)
    cfg = compose_for(root, *TINY)
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        acfg = compose(config_name="analyze", overrides=[f"ckpt_dir={run_dir}", "plots=false",
                                                          "evaluation.fixed_epochs=[]", "evaluation.shifts=[]"])
    GlobalHydra.instance().clear()
    analyze(acfg)
    return run_dir


def entry(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *args], cwd=cwd or REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def run_evaluation(run_dir: Path, recipe_epoch: int | None = None, split: str = "test"):
    """What the crossover evaluation computes for the last checkpoint on `split` (its logits and records)."""
    checkpoints = RunCheckpoints(run_dir)
    cfg = run_config(run_dir)
    datamodule = datamodule_of(cfg)
    net = build_net(cfg, 64)
    loaders = {s: getattr(datamodule, f"{s}_dataloader")() for s in ("train", "val", "test")}
    evaluator = Evaluator(net, checkpoints, loaders, loss_settings(cfg), 7, 10, torch.device("cpu"))
    epoch = recipe_epoch or checkpoints.last_epoch
    plan = plan_assembly(checkpoints, {g: (epoch,) for g in checkpoints.groups}, "ema",
                         expected_tensors(build_net(cfg, 64, device="meta")))
    indices = datamodule.datasets[split].tensors["index"].tolist()
    texts = [datamodule.prepared.records[i].text for i in indices]
    return evaluator.predict(plan, split), texts, datamodule.batch_size


def test_a_bundle_predicts_exactly_the_logits_the_runs_evaluation_got(run, tmp_path):
    out = export_bundle(run, "last", tmp_path / "last")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "weights.safetensors"]
    config = json.loads((out / "config.json").read_text())
    expected, texts, batch = run_evaluation(run)
    model = load_model(out, device="cpu")
    got = model.outputs(texts, batch_size=batch)
    assert torch.equal(torch.from_numpy(got.logits), expected.logits)  # bit for bit, not approximately
    assert config["metrics"]["test"]["accuracy"] == pytest.approx(expected.accuracy)
    trained = json.loads((run / "metrics.json").read_text())["test"]  # the training's own test stage (same weights)
    assert config["metrics"]["test"]["accuracy"] == pytest.approx(trained["test/emotion/acc"], abs=1e-6)
    assert config["metrics"]["test"]["macro_f1"] == pytest.approx(trained["test/emotion/f1"], abs=1e-6)
    assert config["metrics"]["test"]["ci"]["accuracy"]["ci_low"] <= expected.accuracy
    assert config["embedding"]["model_id"].startswith("hashing:dim=64")
    assert config["provenance"]["selection"]["recipe"]["backbone"] == [4] and config["calibration"]["temperature"] > 0
    rows = model.predict(texts[:3])
    for row, logits in zip(rows, got.logits[:3], strict=True):
        assert row["label"] == LABELS[int(np.argmax(logits))]
        assert list(row["probabilities"]) == list(LABELS)
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert set(row["bentham"]) == set(config["schema"]["bentham_names"]) and set(row["surd"]) == {
            "surprise", "uncertainty", "relevance", "depth"}
        assert 0 <= row["intensity"] <= 1 and 0 <= row["regret"] <= 1
        assert row["uncertainty"]["kalman_variance"] > 0 and 0 <= row["uncertainty"]["module_disagreement"] <= 1
    assert "## Metrics" in (out / "README.md").read_text() and "Intended use" in (out / "README.md").read_text()


def test_analyze_writes_the_crossover_as_a_bundle_with_the_evaluations_numbers(run):
    bundle = run / "analysis_results" / "model_bundle"
    evaluation = json.loads((run / "analysis_results" / "evaluation.json").read_text())
    crossover = next(c for c in evaluation["candidates"] if c["name"] == "crossover")
    config = json.loads((bundle / "config.json").read_text())
    assert config["provenance"]["selection"]["recipe"] == crossover["recipe"]
    assert config["metrics"]["test"]["accuracy"] == pytest.approx(crossover["test"]["accuracy"])
    assert config["calibration"]["temperature"] == pytest.approx(crossover["val"]["temperature"], rel=1e-6)
    chosen = evaluation["calibration"]["crossover"]  # the calibrator chosen on val for these weights is carried
    assert config["calibration"]["method"] == chosen["chosen"] and config["calibration"]["params"] == chosen["params"]
    assert config["calibration"]["source"] == "evaluation.json" and config["calibration"]["candidate"] == "crossover"
    ours, theirs = load_file(bundle / "weights.safetensors"), load_file(
        run / "analysis_results" / "crossover_final.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k].to(ours[k].dtype)) for k in ours)


def test_export_py_writes_a_bundle_for_any_choice_and_refuses_a_missing_epoch(run, tmp_path):
    result = entry("export.py", f"ckpt_dir={run}", "select=2", f"out={tmp_path / 'e2'}")
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "e2" / "config.json").read_text())
    assert config["provenance"]["selection"]["recipe"]["heads"] == [2]
    line = one_line_error(entry("export.py", f"ckpt_dir={run}", "select=3", f"out={tmp_path / 'e3'}"))
    assert "select=3" in line and "[2, 4]" in line and not (tmp_path / "e3").exists()


def test_predict_py_streams_jsonl_json_text_and_tables_and_prints_one_text(run, tmp_path):
    bundle = run / "analysis_results" / "model_bundle"
    texts = [distinct_text(i) for i in range(70)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": f"x{i}", "text": t}) + "\n"
                                               for i, t in enumerate(texts)) + "\n")
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    (tmp_path / "in.json").write_text(json.dumps(texts))
    with open(tmp_path / "in.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["story", "key"], *[[t, f"k{i}"] for i, t in enumerate(texts)]])
    expected = load_model(bundle).predict(texts)
    for name, extra in (("in.jsonl", ()), ("in.txt", ()), ("in.json", ()),
                        ("in.csv", ("+data.table={columns: {text: story, id: key}}",))):
        out = tmp_path / f"{name}.out.jsonl"
        result = entry("predict.py", f"bundle={bundle}", f"input={tmp_path / name}", f"output={out}", "batch_size=16",
                       *extra)
        assert result.returncode == 0, result.stderr[-2000:]
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["text"] for r in rows] == texts, name
        assert [r["label"] for r in rows] == [e["label"] for e in expected]
        assert rows[0]["probabilities"] == pytest.approx(expected[0]["probabilities"], abs=1e-5)
    assert [r["id"] for r in map(json.loads, (tmp_path / "in.csv.out.jsonl").read_text().splitlines())][:2] == [
        "k0", "k1"]
    one = entry("predict.py", f"bundle={bundle}", f"text={texts[0]}")
    assert one.returncode == 0 and json.loads(one.stdout)["label"] == expected[0]["label"]


def test_evaluate_py_on_a_tab_separated_table_with_other_columns_and_title_case_labels(run, tmp_path):
    bundle = run / "analysis_results" / "model_bundle"
    texts = [distinct_text(1000 + i) for i in range(84)]
    labels = [i % 7 for i in range(84)]
    with open(tmp_path / "other.tsv", "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["Key", "Feeling", "Narrative"])
        writer.writerows([f"n{i}", LABELS[y].title(), t] for i, (t, y) in enumerate(zip(texts, labels, strict=True)))
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "other.yaml").write_text(
        "defaults: [records, _self_]\n"
        f"path: {tmp_path / 'other.tsv'}\n"
        'table: {sep: "\\t", columns: {id: Key, text: Narrative, label: Feeling}, label_encoding: name}\n')
    result = entry("evaluate.py", "--config-dir", str(tmp_path / "conf"), f"bundle={bundle}", "data=other",
                   f"out={tmp_path / 'ev'}", "baseline=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    predicted = load_model(bundle).outputs(texts).logits.argmax(1)
    direct = float(np.mean(predicted == np.array(labels)))
    assert report["records"] == 84 and report["data"]["counts"]["kept"] == 84
    assert report["metrics"]["accuracy"] == pytest.approx(direct, abs=1e-6)
    assert report["metrics"]["ci"]["accuracy"]["ci_low"] <= direct <= report["metrics"]["ci"]["accuracy"]["ci_high"]
    assert np.trace(np.array(report["confusion_matrix"]["matrix"])) == round(direct * 84)
    assert report["per_class"]["joy"]["support"] == 12 and "ece_scaled" in report["metrics"]
    assert report["baseline"]["records"] == 84 and "bundle_minus_baseline" in report["baseline"]
    assert (tmp_path / "ev" / "confusion_matrix.png").stat().st_size > 0
    assert "| accuracy |" in (tmp_path / "ev" / "evaluation_report.md").read_text()


def test_evaluate_reports_the_tasks_the_data_has_targets_for(run, tmp_path):
    from redheart.bundle.evaluate import evaluate_bundle

    bundle = run / "analysis_results" / "model_bundle"
    result = evaluate_bundle(bundle, {"path": str(REPO_ROOT / "data" / "sample.jsonl"), "on_invalid": "skip"},
                             tmp_path / "ev", bootstrap={"resamples": 200})
    counts = result["data"]["counts"]
    assert counts["read"] == counts["kept"] + counts["near_duplicates"] + counts["quarantined"]
    assert counts["quarantined"] > 0 and counts["near_duplicates"] > 0  # validation and dedup ran, no split
    assert result["records"] == counts["kept"] and {"bentham/rmse", "intensity/mae"} <= set(result["metrics"]["tasks"])
    assert "not a test of generalisation" in (tmp_path / "ev" / "evaluation_report.md").read_text()


def test_a_tampered_bundle_fails_its_sha256(run, tmp_path):
    bundle = shutil.copytree(run / "analysis_results" / "model_bundle", tmp_path / "b")
    weights = bytearray((bundle / "weights.safetensors").read_bytes())
    weights[-1] ^= 1
    (bundle / "weights.safetensors").write_bytes(bytes(weights))
    with pytest.raises(BundleError, match="sha256"):
        load_model(bundle)
    assert "sha256" in one_line_error(entry("predict.py", f"bundle={bundle}", "text=hello"))


def test_missing_files_a_wrong_fingerprint_and_an_empty_input_exit_2_with_one_line(run, tmp_path):
    bundle = run / "analysis_results" / "model_bundle"
    assert "no such folder" in one_line_error(entry("predict.py", f"bundle={tmp_path / 'nowhere'}", "text=hi"))
    line = one_line_error(entry("predict.py", f"bundle={bundle}", f"input={tmp_path / 'missing.jsonl'}"))
    assert "missing.jsonl: file not found" in line
    (tmp_path / "empty.jsonl").write_text("")
    assert "empty" in one_line_error(entry("predict.py", f"bundle={bundle}", f"input={tmp_path / 'empty.jsonl'}"))
    (tmp_path / "blank.txt").write_text("\n \n")
    line = one_line_error(entry("predict.py", f"bundle={bundle}", f"input={tmp_path / 'blank.txt'}",
                                f"output={tmp_path / 'blank.out.jsonl'}"))
    assert "no text" in line and not (tmp_path / "blank.out.jsonl").exists()
    other = shutil.copytree(bundle, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["embedding"]["model_id"] = "hashing:dim=64:ngram=3-5:normalize=True"
    (other / "config.json").write_text(json.dumps(config))
    line = one_line_error(entry("predict.py", f"bundle={other}", "text=hi"))
    assert "fingerprint mismatch" in line and "hashing:dim=64:ngram=2-4" in line and "retrain" in line
    shutil.rmtree(other / "weights.safetensors", ignore_errors=True)
    (other / "weights.safetensors").unlink()
    assert "weights.safetensors is missing" in one_line_error(entry("evaluate.py", f"bundle={other}",
                                                                    f"data.path={tmp_path / 'x.jsonl'}"))


def plant_calibrator(run: Path, analysis: Path, method: str) -> tuple[dict, np.ndarray]:
    """An analysis folder whose evaluation.json chose `method` on val for the crossover (fitted on the
    crossover's own val logits); returns the planted parameters and those val logits."""
    from redheart.crossover.calibrators import fit

    evaluation = json.loads((run / "analysis_results" / "evaluation.json").read_text())
    val, texts, batch = run_evaluation(run, split="val")  # its labels; the logits come from the crossover below
    logits = load_model(run / "analysis_results" / "model_bundle", device="cpu").outputs(texts, batch).logits
    params = json.loads(json.dumps(fit(method, logits.astype(np.float64), val.labels.numpy())))
    evaluation["calibration"]["crossover"] = {"methods": ["none", "temperature", method], "chosen": method,
                                              "chosen_by": "planted by the test", "params": params}
    analysis.mkdir()
    (analysis / "evaluation.json").write_text(json.dumps(evaluation))
    return params, logits


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_a_bundle_carries_the_calibrator_chosen_on_val_and_predicts_with_it(run, tmp_path, method):
    from redheart.bundle.format import calibration_params
    from redheart.crossover.calibrators import apply_json, softmax

    params, val_logits = plant_calibrator(run, tmp_path / "analysis", method)
    out = export_bundle(run, "crossover", tmp_path / "b", analysis_dir=tmp_path / "analysis",
                        bootstrap={"resamples": 50})
    config = json.loads((out / "config.json").read_text())
    assert config["calibration"]["method"] == method and config["calibration"]["params"] == params  # round trip
    assert calibration_params(config, out / "config.json") == params
    _, texts, batch = run_evaluation(run)
    model = load_model(out, device="cpu")
    got = model.outputs(texts, batch_size=batch)
    carried = apply_json(params, got.logits.astype(np.float64))
    temperature_only = softmax(got.logits.astype(np.float64) / config["calibration"]["temperature"])
    np.testing.assert_allclose(got.probabilities, carried, atol=1e-6)
    assert np.abs(got.probabilities - temperature_only).max() > 1e-2  # not the temperature's probabilities
    rows = model.predict(texts[:5])
    for row, probs in zip(rows, carried[:5], strict=True):
        assert list(row["probabilities"].values()) == pytest.approx(probs.tolist(), abs=2e-6)
    # the bundle's val numbers are the carried calibrator's: its NLL on val is the planted fit's
    from redheart.crossover.calibrators import nll

    val_labels = run_evaluation(run, split="val")[0].labels.numpy()
    assert config["metrics"]["selection"]["nll_scaled"] == pytest.approx(nll(apply_json(params, val_logits),
                                                                              val_labels), rel=1e-5)
    assert config["metrics"]["test"]["calibration_method"] == method
    card = (out / "README.md").read_text()
    assert {"isotonic": "isotonic regression", "platt": "Platt scaling"}[method] in card and "fitted on val" in card
    if method == "isotonic":  # evaluate.py reports the carried calibrator's ECE, not the temperature's
        from redheart.bundle.evaluate import evaluate_bundle

        result = evaluate_bundle(out, {"path": str(REPO_ROOT / "data" / "sample.jsonl"), "on_invalid": "skip"},
                                 tmp_path / "ev", bootstrap={"resamples": 20})
        assert result["metrics"]["calibration_method"] == "isotonic"
        assert "isotonic" in (tmp_path / "ev" / "evaluation_report.md").read_text()


def test_a_bundle_without_an_analysis_or_from_before_calibrators_uses_temperature_scaling(run, tmp_path):
    from redheart.crossover.calibrators import softmax

    (tmp_path / "none").mkdir()
    out = export_bundle(run, "last", tmp_path / "b", analysis_dir=tmp_path / "none", bootstrap={"resamples": 50})
    config = json.loads((out / "config.json").read_text())
    t = config["calibration"]["temperature"]
    assert config["calibration"]["method"] == "temperature" and config["calibration"]["params"] == {
        "kind": "temperature", "temperature": t} and "fallback" in config["calibration"]["chosen_by"]
    _, texts, batch = run_evaluation(run)
    got = load_model(out, device="cpu").outputs(texts[:20], batch_size=batch)
    np.testing.assert_allclose(got.probabilities, softmax(got.logits.astype(np.float64) / t), atol=1e-6)
    config["calibration"] = {"temperature": t, "method": "temperature scaling", "fitted_on": "val"}  # old format
    (out / "config.json").write_text(json.dumps(config))
    old = load_model(out, device="cpu").outputs(texts[:20], batch_size=batch)
    np.testing.assert_allclose(old.probabilities, got.probabilities, atol=1e-7)


def test_an_unknown_or_damaged_calibrator_is_a_bundle_error_naming_file_and_field(run, tmp_path):
    bundle = shutil.copytree(run / "analysis_results" / "model_bundle", tmp_path / "b")
    config = json.loads((bundle / "config.json").read_text())
    config["calibration"] = {**config["calibration"], "method": "beta", "params": {"kind": "beta_ovr", "a": [1.0]}}
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=r"config\.json: field 'calibration\.params\.kind' is 'beta_ovr'"):
        load_model(bundle)
    line = one_line_error(entry("predict.py", f"bundle={bundle}", "text=hello"))
    assert "calibration.params.kind" in line and str(bundle / "config.json") in line
    classes = len(config["schema"]["class_names"])
    for params, field in (({"kind": "platt_ovr", "coef": [1.0] * (classes - 1), "intercept": [0.0] * classes},
                           "calibration.params.coef"),
                          ({"kind": "isotonic_ovr", "x": [[0.5, 0.2]] * classes, "y": [[0.1, 0.2]] * classes},
                           "calibration.params.x[0]"),
                          ({"kind": "temperature", "temperature": -1}, "calibration.params.temperature")):
        method = {"platt_ovr": "platt", "isotonic_ovr": "isotonic", "temperature": "temperature"}[params["kind"]]
        config["calibration"] = {**config["calibration"], "method": method, "params": params}
        (bundle / "config.json").write_text(json.dumps(config))
        with pytest.raises(BundleError, match=re.escape(field)):
            load_model(bundle)
    config["calibration"] = {**config["calibration"], "method": "isotonic",
                             "params": {"kind": "temperature", "temperature": 1.0}}
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="calibration.method"):
        load_model(bundle)
