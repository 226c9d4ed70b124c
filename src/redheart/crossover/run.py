"""`crossover_and_evaluate(...)`: assemble the crossover, then compare it honestly with the baselines.

Called by analyze.py after the analysis stage and by combine.py. Protocol: every search (best single,
greedy soup, greedy crossover) runs on the selection half of val, every candidate is then scored on
the confirmation half (redheart.crossover.confirm), temperatures are fitted on the whole val split; the
test split is predicted only once the candidate list is fixed, and only reported. Outputs in `out_dir`:
crossover_final.safetensors, provenance.json, evaluation.json, comparison.md/.tex/.png,
checkpoint_val_curve.png, greedy_crossover.json, final_report.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from redheart.crossover.assemble import (
    AssemblyPlan,
    TensorSpec,
    expected_tensors,
    plan_assembly,
    write_assembly,
)
from redheart.crossover.candidates import Candidate, build_candidates
from redheart.crossover.checkpoints import RunCheckpoints
from redheart.crossover.choices import (
    group_windows,
    load_analysis,
    plateau_epochs,
    resolve_choices,
    resolve_weights,
    shifted,
    usable_epochs,
    validate_analysis,
)
from redheart.crossover.errors import CrossoverError
from redheart.crossover.rebuild import (
    build_net,
    datamodule_of,
    input_dim_of,
    loss_settings,
    run_config,
    schema_of,
)
from redheart.crossover.soups import SoupSelection, greedy_crossover, greedy_soup, plateau_average
from redheart.run_folder import ANALYSIS_DIR, resolve_run_dir

if TYPE_CHECKING:
    from redheart.crossover.evaluate import Evaluator, Predictions

log = logging.getLogger(__name__)
DEFAULT_OUTPUT = "crossover_final.safetensors"
SELECT, CONFIRM = "val_select", "val_confirm"   # the two halves of val (redheart.crossover.confirm)


def _plain(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def crossover_and_evaluate(crossover_cfg: Any, evaluation_cfg: Any, run_dir: Path, analysis: dict | None,
                           out_dir: Path) -> dict:
    """Assemble the crossover (+ provenance); unless `evaluation.enabled` is false, evaluate every candidate."""
    crossover, evaluation = _plain(crossover_cfg), _plain(evaluation_cfg)
    checkpoints = RunCheckpoints(run_dir)
    if analysis is not None:
        validate_analysis(analysis, checkpoints)
    choices, sources = resolve_choices(crossover, analysis, checkpoints)
    weights = resolve_weights(crossover.get("weights") or "auto", checkpoints)
    cfg = run_config(checkpoints.run_dir)
    input_dim = input_dim_of(checkpoints.run_dir, cfg)
    expected = expected_tensors(build_net(cfg, input_dim, device="meta"))
    plan = plan_assembly(checkpoints, {g: (e,) for g, e in choices.items()}, weights, expected)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / (crossover.get("output") or DEFAULT_OUTPUT)
    log.info("crossover (%s weights): %s", weights, ", ".join(f"{g}={e} ({sources[g]})" for g, e in choices.items()))
    record = write_assembly(checkpoints, plan, output, out_dir / "provenance.json",
                            extra={"choices": choices, "choice_sources": sources})
    log.info("wrote %s (%d tensors) and provenance.json", output, record["tensor_count"])
    result: dict[str, Any] = {"run_dir": str(checkpoints.run_dir), "out_dir": str(out_dir), "weights": weights,
                              "choices": choices, "choice_sources": sources, "crossover": str(output),
                              "provenance": str(out_dir / "provenance.json"), "tensor_count": record["tensor_count"]}
    if evaluation.get("enabled", True):
        result["evaluation"] = evaluate_candidates(checkpoints, cfg, input_dim, expected, choices, sources, weights,
                                                   analysis, evaluation, out_dir, output)
    return result


def combine(cfg: DictConfig) -> dict:
    """combine.py's pure function: run folder, analysis file and output folder from the config."""
    run_dir = resolve_run_dir(cfg.ckpt_dir, CrossoverError)[0]
    out_dir = Path(cfg.out_dir) if cfg.get("out_dir") else run_dir / ANALYSIS_DIR
    checkpoints = RunCheckpoints(run_dir)
    given = cfg.get("analysis_file")
    analysis_path = Path(given) if given else run_dir / ANALYSIS_DIR / "module_metrics.json"
    needed = any(cfg.crossover.get(g) is None for g in checkpoints.groups)
    analysis = load_analysis(analysis_path) if (needed or given or analysis_path.is_file()) else None
    return crossover_and_evaluate(cfg.crossover, cfg.evaluation, run_dir, analysis, out_dir)


