"""`analyze(cfg)`: the pure function behind `analyze.py` (Hydra only parses the command line).

Reads the run's manifest and metrics files, analyses every module group, writes
<output>/module_metrics.json, analysis_report.md and visualizations/, and with `calibrate=` also
calibrated_thresholds.json. With `combine=true` (default) it then assembles the crossover from the
recommended epochs and evaluates it (redheart.crossover), and with `bundle=true` (default) writes the
crossover as a model bundle in <output>/model_bundle (redheart.bundle). Returns the module_metrics content (plus
the paths written and, under `crossover`, the crossover's result).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from redheart.analysis.report import render_report
from redheart.analysis.run_metrics import load_run
from redheart.analysis.settings import load_thresholds, parse_settings
from redheart.analysis.sweet_spot import check_recommendations, find_sweet_spots
from redheart.analysis.threshold_calibration import calibrate, load_accepted
from redheart.io import atomic_write_json, atomic_write_text
from redheart.run_folder import ANALYSIS_DIR

log = logging.getLogger(__name__)


def output_dir(cfg: DictConfig, run_dir: Path) -> Path:
    """`output=` or <run folder>/analysis_results (relative paths: from the current folder)."""
    return Path(cfg.output).expanduser().resolve() if cfg.get("output") else run_dir / ANALYSIS_DIR


def analyze(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    settings = parse_settings(cfg.analysis)
    source = "conf/analysis"
    if cfg.get("thresholds"):
        settings = settings.with_thresholds(load_thresholds(cfg.thresholds))
        source = str(Path(cfg.thresholds).resolve())
    run = load_run(cfg.ckpt_dir, settings.verify_sha256)
    out = output_dir(cfg, run.run_dir)
    result = find_sweet_spots(run, settings)
    result["thresholds_source"] = source
    check_recommendations(result)
    written = [atomic_write_json(out / "module_metrics.json", result),
               atomic_write_text(out / "analysis_report.md", render_report(result, plots=cfg.get("plots", True)))]
    if cfg.get("plots", True):
        from redheart.analysis.plots import write_plots  # matplotlib only when drawing

        written += write_plots(result, out / "visualizations")
    if cfg.get("calibrate"):
        accepted = load_accepted(cfg.calibrate, run)
        calibrated = calibrate(run, settings, accepted, source=str(Path(cfg.calibrate).resolve()))
        written.append(atomic_write_json(out / "calibrated_thresholds.json", calibrated))
        result["calibrated_thresholds"] = calibrated
        log.info("calibrated thresholds in %s (mean |auto - accepted| %s -> %s epochs)", written[-1],
                 calibrated["calibration"]["mean_abs_error_before"], calibrated["calibration"]["mean_abs_error_after"])
    for warning in result["warnings"]:
        log.warning("%s", warning)
    overfit = result["overfitting_epoch"]
    log.info("%d checkpoints of %s; overfitting point: %s", len(run.epochs), run.run_dir,
             overfit if overfit is not None else "none")
    for group, entry in result["groups"].items():
        log.info("  %-18s epoch %3d  confidence %4.0f%%  plateau %s%s", group, entry["recommended_epoch"],
                 100 * entry["confidence"], entry["plateau"], "  (review)" if entry["needs_review"] else "")
    log.info("wrote %s in %.2f s", ", ".join(str(p.relative_to(out)) for p in written[:2]) +
             f" and {len(written) - 2} more file(s) to {out}", time.perf_counter() - start)
    result["written"] = [str(p) for p in written]
    if cfg.get("combine", True):  # then: crossover, evaluation, final report (docs/crossover.md)
        from redheart.crossover.run import crossover_and_evaluate

        result["crossover"] = crossover_and_evaluate(cfg.crossover, cfg.get("evaluation"), run.run_dir, result, out)
        if cfg.get("bundle", True) and "evaluation" in result["crossover"]:
            # the crossover, ready for predict.py and evaluate.py
            from redheart.bundle.export import export_bundle

            bundle = export_bundle(run.run_dir, "crossover", out / "model_bundle", analysis_dir=out)
            result["crossover"]["bundle"] = str(bundle)
    return result
