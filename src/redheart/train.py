"""`train(cfg)`: the pure function behind `train.py` (Hydra only parses the command line).

Data pipeline → parameter table (meta device, checked against the preset's seed figures) → model →
Lightning Trainer fit and test. Returns the metrics and writes them to `metrics.json` in the run dir.
"""

from __future__ import annotations

import logging
import math
import subprocess
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from callbacks.oom_backoff import OOMBackoff
from redheart.config_check import check_config
from redheart.data.datamodule import RedHeartDataModule
from redheart.errors import ConfigError, RedHeartError
from redheart.io import atomic_write_json
from redheart.model.summary import build_on_meta, format_table, parameter_table, verify
from redheart.run_folder import MODULAR_DIR, RUN_INFO
from redheart.schema import TaskSchema
from redheart.sweep.pruning import TRIAL_KEY, OptunaPruning
from redheart.threads import configure_threads
from redheart.training.lightning_tips import hide_lightning_tips
from redheart.training.lit_module import RedHeartLitModule

log = logging.getLogger(__name__)
hide_lightning_tips()


def describe_batch(batch: dict) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in batch.items()}


def model_arguments(cfg: DictConfig, input_dim: int, schema: TaskSchema) -> dict[str, Any]:
    """Plain keyword arguments of the LightningModule, the net sized to the data (embedding dim, tasks)."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("_target_", None)
    model["net"].update(input_dim=input_dim, num_classes=len(schema.class_names),
                        num_bentham=len(schema.bentham_names), num_surd=len(schema.surd_names))
    model["optimizer"] = OmegaConf.to_container(cfg.optim.optimizer, resolve=True)
    scheduler = cfg.optim.get("scheduler")
    model["scheduler"] = OmegaConf.to_container(scheduler, resolve=True) if scheduler else None
    if cfg.optim.get("encoder") is not None:  # the fine-tuned encoder's LR, layer decay, frozen epochs
        model["encoder_optim"] = OmegaConf.to_container(cfg.optim.encoder, resolve=True)
    return model


def check_parameters(model_args: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """Count the configured net on the meta device, save parameters.json, stop if off the preset's targets."""
    table = parameter_table(build_on_meta(model_args["net"]), model_args.get("param_targets"))
    atomic_write_json(output_dir / "parameters.json", table)
    log.info("parameters (also in %s):\n%s", output_dir / "parameters.json", format_table(table))
    verify(table)
    return table


class ResumeError(RedHeartError, ValueError):
    """A fresh run would reuse another run's folder, or there is nothing to resume."""