class _Scorer:
    """Val predictions per recipe, computed once; what every selection step reads."""

    def __init__(self, evaluator: Evaluator, checkpoints: RunCheckpoints, expected: dict[str, TensorSpec],
                 selection: SoupSelection):
        self.evaluator, self.checkpoints, self.expected, self.selection = evaluator, checkpoints, expected, selection
        self.plans: dict[tuple, AssemblyPlan] = {}
        self.val: dict[tuple, Predictions] = {}
        self.calls = 0

    @staticmethod
    def key(recipe: Mapping[str, tuple[int, ...]], weights: str) -> tuple:
        return weights, tuple(sorted((g, tuple(e)) for g, e in recipe.items()))

    def plan(self, recipe: Mapping[str, tuple[int, ...]], weights: str) -> AssemblyPlan:
        key = self.key(recipe, weights)
        if key not in self.plans:
            self.plans[key] = plan_assembly(self.checkpoints, recipe, weights, self.expected)
        return self.plans[key]

    def predictions(self, recipe: Mapping[str, tuple[int, ...]], weights: str, split: str = "val") -> Predictions:
        key = (split, self.key(recipe, weights))
        if key not in self.val:
            self.val[key] = self.evaluator.predict(self.plan(recipe, weights), split)
            self.calls += 1
        return self.val[key]

    def score(self, recipe: Mapping[str, tuple[int, ...]], weights: str, split: str = SELECT) -> float:
        """The selection metric on the selection half of val (every search reads only this)."""
        return metric_value(self.predictions(recipe, weights, split), self.selection.metric)


def metric_value(predictions: Predictions, metric: str) -> float:
    if metric in ("loss", "accuracy", "macro_f1"):
        return float(getattr(predictions, metric))
    if metric in predictions.tasks:
        return float(predictions.tasks[metric])
    raise CrossoverError(f"evaluation.select.metric={metric!r}: not a metric of the evaluation (loss, accuracy, "
                         f"macro_f1, or one of {sorted(predictions.tasks)})")


