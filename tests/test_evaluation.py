"""Evaluation of the crossover: bootstrap CIs, calibration, BatchNorm statistics, tables, the protocol.

The protocol test runs the whole evaluation on a synthetic run (random tiny nets, the real sample data)
and checks that no test prediction happens before every selection on val is done. The slow test trains
a real tiny run and checks that the rebuilt model reproduces the training's own val loss.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from redheart.crossover.baseline import fit_logistic_regression
from redheart.crossover.bootstrap import accuracy, macro_f1, metric_ci, paired_difference_ci
from redheart.crossover.errors import CrossoverError
from redheart.crossover.evaluate import Evaluator, recompute_running_stats
from redheart.crossover.run import crossover_and_evaluate
from redheart.crossover.tables import latex_table, markdown_table
from redheart.crossover.temperature import brier, calibration_metrics, ece, fit_temperature
from redheart.train import train
from tests.conftest import compose_for
from tests.test_crossover import GROUPS, all_at, analysis_for, make_run


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on small batches: one intra-op thread is faster, and much faster on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_paired_bootstrap_ci_on_a_known_difference():
    n = 400
    labels = np.zeros(n, dtype=int)
    candidate = labels.copy()  # always right
    baseline = labels.copy()
    baseline[::2] = 1  # right on exactly half the records
    ci = paired_difference_ci(labels, candidate, baseline, "accuracy", resamples=2000, seed=1)
    assert ci["difference"] == 0.5
    # the difference is the mean of a 0/1 indicator with p = 0.5: sd = sqrt(0.25 / 400) = 0.025
    assert ci["ci_low"] == pytest.approx(0.5 - 1.96 * 0.025, abs=0.01)
    assert ci["ci_high"] == pytest.approx(0.5 + 1.96 * 0.025, abs=0.01)
    assert ci["better_beyond_ci"] and not ci["worse_beyond_ci"] and ci["p_not_better"] == 0.0
    swapped = paired_difference_ci(labels, baseline, candidate, "accuracy", resamples=2000, seed=1)
    assert swapped["ci_high"] == pytest.approx(-ci["ci_low"]) and swapped["worse_beyond_ci"]
    assert paired_difference_ci(labels, candidate, baseline, "accuracy", resamples=2000, seed=1) == ci


def test_bootstrap_of_identical_or_coin_flip_predictions_does_not_claim_a_difference():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 300)
    same = paired_difference_ci(labels, labels, labels, "macro_f1")
    assert (same["difference"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0) and not same["better_beyond_ci"]
    a, b = rng.integers(0, 7, 300), rng.integers(0, 7, 300)  # two equally useless models
    noise = paired_difference_ci(labels, a, b, "macro_f1", resamples=1000)
    assert noise["ci_low"] < noise["difference"] < noise["ci_high"]
    assert noise["ci_low"] < 0 < noise["ci_high"]


def test_vectorised_metrics_match_sklearn_on_every_resample():
    rng = np.random.default_rng(3)
    labels, predicted = rng.integers(0, 7, (50, 40)), rng.integers(0, 5, (50, 40))  # 50 resamples of 40 records
    f1 = macro_f1(labels, predicted, num_classes=7)
    acc = accuracy(labels, predicted)
    for i in range(50):
        assert f1[i] == pytest.approx(f1_score(labels[i], predicted[i], average="macro"))
        assert acc[i] == pytest.approx(np.mean(labels[i] == predicted[i]))


def test_temperature_scaling_recovers_the_temperature_that_miscalibrated_the_logits():
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 7, generator=generator) * 2
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=generator).squeeze(1)
    overconfident = true_logits * 3.0
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    metrics = calibration_metrics(overconfident, labels, temperature)
    assert metrics["ece_scaled"] < metrics["ece"] / 2 and metrics["nll_scaled"] < metrics["nll"]


def test_brier_and_ece_on_known_predictions():
    labels = torch.tensor([0, 1, 2, 3])
    perfect = torch.eye(4)
    assert brier(perfect, labels) == 0.0 and ece(perfect, labels) == pytest.approx(0.0)
    uniform = torch.full((4, 4), 0.25)
    assert brier(uniform, labels) == pytest.approx(1 - 1 / 4)  # (1 - 1/K)^2 + (K - 1)/K^2
    assert ece(uniform, labels) == pytest.approx(0.0)  # 25% confident, 25% right
    wrong = torch.eye(4)[[1, 2, 3, 0]]
    assert brier(wrong, labels) == pytest.approx(2.0) and ece(wrong, labels) == pytest.approx(1.0)


def test_running_statistics_are_recomputed_only_for_models_that_have_them():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    batches = [{"embedding": torch.randn(32, 4) * 5 + 2} for _ in range(4)]
    with torch.no_grad():
        features = [net[0](b["embedding"]) for b in batches]
    assert recompute_running_stats(net, batches)
    # update_bn's cumulative average over equal batches: the mean of the batch means and batch variances
    expected_mean = torch.stack([f.mean(0) for f in features]).mean(0)
    expected_var = torch.stack([f.var(0, unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(net[1].running_mean, expected_mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(net[1].running_var, expected_var, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(expected_var, torch.ones(3))  # not the initial statistics
    assert not recompute_running_stats(nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)), batches)


def fake_result(name: str, acc: float, f1: float, diff: float | None) -> dict:
    split = {"loss": 1.0 - acc, "accuracy": acc, "macro_f1": f1, "ece": 0.1, "ece_scaled": 0.05, "brier": 0.5,
             "records": 100}
    out = {"name": name, "label": name.replace("_", " ").title() + " 50%", "val": split, "test": split}
    if diff is not None:
        ci = {"difference": diff, "ci_low": diff - 0.02, "ci_high": diff + 0.02, "better_beyond_ci": diff > 0.02,
              "worse_beyond_ci": diff < -0.02}
        out["vs_best_single"] = {"accuracy": ci, "macro_f1": ci}
    return out


def test_tables_follow_the_seed_layout_with_numbers_cis_and_bold_best():
    results = [fake_result("best_single", 0.70, 0.60, None), fake_result("crossover_x", 0.75, 0.65, 0.05)]
    md = markdown_table(results)
    # the design's column order
    assert md.splitlines()[0].startswith("| Method | Val Loss | Val Acc | Test Acc [95% CI] |")
    assert "**75.0%**" in md and "+5.0 [+3.0, +7.0]*" in md and "| — |" in md
    tex = latex_table(results, "Crossover & baselines")
    assert tex.startswith("\\begin{table}[h]\n\\centering\n\\caption{Crossover \\& baselines}")
    assert "\\textbf{Method} & \\textbf{Val Loss} & \\textbf{Val Acc} & \\textbf{Test Acc [95\\% CI]}" in tex
    assert "Crossover X 50\\%" in tex and "\\textbf{75.0\\%}" in tex and tex.count("\\hline") == 3


def test_a_metric_ci_covers_the_value_and_narrows_with_more_records():
    rng = np.random.default_rng(1)

    def width(n: int) -> float:
        labels = rng.integers(0, 4, n)
        predicted = np.where(rng.random(n) < 0.7, labels, rng.integers(0, 4, n))
        ci = metric_ci(labels, predicted, "macro_f1", resamples=1000)
        assert ci["ci_low"] < ci["value"] < ci["ci_high"]
        assert ci["value"] == pytest.approx(f1_score(labels, predicted, average="macro"))
        return ci["ci_high"] - ci["ci_low"]

    assert width(2000) < 0.6 * width(200)  # ~ 1/sqrt(n): 0.32 expected


class _Split:
    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.tensors = {"embedding": torch.from_numpy(x).float(), "label": torch.from_numpy(y).long()}


def _blobs(n: int, scale: float, seed: int, classes: int = 3) -> _Split:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = np.eye(classes, 8) * 3.0
    return _Split(centres[y] + scale * rng.normal(size=(n, 8)), y)


def test_logistic_regression_baseline_chooses_c_on_val_log_loss():
    datasets = {"train": _blobs(300, 1.5, 0), "val": _blobs(200, 1.5, 1), "test": _blobs(200, 1.5, 2)}
    grid = (0.0001, 0.01, 1.0)
    fit = fit_logistic_regression(datasets, num_classes=4, c_grid=grid)  # class 3 never occurs
    assert min(fit.val_log_loss, key=fit.val_log_loss.get) == fit.C and set(fit.val_log_loss) == set(grid)
    assert fit.val_log_loss[0.0001] > fit.val_log_loss[fit.C]  # near-uniform probabilities under heavy L2
    probs = fit.log_probs["test"].exp()
    assert probs.shape == (200, 4) and torch.allclose(probs.sum(1), torch.ones(200), atol=1e-4)
    assert float(probs[:, 3].max()) < 1e-3  # the absent class gets (almost) no mass
    accuracy_ = float((fit.log_probs["test"].argmax(1) == fit.labels["test"]).float().mean())
    assert accuracy_ > 0.7  # overlapping blobs (Bayes accuracy ~0.83); chance is 1/3
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=fit.C)).fit(
        datasets["train"].tensors["embedding"].numpy(), datasets["train"].tensors["label"].numpy())
    np.testing.assert_allclose(fit.log_probs["test"][:, :3].exp().numpy(),
                               reference.predict_proba(datasets["test"].tensors["embedding"].numpy()), atol=1e-5)


def test_logistic_regression_baseline_refuses_a_single_class_train_split():
    one = _Split(np.zeros((10, 8)), np.zeros(10, dtype=int))
    with pytest.raises(CrossoverError, match="train split has 1 emotion class"):
        fit_logistic_regression({"train": one, "val": one, "test": one}, num_classes=3)


def test_a_baseline_row_without_a_multitask_loss_prints_a_dash_and_is_never_bold():
    results = [fake_result("best_single", 0.70, 0.60, None), fake_result("logistic_regression", 0.80, 0.50, -0.1)]
    results[1]["val"] = dict(results[1]["val"], loss=None)
    results[0]["test"] = dict(results[0]["test"], ci={"accuracy": {"ci_low": 0.65, "ci_high": 0.75}})
    md = markdown_table(results)
    assert "| **0.300** |" in md and "| — |" in md.splitlines()[3]
    assert "70.0% [65.0, 75.0]" in md
    assert "\\textbf{--}" not in latex_table(results, "x") and " & -- & " in latex_table(results, "x")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, monkeypatch_module):
    """The whole evaluation on a synthetic run (4 checkpoints), recording the order of the splits predicted."""
    root = tmp_path_factory.mktemp("eval")
    run_dir = make_run(root, epochs=(2, 4, 6, 8))
    calls: list[str] = []
    original = Evaluator.predict

    def recording(self, plan, split):
        calls.append(split)
        return original(self, plan, split)

    monkeypatch_module.setattr(Evaluator, "predict", recording)
    analysis = analysis_for(run_dir, {g: (4 if i % 2 else 6) for i, g in enumerate(GROUPS)}, plateau=(4, 8))
    analysis["epochs"] = [2, 4, 6, 8]
    for i, entry in enumerate(analysis["groups"].values()):  # each group's own curve: best at 4 or at 6
        entry["series"] = {"loss": {"2": 1.0, "4": 0.9 if i % 2 else 0.95, "6": 0.93 if i % 2 else 0.9, "8": 1.3}}
    settings = {"fixed_epochs": [4, 30], "shifts": [-2, 2], "bootstrap": {"resamples": 1000, "seed": 0}}
    result = crossover_and_evaluate({"weights": "auto"}, settings, run_dir, analysis, root / "out")
    return result, calls, root / "out"


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def test_every_selection_uses_val_before_any_test_prediction(evaluated):
    result, calls, _ = evaluated
    first_test = calls.index("test")
    assert "val" not in calls[first_test:]  # the candidate list was fixed before the test split was touched
    evaluation = result["evaluation"]
    assert calls.count("test") == len({json.dumps([c["weights"], c["recipe"]], sort_keys=True)
                                       for c in evaluation["candidates"] if c["kind"] != "baseline"})  # each once


def test_the_evaluation_lists_every_candidate_with_metrics_and_cis(evaluated):
    result, _, out = evaluated
    evaluation = json.loads((out / "evaluation.json").read_text())
    names = [c["name"] for c in evaluation["candidates"]]
    assert names == ["single_epoch_004", "best_single", "last", "ema", "plateau_average", "per_group_plateau_average",
                     "greedy_soup", "crossover",
                     "greedy_crossover", "crossover_shift_-2", "crossover_shift_+2", "logistic_regression"]
    assert evaluation["weights"] == "ema" and any("[30]" in n for n in evaluation["notes"])
    by_name = {c["name"]: c for c in evaluation["candidates"]}
    scores = {int(e): v for e, v in evaluation["val_by_epoch"].items()}
    assert by_name["best_single"]["details"]["epoch"] == min(scores, key=scores.get)  # val loss, min
    assert by_name["plateau_average"]["recipe"]["backbone"] == [4, 6, 8]
    windows = by_name["per_group_plateau_average"]["recipe"]  # within 5% of each group's own best
    assert windows["backbone"] == [6] and windows["heads"] == [4, 6]
    assert by_name["ema"]["weights"] == "ema" and by_name["ema"]["same_weights_as"] == "last"
    for c in evaluation["candidates"]:
        for split in ("val", "test"):
            m = c[split]
            assert {"loss", "accuracy", "macro_f1", "ece", "ece_scaled", "brier", "temperature", "tasks"} <= set(m)
            assert m["records"] > 0 and ("bentham/rmse" in m["tasks"]) == (c["kind"] != "baseline")
        for metric in ("accuracy", "macro_f1"):
            ci = c["test"]["ci"][metric]
            assert ci["ci_low"] <= ci["value"] <= ci["ci_high"] and ci["ci_low"] < ci["ci_high"]
            assert ci["value"] == pytest.approx(c["test"][metric], abs=1e-6)  # torchmetrics (float32) vs numpy
        if c["name"] != "best_single":
            ci = c["vs_best_single"]["macro_f1"]
            assert ci["ci_low"] <= ci["difference"] <= ci["ci_high"] and ci["resamples"] == 1000
    for name in ("comparison.md", "comparison.tex", "comparison.png", "final_report.md", "greedy_crossover.json",
                 "provenance.json", "crossover_final.safetensors", "checkpoint_val_curve.png"):
        assert (out / name).is_file(), name
    baseline = by_name["logistic_regression"]
    assert baseline["val"]["loss"] is None and baseline["details"]["C"] in (0.01, 0.1, 1.0, 10.0)
    assert baseline["test"]["records"] == by_name["best_single"]["test"]["records"]
    report = (out / "final_report.md").read_text()
    assert "beat best single beyond its CI" in report and "[comparison.md](comparison.md)" in report
    assert "Best single vs the Logistic regression (C=" in report
    assert "| Logistic regression (C=" in (out / "comparison.md").read_text()
    assert set(evaluation["tasks"]) == {"emotion", "intensity", "regret", "bentham", "surd"}
    for task, by_candidate in evaluation["tasks"].items():
        assert set(by_candidate) == set(names) - ({"logistic_regression"} if task != "emotion" else set())
        assert "vs_best_single" not in by_candidate["best_single"]
        assert all("vs_best_single" in e for n, e in by_candidate.items() if n != "best_single")
    assert "## Per-task verdict (test)" in report and "- **bentham**:" in report
    assert set(evaluation["selection_check"]) == set(names) - {"logistic_regression"}
    assert evaluation["selection_check"]["best_single"]["selected_gain"] == 0.0
    assert evaluation["recommendation"]["recommended"] in ("best_single", "crossover", "greedy_crossover")
    assert "## Selection check (val halves)" in report and "**Recommended: " in report
    calibration = evaluation["calibration"]["best_single"]
    assert calibration["chosen"] in calibration["methods"] and set(calibration["test"]) == set(calibration["methods"])
    assert "## Calibration (fitted on val, compared on test)" in report
    assert "### surd (test records with the target:" in (out / "comparison.md").read_text()
    greedy = json.loads((out / "greedy_crossover.json").read_text())
    assert set(greedy["recommended"]) == set(GROUPS)


@pytest.mark.slow
def test_a_real_tiny_run_is_combined_and_evaluated_consistently_with_its_training(tmp_path):
    cfg = compose_for(tmp_path, "model=tiny", "data.embedding.backend=hashing", "data.embedding.dim=64",
                      "data.progress=false", "logger=none", "+trainer.enable_progress_bar=false", "test=false",
                      "trainer.max_epochs=6")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    result = crossover_and_evaluate(all_at(4, "auto"), {"fixed_epochs": [30], "shifts": [-2, 2]}, run_dir, None,
                                    run_dir / "analysis_results")
    evaluation = result["evaluation"]
    consistency = evaluation["consistency_with_training"]
    assert consistency["checked_epochs"] == 3 and consistency["max_abs_val_loss_difference"] < 1e-4
    assert (run_dir / "analysis_results" / "final_report.md").is_file()
    tables = (run_dir / "analysis_results" / "paper_tables.md").read_text()  # the run's own files, three tables
    report = json.loads((run_dir / "data_report.json").read_text())
    parameters = json.loads((run_dir / "parameters.json").read_text())
    assert f"| Records read | {report['counts']['read']:,} |" in tables
    assert f"| Kept after dedup | {report['counts']['kept']:,} |" in tables
    assert f"| Total | {parameters['total']['actual']:,} | 100.0% |" in tables
    assert tables.count("**Dataset statistics") == tables.count("**Model architecture") == 1
    assert tables.count("| " + evaluation["candidates"][0]["label"] + " |") == 1


def test_a_candidate_changing_only_advanced_bentham_moves_bentham_and_exactly_nothing_of_emotion(tmp_path):
    from redheart.crossover.assemble import expected_tensors, plan_assembly
    from redheart.crossover.checkpoints import RunCheckpoints
    from redheart.crossover.rebuild import build_net, datamodule_of, input_dim_of, loss_settings, run_config, schema_of
    from redheart.crossover.run import per_task, versus

    run_dir = make_run(tmp_path, epochs=(2, 4))
    checkpoints, cfg = RunCheckpoints(run_dir), run_config(run_dir)
    dim = input_dim_of(run_dir, cfg)
    expected = expected_tensors(build_net(cfg, dim, device="meta"))
    data, schema = datamodule_of(cfg, None), schema_of(cfg)
    loaders = {"train": data.train_dataloader(), "val": data.val_dataloader(), "test": data.test_dataloader()}
    evaluator = Evaluator(build_net(cfg, dim, device="cpu"), checkpoints, loaders, loss_settings(cfg),
                          len(schema.class_names), len(schema.bentham_names), torch.device("cpu"))
    recipe = {g: (2,) for g in GROUPS}
    base = evaluator.predict(plan_assembly(checkpoints, recipe, "raw", expected), "test")
    moved = evaluator.predict(plan_assembly(checkpoints, {**recipe, "advanced_bentham": (4,)}, "raw", expected), "test")
    boot = {"resamples": 1000, "confidence": 0.95, "seed": 0}
    results = [{"name": "best_single"}, {"name": "only_bentham", "vs_best_single": versus(base, moved, boot)}]
    tasks = per_task(results, {"best_single": base, "only_bentham": moved}, boot)
    assert set(tasks) == {"emotion", "intensity", "regret", "bentham", "surd"}
    emotion = tasks["emotion"]["only_bentham"]["vs_best_single"]
    assert set(emotion) == {"accuracy", "macro_f1", "ece", "brier"}
    for ci in emotion.values():
        assert ci["difference"] == 0.0 and ci["ci_low"] == 0.0 and ci["ci_high"] == 0.0
    bentham = tasks["bentham"]["only_bentham"]["vs_best_single"]
    assert tasks["bentham"]["only_bentham"]["test"]["records"] > 0
    assert bentham["mae"]["difference"] != 0.0 and bentham["mae"]["ci_low"] < bentham["mae"]["ci_high"]
    for task in ("intensity", "regret"):  # no path from advanced_bentham (SURD has one: phase.community fuses both)
        assert all(ci["difference"] in (0.0, None) for ci in tasks[task]["only_bentham"]["vs_best_single"].values()), \
            (task, tasks[task])


def test_a_crossover_is_recommended_only_when_the_confirmation_half_agrees():
    from redheart.crossover.confirm import gains, recommend, val_halves

    select, confirm = val_halves(np.repeat(np.arange(4), 10), seed=0)
    assert len(select) == len(confirm) == 20 and not set(select) & set(confirm)
    assert np.bincount(np.repeat(np.arange(4), 10)[select]).tolist() == [5, 5, 5, 5]  # stratified
    scores = {"best_single": {"select": 1.00, "confirm": 1.00},
              "greedy_crossover": {"select": 0.95, "confirm": 1.02},   # won the search, lost on confirmation
              "crossover": {"select": 0.99, "confirm": 0.98}}          # small, but on both halves
    check = gains(scores, "min")
    assert check["greedy_crossover"]["selected_gain"] == pytest.approx(0.05)
    assert check["greedy_crossover"]["optimism"] == pytest.approx(0.07)
    assert recommend(check)["recommended"] == "crossover"
    scores["crossover"]["confirm"] = 1.01
    assert recommend(gains(scores, "min"))["recommended"] == "best_single"


def test_swad_window_is_the_run_within_tolerance_around_the_groups_own_best():
    from redheart.crossover.soups import swad_window

    values = {2: 2.0, 4: 1.04, 6: 1.0, 8: 1.03, 10: 1.2, 12: 1.01}
    assert swad_window(values, "min", [2, 4, 6, 8, 10, 12], 0.05) == [4, 6, 8]  # 12 is close but not contiguous
    assert swad_window(values, "min", [2, 4, 6, 8, 10, 12], 0.01) == [6]
    assert swad_window(values, "min", [2, 4, 8, 10], 0.05) == [4, 8]  # 6 unusable: best of the rest, gap skipped
    assert swad_window({2: 0.5, 4: 0.8, 6: 0.79}, "max", [2, 4, 6], 0.05) == [4, 6]


def test_isotonic_and_platt_lower_a_planted_miscalibration_on_held_out_data():
    import json as _json

    from redheart.crossover.calibrators import apply_json, calibrate_and_compare, chosen_calibrator, fit, scores

    rng = np.random.default_rng(0)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        true_logits = rng.normal(0, 1.5, size=(n, 5))
        labels = np.array([rng.choice(5, p=np.exp(z) / np.exp(z).sum()) for z in true_logits])
        return torch.from_numpy(3.0 * true_logits), torch.from_numpy(labels)  # planted: 3x overconfident

    val_z, val_y = draw(1500)
    test_z, test_y = draw(1500)
    raw = scores(apply_json({"kind": "none"}, test_z.numpy()), test_y.numpy())
    for method in ("isotonic", "platt", "vector", "temperature"):
        params = _json.loads(_json.dumps(fit(method, val_z.numpy(), val_y.numpy())))  # survives JSON
        held_out = scores(apply_json(params, test_z.numpy()), test_y.numpy())
        assert held_out["ece"] < 0.7 * raw["ece"], (method, held_out, raw)
        assert held_out["brier"] < raw["brier"] and held_out["nll"] < raw["nll"], method
    result = calibrate_and_compare(val_z, val_y, test_z, test_y)
    assert result["chosen"] != "none" and result["test"]["none"]["ece"] == pytest.approx(raw["ece"])
    evaluation = {"calibration": {"best_single": result}, "recommendation": {"recommended": "best_single"}}
    carried = chosen_calibrator(evaluation)
    assert carried["method"] == result["chosen"] and _json.loads(_json.dumps(carried)) == carried


def test_the_paper_tables_carry_the_runs_own_counts_and_parameter_totals(tmp_path):
    from redheart.crossover.paper_tables import write_paper_tables

    report = {"counts": {"read": 7666, "quarantined": 119, "near_duplicates": 91, "kept": 7456},
              "split": {"stats": {"train": {"size": 5964, "class_fraction": {"joy": 0.14, "fear": 0.146}},
                                  "val": {"size": 746}, "test": {"size": 746}}}}
    parameters = {"modules": {"backbone": {"seed_name": "backbone", "actual": 1_234_567},
                              "heads": {"seed_name": "heads", "actual": 765_433}},
                  "groups": {"backbone": {"actual": 1_234_567}}, "total": {"actual": 2_000_000}}
    evaluation = {"data": {"test_records": 746}, "candidates": [
        {"name": "best_single", "label": "Best single (epoch 6)",
         "test": {"accuracy": 0.601, "macro_f1": 0.597, "ece": 0.07, "brier": 0.508,
                  "ci": {"accuracy": {"ci_low": 0.567, "ci_high": 0.637},
                         "macro_f1": {"ci_low": 0.565, "ci_high": 0.631}}}},
        {"name": "crossover", "label": "Parameter crossover",
         "test": {"accuracy": 0.61, "macro_f1": 0.6, "ece": 0.06, "brier": 0.5, "ci": {}}}],
        "tasks": {"bentham": {"best_single": {"test": {"records": 700, "mae": 0.21, "spearman": 0.3}},
                              "crossover": {"test": {"records": 700, "mae": 0.2, "spearman": 0.31},
                                            "vs_best_single": {"mae": {"difference": -0.01, "ci_low": -0.02,
                                                                       "ci_high": -0.004, "better_beyond_ci": True}}}}}}
    md_path, tex_path = write_paper_tables(tmp_path, tmp_path / "run", evaluation, report, parameters)
    md, tex = md_path.read_text(), tex_path.read_text()
    for text in (md, tex):
        assert "7,666" in text and "7,456" in text and "5,964" in text and "746" in text  # the data report's counts
        assert "97.3\\%" in text or "97.3%" in text                                      # kept / read
        assert "1,234,567" in text and "2,000,000" in text and "61.7" in text           # per module, total, share
        assert "Best single (epoch 6)" in text and "60.1 [56.7, 63.7]" in text           # results with CIs
        assert "-0.010 [-0.020, -0.004]*" in text and "0.200 / 0.310" in text            # per task Δ with CI
    assert tex.count("\\begin{table}") == 3 and md.count("| ---") == 0 and md.count("**") >= 3
    md_path, _ = write_paper_tables(tmp_path, tmp_path / "run", evaluation, None, None)
    assert "data_report.json not found" in md_path.read_text()