def resume_checkpoint(ckpt_path: str | None, output_dir: Path) -> str | None:
    """The checkpoint to resume from; a fresh run in a folder that already holds a run is refused.

    Lightning would otherwise start "fresh" next to another run's checkpoints (and a callback such as
    OnExceptionCheckpoint can make a plain fit pick up stale state); here a fresh run needs a clean folder.
    """
    existing = [p for p in (output_dir / "checkpoints", output_dir / MODULAR_DIR) if p.is_dir() and any(p.iterdir())]
    if ckpt_path is None:
        if existing:
            raise ResumeError(f"{output_dir} already holds a run ({', '.join(p.name for p in existing)}): resume it "
                              "with ckpt_path=last, or start a new run with another run_name")
        return None
    if ckpt_path == "last":
        last = output_dir / "checkpoints" / "last.ckpt"
        # Files under a .ckpt name are whole (AtomicCheckpointIO renames only complete ones), so the newest is
        # the latest state. After saving resume-epoch=N.ckpt, Lightning (on the writer thread) removes N-1 and
        # relinks last.ckpt: a kill in between leaves last.ckpt missing, dangling, or still on N-1 while N is
        # whole (tests/test_kill_resume.py kills there). Either way the link is finished here, as Lightning
        # would have, and the superseded N-1 removed: resuming from the file itself, or leaving N-1, would make
        # Lightning keep a stale checkpoint forever.
        saved = [p for p in (output_dir / "checkpoints").glob("*.ckpt") if p.is_file() and not p.is_symlink()]
        if saved:
            newest = max(saved, key=lambda p: (p.stat().st_mtime_ns, p.name))
            if last.exists() and last.resolve() == newest.resolve():
                return str(last)
            stale = last.resolve() if last.is_symlink() and last.exists() else None
            log.warning("ckpt_path=last: %s is %s (killed while Lightning relinked it); linking it to %s",
                        last, f"on the older {stale.name}" if stale else "missing", newest.name)
            tmp = last.with_name(f".{last.name}.relink.tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(newest.name)
            tmp.replace(last)  # atomic, over a dangling link too
            if stale is not None:
                stale.unlink(missing_ok=True)
            return str(last)
        if not (output_dir / RUN_INFO).is_file():
            raise ResumeError(f"ckpt_path=last, but there is no run in {output_dir}: pass the run's run_name (its "
                              "folder name under outputs/<task_name>/runs/) or a checkpoint path")
        log.warning("ckpt_path=last: %s started but saved no resume checkpoint yet; starting it again", output_dir)
        return None
    if not Path(ckpt_path).exists():
        raise ResumeError(f"ckpt_path {ckpt_path} does not exist")
    return ckpt_path


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None


def lr_sources(cfg: DictConfig) -> dict[str, Any]:
    """The unresolved LR settings a sweep can choose: optim.lr and, with a fine-tuned encoder, optim.encoder.lr."""
    optim = OmegaConf.to_container(cfg.optim, resolve=False)
    encoder = optim.get("encoder") if isinstance(optim.get("encoder"), dict) else {}
    found = {"optim.lr": optim.get("lr"), "optim.encoder.lr": encoder.get("lr")}
    return {key: value for key, value in found.items() if value is not None}


def describe_run(cfg: DictConfig, output_dir: Path, parameters: dict[str, Any]) -> None:
    """run.json: what produced this folder (resolved config, git commit, parameter table)."""
    sources = lr_sources(cfg)  # numbers, or ${optimal_lr:<sweep>} (the final report links that sweep)
    atomic_write_json(output_dir / RUN_INFO, {
        "config": OmegaConf.to_container(cfg, resolve=True), "git_commit": git_commit(Path(cfg.paths.root_dir)),
        "lr_source": sources.get("optim.lr"), "lr_sources": sources,
        "cwd": str(Path.cwd()),
        "torch": torch.__version__, "lightning": L.__version__, "parameters": parameters,
    })


def build_trainer(cfg: DictConfig, **overrides: Any) -> L.Trainer:
    loggers = _instantiate_all(cfg.get("logger"))
    callbacks = _instantiate_all(cfg.get("callbacks"))
    pruning = OptunaPruning.from_config(cfg.get(TRIAL_KEY), cfg.get("optimized_metric"))
    if pruning is not None:  # a trial of the Optuna sweeper: report each epoch, stop when pruned
        callbacks.append(pruning)
    if not loggers:  # LearningRateMonitor refuses a Trainer without a logger; it has nothing to write to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if cfg.trainer.get("enable_checkpointing") is None and "enable_checkpointing" not in overrides:
        # Checkpoints come from the configured callbacks only: without one (callbacks=sweep, callbacks=none)
        # Lightning would add its default ModelCheckpoint, a full checkpoint per job in the logger's folder.
        overrides["enable_checkpointing"] = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)


def fit_with_oom_backoff(cfg: DictConfig, trainer: L.Trainer, model: RedHeartLitModule,
                         datamodule: RedHeartDataModule, ckpt_path: str | None) -> L.Trainer:
    """trainer.fit; on CUDA OOM, OOMBackoff's halved micro-batch and doubled accumulation, from the last checkpoint."""
    while True:
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
            return trainer
        except torch.cuda.OutOfMemoryError:
            backoff = next((c for c in trainer.callbacks if isinstance(c, OOMBackoff)), None)
            if backoff is None or backoff.pending is None:
                raise
            settings = backoff.pending
            log.warning("CUDA out of memory: continuing with micro-batch %d x accumulation %d (was %d x %d)",
                        settings["batch_size"], settings["accumulate_grad_batches"], datamodule.batch_size,
                        trainer.accumulate_grad_batches)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            datamodule.batch_size = settings["batch_size"]
            last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
            ckpt_path = str(last) if last.exists() else None
            if ckpt_path is None:  # nothing saved yet: start again from the same initial weights
                L.seed_everything(cfg.seed, workers=True)
                model = RedHeartLitModule(**model.hparams)
            trainer = build_trainer(cfg, accumulate_grad_batches=settings["accumulate_grad_batches"])


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        if math.isfinite(value):
            out[name] = value
    return dict(sorted(out.items()))