def _device(name: str) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate_candidates(checkpoints: RunCheckpoints, cfg: DictConfig, input_dim: int, expected: dict[str, TensorSpec],
                        choices: dict[str, int], sources: dict[str, str], weights: str, analysis: dict | None,
                        settings: dict[str, Any], out_dir: Path, crossover_path: Path | None = None) -> dict:
    # deferred: torchmetrics, scipy, matplotlib and Lightning are not needed to assemble (bench/crossover_memory.py)
    from redheart.crossover.calibrators import calibrate_and_compare
    from redheart.crossover.confirm import gains, recommend, val_halves
    from redheart.crossover.evaluate import Evaluator, has_running_stats
    from redheart.crossover.report import write_outputs
    from redheart.crossover.temperature import fit_temperature

    started = time.monotonic()
    groups = list(checkpoints.groups)
    select = settings.get("select") or {}
    selection = SoupSelection(select.get("metric", "loss"), select.get("mode", "min"))
    boot = {"resamples": 1000, "confidence": 0.95, "seed": 0, **(settings.get("bootstrap") or {})}
    if boot["resamples"] < 1000:
        log.warning("evaluation.bootstrap.resamples=%d: the issue asks for >= 1000", boot["resamples"])
    bins = int(settings.get("calibration_bins", 15))
    notes: list[str] = []

    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    datamodule = datamodule_of(cfg, settings.get("batch_size"))
    loaders = {"train": datamodule.train_dataloader(), "val": datamodule.val_dataloader(),
               "test": datamodule.test_dataloader()}
    split_seed = int(settings.get("split_seed", 0))
    halves = val_halves(datamodule.datasets["val"].tensors["label"].numpy(), split_seed)
    for name, idx in zip((SELECT, CONFIRM), halves, strict=True):
        loaders[name] = datamodule.subset_dataloader("val", idx.tolist())
    schema = schema_of(cfg)
    net = build_net(cfg, input_dim, device="cpu")
    evaluator = Evaluator(net, checkpoints, loaders, loss_settings(cfg), len(schema.class_names),
                          len(schema.bentham_names), _device(settings.get("device", "auto")),
                          recompute_stats=bool(settings.get("recompute_running_stats", True)))
    scorer = _Scorer(evaluator, checkpoints, expected, selection)

    # --- selection, on val only -------------------------------------------------------------------
    # Whole-model candidates (single epochs, last, EMA, soups) take only checkpoints no group's analysis
    # excluded: non-finite metrics or saved after a non-finite loss (nan_event.json) are never combined.
    epochs = [e for e in checkpoints.epochs if all(e in usable_epochs(g, analysis, checkpoints) for g in groups)]
    if epochs and len(epochs) < len(checkpoints.epochs):
        notes.append(f"Checkpoint epochs {[e for e in checkpoints.epochs if e not in epochs]} are excluded by the "
                     "analysis (non-finite metrics, or saved after a non-finite loss): no candidate uses them whole.")
    epochs = epochs or list(checkpoints.epochs)
    epoch_scores = {e: scorer.score({g: (e,) for g in groups}, weights) for e in epochs}
    best_epoch = selection.best(epoch_scores)
    consistency = _consistency(epochs, checkpoints, scorer, groups, weights)
    if consistency.get("max_abs_val_loss_difference", 0.0) > 1e-3:
        notes.append(f"Val loss recomputed here differs from the training's log by up to "
                     f"{consistency['max_abs_val_loss_difference']:.4f}: the rebuilt model, data or loss is not "
                     "the run's (see evaluation.json consistency_with_training).")
        log.warning(notes[-1])
    log.info("best single by val %s: epoch %d (%.4f)", selection.metric, best_epoch, epoch_scores[best_epoch])
    window = int(settings.get("plateau_window", 4))
    plateaus = {g: plateau_epochs(g, choices[g], analysis, checkpoints, window) for g in groups}
    if analysis is None:
        notes.append(f"No analysis: each group's plateau is its crossover epoch ± {window} epochs.")
    soup_recipe = soup_trace = None
    if settings.get("greedy_soup", True):
        soup_recipe, soup_trace = greedy_soup(groups, epoch_scores, lambda r: scorer.score(r, weights), selection)
    greedy_choice = greedy_trace = None
    if settings.get("greedy_crossover", True):
        greedy_choice, greedy_trace = greedy_crossover({g: best_epoch for g in groups}, plateaus,
                                                       lambda r: scorer.score(r, weights), selection,
                                                       start_score=epoch_scores[best_epoch])
    fixed = [int(e) for e in settings.get("fixed_epochs", [30, 40, 50])]
    absent = [e for e in fixed if e not in checkpoints.epochs]
    if absent:
        notes.append(f"Fixed epochs {absent} have no checkpoint in this run (epochs {checkpoints.epochs[0]}–"
                     f"{checkpoints.epochs[-1]}): not evaluated.")
    shifts = [int(d) for d in settings.get("shifts", [-4, -2, 2, 4])]
    has_ema = all(checkpoints.ema.values())
    tolerance = float(settings.get("swad_tolerance", 0.05))
    windows = group_windows(analysis, checkpoints, tolerance)
    if windows is None:
        notes.append("No analysis with per-group validation series: the per-group SWAD average is not evaluated.")
    candidates = build_candidates(groups, epochs, weights, has_ema, best_epoch, fixed, choices,
                                  plateau_average(plateaus), soup_recipe, greedy_choice, shifts,
                                  lambda d: shifted(choices, d, analysis, checkpoints),
                                  plateau_average(windows) if windows else None)

    # --- the fixed candidate list on test (and its val numbers, already computed or cached) ------------
    first_of: dict[tuple, str] = {}
    temperatures: dict[tuple, float] = {}
    for c in candidates:  # val first, for every candidate (temperature scaling is fitted on val)
        if c.key not in first_of:
            first_of[c.key] = c.name
            val = scorer.predictions(c.recipe, c.weights)
            temperatures[c.key] = fit_temperature(val.logits, val.labels)
    # confirmation: every candidate on both halves, before the test split is touched
    halves_scores = {c.name: {"select": scorer.score(c.recipe, c.weights, SELECT),
                              "confirm": scorer.score(c.recipe, c.weights, CONFIRM)} for c in candidates}
    check = gains(halves_scores, selection.mode)
    recommendation = recommend(check)
    log.info("recommendation: %s (%s)", recommendation["recommended"], recommendation["reason"])
    selection_seconds = time.monotonic() - started
    distinct = [c for c in candidates if first_of[c.key] == c.name]
    test_cache = {c.key: evaluator.predict(scorer.plan(c.recipe, c.weights), "test") for c in distinct}
    results = [_result(c, scorer.predictions(c.recipe, c.weights), test_cache[c.key], temperatures[c.key], bins,
                       first_of[c.key]) for c in candidates]
    base_key = next(c.key for c in candidates if c.name == "best_single")
    base = test_cache[base_key]
    cis = {key: metric_cis(test, boot) for key, test in test_cache.items()}
    for c, r in zip(candidates, results, strict=True):
        r["test"]["ci"] = cis[c.key]
        if c.name != "best_single":
            r["vs_best_single"] = versus(base, test_cache[c.key], boot)
    named_tests = {c.name: test_cache[c.key] for c in candidates}
    baseline = settings.get("baseline") or {}
    if baseline.get("logistic_regression", True):
        row, named_tests["logistic_regression"] = _logistic_regression_result(datamodule, len(schema.class_names),
                                                                              baseline, base, boot, bins)
        results.append(row)
    tasks = per_task(results, named_tests, boot)
    calibration = {}
    by_name = {c.name: c for c in reversed(candidates)}  # the first of a name, as export.py reads it
    # best single, the recommended model and the crossover (the model analyze.py bundles: it carries its own)
    for name in dict.fromkeys(("best_single", recommendation["recommended"], "crossover")):
        if name not in by_name:
            continue
        c = by_name[name]
        val = scorer.predictions(c.recipe, c.weights)
        calibration[name] = calibrate_and_compare(val.logits, val.labels, test_cache[c.key].logits,
                                                  test_cache[c.key].labels, bins, log.info)
    if has_running_stats(net):
        stats = "recomputed with torch.optim.swa_utils.update_bn on the train split for every candidate"
    else:
        stats = "nothing to recompute: the model has no BatchNorm (LayerNorm only), so no running statistics"

    evaluation = {
        "run_dir": str(checkpoints.run_dir), "weights": weights, "choices": choices, "choice_sources": sources,
        "selection": {"metric": selection.metric, "mode": selection.mode, "split": "val (selection half)",
                      "split_seed": split_seed, "select_records": len(halves[0]), "confirm_records": len(halves[1])},
        "selection_check": check, "recommendation": recommendation,
        "settings": {"fixed_epochs": fixed, "shifts": shifts, "plateau_window": window, "bootstrap": boot,
                     "calibration_bins": bins, "device": str(evaluator.device),
                     "batch_size": datamodule.batch_size},
        "data": {"val_records": len(datamodule.datasets["val"]), "test_records": len(datamodule.datasets["test"])},
        "val_by_epoch": {str(e): v for e, v in epoch_scores.items()}, "best_single_epoch": best_epoch,
        "consistency_with_training": consistency,
        "plateaus": {g: list(p) for g, p in plateaus.items()},
        "swad_windows": windows, "swad_tolerance": tolerance,
        "greedy_soup": {"epochs": sorted(next(iter(soup_recipe.values()))) if soup_recipe else None,
                        "trace": soup_trace},
        "greedy_crossover": {"choices": greedy_choice, "trace": greedy_trace},
        "candidates": results, "tasks": tasks, "calibration": calibration, "running_statistics": stats,
        "notes": notes,
        "val_evaluations": scorer.calls, "seconds": {"selection": round(selection_seconds, 2),
                                                     "total": round(time.monotonic() - started, 2)},
    }
    write_outputs(evaluation, checkpoints, epoch_scores, out_dir, crossover_path or out_dir / DEFAULT_OUTPUT)
    return evaluation