def optimized_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The fit metric a sweeper optimises (`optimized_metric`), e.g. val/loss; None when not set."""
    if not name:
        return None
    fit = metrics.get("fit", {})
    if name not in fit:
        raise KeyError(f"optimized_metric={name!r} is not among the fit metrics: {sorted(fit)}")
    return fit[name]


def check_resolvable(cfg: DictConfig) -> None:
    """Resolve every interpolation up front, so a bad one (an LR sweep without optimal_lr.json) stops the run
    before any work, as a ConfigError naming it, rather than partway through."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as err:
        raise ConfigError(f"{type(err).__name__}: {err}") from None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured pipeline; return its metrics (data counts, parameters, fit and test metrics)."""
    check_resolvable(cfg)
    check_config(cfg)  # a wrong override fails here, in seconds, before any data or weights
    threads = configure_threads(cfg.get("threads"), HydraConfig.get() if HydraConfig.initialized() else None)
    L.seed_everything(cfg.seed, workers=True)
    trainer: L.Trainer | None = None
    output_dir = Path(cfg.paths.output_dir)
    # `~model` with encoder=finetune still leaves model.net.encoder behind: a model needs its _target_
    if cfg.get("model") is not None and "_target_" in cfg.model:
        ckpt_path = resume_checkpoint(cfg.get("ckpt_path"), output_dir)
        trainer = build_trainer(cfg)  # early, so a missing strategy package (DeepSpeed) fails in seconds
    datamodule: RedHeartDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    report = datamodule.prepared.report
    first = next(iter(datamodule.train_dataloader()))
    metrics: dict[str, Any] = {
        "counts": report["counts"],
        "split_sizes": {name: len(ds) for name, ds in datamodule.datasets.items()},
        "embedding_dim": datamodule.embedding_dim,
        "first_batch": describe_batch(first),
        "threads": threads,
    }
    counts = report["counts"]
    log.info(
        "data ready: read %d = kept %d + near-duplicates %d + quarantined %d; train/val/test %s; first batch %s",
        counts["read"], counts["kept"], counts["near_duplicates"], counts["quarantined"],
        metrics["split_sizes"], metrics["first_batch"].get("input_ids", metrics["first_batch"]["embedding"]),
    )
    if trainer is None:
        log.info("no model configured: stopping after the data pipeline (report in %s)", datamodule.report_dir)
        return metrics

    model_args = model_arguments(cfg, datamodule.embedding_dim, datamodule.schema)
    table = check_parameters(model_args, output_dir)
    metrics["parameters"] = table["total"]["actual"]
    describe_run(cfg, output_dir, table)
    L.seed_everything(cfg.seed, workers=True)  # same initial weights whatever the data stage consumed
    model = RedHeartLitModule(**model_args)
    trainer = fit_with_oom_backoff(cfg, trainer, model, datamodule, ckpt_path)
    model = trainer.lightning_module
    pruning = next((c for c in trainer.callbacks if isinstance(c, OptunaPruning)), None)
    if pruning is not None and pruning.pruned_error() is not None:
        log.info("%s", pruning.pruned_error())
        raise pruning.pruned_error()  # the sweeper records a pruned trial; its partial metrics mean nothing
    metrics["fit"] = _scalars(trainer.callback_metrics)
    metrics["epochs"], metrics["steps"] = trainer.current_epoch, trainer.global_step
    if cfg.get("test", True) and not trainer.interrupted:
        trainer.test(model, datamodule=datamodule, verbose=False)
        metrics["test"] = {k: v for k, v in _scalars(trainer.callback_metrics).items() if k.startswith("test/")}
        metrics["test_confusion"] = model.confusion.get("test")
    atomic_write_json(output_dir / "metrics.json", metrics)
    log.info("metrics in %s", output_dir / "metrics.json")
    return metrics