def _consistency(epochs: list[int], checkpoints: RunCheckpoints, scorer: _Scorer, groups: list[str],
                 weights: str) -> dict[str, Any]:
    """This evaluation's val loss per checkpoint vs the loss the training logged for the same weights.

    A check that the model, data split and loss were rebuilt faithfully: where the training validated the
    same weights (`weights_evaluated`), the two must agree up to float summation order.
    """
    diffs = {}
    for epoch in epochs:
        logged = checkpoints.epoch_metrics(epoch) or {}
        if logged.get("weights_evaluated") == weights and isinstance(logged.get("val_loss"), int | float):
            ours = scorer.predictions({g: (epoch,) for g in groups}, weights, "val").loss
            diffs[str(epoch)] = abs(ours - float(logged["val_loss"]))
    if not diffs:
        return {"checked_epochs": 0, "note": f"the training logged no val loss for the {weights} weights"}
    return {"checked_epochs": len(diffs), "max_abs_val_loss_difference": max(diffs.values()), "per_epoch": diffs}


def per_task(results: list[dict], tests: dict[str, Predictions], boot: dict[str, Any]) -> dict[str, dict]:
    """evaluation.json's `tasks`: {task: {candidate: {"test": metrics, "vs_best_single": {metric: Δ}}}}."""
    from redheart.crossover.task_eval import TASKS, task_arrays, task_deltas, task_metrics

    arrays = {name: task_arrays(test) for name, test in tests.items()}
    metrics = {name: task_metrics(arrays[name], {"accuracy": test.accuracy, "macro_f1": test.macro_f1})
               for name, test in tests.items()}
    out: dict[str, dict] = {t: {} for t in TASKS}
    for r in results:
        name = r["name"]
        deltas = None if name == "best_single" else task_deltas(
            arrays["best_single"], arrays[name], metrics["best_single"], metrics[name], r.get("vs_best_single"), boot)
        for task, values in metrics[name].items():
            out[task][name] = {"test": values} | ({"vs_best_single": deltas.get(task, {})} if deltas is not None
                                                  else {})
    return out


def _logistic_regression_result(datamodule: Any, num_classes: int, settings: dict[str, Any], base: Predictions,
                                boot: dict[str, Any], bins: int) -> tuple[dict[str, Any], Predictions]:
    """The scikit-learn baseline on the same embeddings and split, as one more row (baseline.py)."""
    from redheart.crossover.baseline import DEFAULT_C, fit_logistic_regression
    from redheart.crossover.evaluate import Predictions, summarize
    from redheart.crossover.temperature import fit_temperature

    fit = fit_logistic_regression(datamodule.datasets, num_classes, settings.get("C") or DEFAULT_C,
                                  int(settings.get("max_iter", 2000)), int(boot["seed"]))
    if not torch.equal(fit.labels["test"], base.labels):
        raise CrossoverError("logistic-regression baseline: its test records are not the network's, in the same "
                             "order; the paired comparison would be meaningless")
    val, test = (Predictions(fit.log_probs[s], fit.labels[s], None) for s in ("val", "test"))
    temperature = fit_temperature(val.logits, val.labels)
    return {"name": "logistic_regression", "label": f"Logistic regression (C={fit.C:g})", "kind": "baseline",
            "weights": None, "recipe": {},
            "details": {"C": fit.C, "chosen_by": "val emotion log-loss",
                        "val_log_loss_by_C": {f"{c:g}": v for c, v in fit.val_log_loss.items()},
                        "converged": fit.converged,
                        "model": "sklearn StandardScaler + LogisticRegression on the run's embeddings"},
            "val": summarize(val, temperature, bins), "test": summarize(test, temperature, bins) | {
                "ci": metric_cis(test, boot)}, "vs_best_single": versus(base, test, boot)}, test


def metric_cis(test: Predictions, boot: dict[str, Any]) -> dict[str, dict]:
    """Test accuracy and macro-F1 of one candidate with their percentile bootstrap CIs."""
    from redheart.crossover.bootstrap import metric_ci

    return {m: metric_ci(test.labels.numpy(), test.predicted.numpy(), m, boot["resamples"], boot["confidence"],
                         boot["seed"]) for m in ("accuracy", "macro_f1")}


def versus(base: Predictions, test: Predictions, boot: dict[str, Any]) -> dict[str, dict]:
    """metric(candidate) − metric(best single) on test, paired bootstrap CI, for accuracy and macro-F1."""
    from redheart.crossover.bootstrap import paired_difference_ci

    return {m: paired_difference_ci(base.labels.numpy(), test.predicted.numpy(), base.predicted.numpy(), m,
                                    boot["resamples"], boot["confidence"], boot["seed"])
            for m in ("accuracy", "macro_f1")}


def _result(c: Candidate, val: Predictions, test: Predictions, temperature: float, bins: int, first: str) -> dict:
    from redheart.crossover.evaluate import summarize

    out = {"name": c.name, "label": c.label, "kind": c.kind, "weights": c.weights,
           "recipe": {g: list(e) for g, e in c.recipe.items()}, "details": c.details,
           "val": summarize(val, temperature, bins), "test": summarize(test, temperature, bins)}
    if first != c.name:
        out["same_weights_as"] = first
    return out
