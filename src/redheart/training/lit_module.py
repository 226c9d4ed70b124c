"""RedHeartLitModule: multi-task training of RedHeartNet.

Every constructor argument is a plain dict/number (`save_hyperparameters` stores them), so a checkpoint
rebuilds the module with `RedHeartLitModule.load_from_checkpoint(path)` and loads under torch's default
`weights_only=True`: nothing pickled, no code executed.
"""

from __future__ import annotations

from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric

from callbacks.gradient_norms import step_total_norm
from redheart.model.net import MODULE_TASKS, net_inputs
from redheart.safe_targets import NET, SCHEDULES, check_targets, is_torch_optimizer
from redheart.training.losses import multitask_loss, symmetric_kl
from redheart.training.metrics import TaskMetrics
from redheart.training.param_groups import parameter_groups

DEFAULT_LOSS = {"weights": {"emotion": 1.0, "intensity": 0.5, "bentham": 1.0, "regret": 0.5, "surd": 0.5},
                "label_smoothing": 0.0, "deep_supervision": 0.5}


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


class RedHeartLitModule(L.LightningModule):
    def __init__(self, net: dict, optimizer: dict, scheduler: dict | None = None, loss: dict | None = None,
                 rdrop: dict | None = None, layerwise_lr: dict | None = None, param_targets: dict | None = None,
                 encoder_optim: dict | None = None):
        super().__init__()
        net, optimizer, scheduler = _plain(net), _plain(optimizer), _plain(scheduler)
        loss = {**DEFAULT_LOSS, **(_plain(loss) or {})}
        rdrop = _plain(rdrop) or {"enabled": False, "alpha": 1.0}
        layerwise_lr = _plain(layerwise_lr) or {"enabled": False}
        # the fine-tuned encoder's LR, layer decay and how many first epochs it stays frozen
        encoder_optim = _plain(encoder_optim) or None
        for task in DEFAULT_LOSS["weights"]:
            if task not in loss["weights"]:
                raise ValueError(f"model.loss.weights has no weight for task {task!r} (got {sorted(loss['weights'])})")
        if rdrop["enabled"] and rdrop["alpha"] < 0:
            raise ValueError(f"model.rdrop.alpha must be >= 0, got {rdrop['alpha']}")
        # load_from_checkpoint passes hyperparameters read from a file: nothing but the net and torch's
        # optimizers may be built from them
        check_targets(net, "model.net", ValueError, frozenset({NET}))
        check_targets({"optimizer": optimizer, "scheduler": scheduler}, "model optimizer/scheduler", ValueError,
                      SCHEDULES, is_torch_optimizer)
        self.save_hyperparameters({"net": net, "optimizer": optimizer, "scheduler": scheduler, "loss": loss,
                                   "rdrop": rdrop, "layerwise_lr": layerwise_lr, "param_targets": _plain(param_targets),
                                   "encoder_optim": encoder_optim})
        self.net = hydra.utils.instantiate(net)
        num_classes, num_bentham = net.get("num_classes", 7), net.get("num_bentham", 10)
        self.train_metrics = TaskMetrics(num_classes, num_bentham, final_only=True)
        self.val_metrics = TaskMetrics(num_classes, num_bentham, MODULE_TASKS)
        self.test_metrics = TaskMetrics(num_classes, num_bentham, MODULE_TASKS)
        self.confusion: dict[str, list[list[int]]] = {}  # last epoch's confusion matrix per stage
        # The epoch's mean train loss, readable during validation: Lightning only aggregates the logged
        # `train/loss_epoch` after validation, so callbacks running at validation end would see the previous epoch's.
        self.epoch_train_loss = MeanMetric()
        # The last training step's loss parts (detached): what callbacks/nan_guard.py names when the loss is NaN.
        self.last_train_losses: dict[str, torch.Tensor] = {}

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip by norm with the total gradient norm GradientNormMonitor already computed at this step (one
        pass over the gradients instead of two; torch's clip_grad_norm_ up to float rounding of the total);
        without it, Lightning's own clipping."""
        total = step_total_norm(self) if gradient_clip_val and gradient_clip_algorithm in (None, "norm") else None
        if total is None:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        coef = float(gradient_clip_val) / (total + 1e-6)  # clip_grad_norm_'s coefficient
        if not coef < 1.0:  # torch multiplies by the clamped 1.0 (a no-op) too; NaN: nothing to rescue
            return
        # the optimizer's own list, as Lightning clips: walking self.parameters() visits every submodule,
        # torchmetrics' included (hashing each), and cost ~6 ms a step on the small preset
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, coef)

    def forward(self, embedding: torch.Tensor | None = None, **inputs: torch.Tensor) -> dict:
        return self.net(embedding, **inputs)

    def _loss(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.hparams.loss
        return multitask_loss(out, batch, cfg["weights"], cfg["label_smoothing"], cfg["deep_supervision"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.net(**net_inputs(batch))
        loss, parts = self._loss(out, batch)
        if self.hparams.rdrop["enabled"]:
            out_b = self.net(**net_inputs(batch))  # a second pass: different dropout masks
            loss_b, _ = self._loss(out_b, batch)
            consistency = symmetric_kl(out["final"]["emotion"], out_b["final"]["emotion"])
            loss = 0.5 * (loss + loss_b) + self.hparams.rdrop["alpha"] * consistency
            parts["rdrop_kl"] = consistency.detach()
        self.last_train_losses = parts
        size = len(batch["label"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log_dict({f"train/loss/{k}": v for k, v in parts.items()}, on_step=False, on_epoch=True, batch_size=size,
                      sync_dist=True)
        self.train_metrics.update(out, batch)
        self.epoch_train_loss.update(loss.detach(), weight=size)
        self._log_epoch(on_step=True, batch_size=size)
        return loss

    def _log_epoch(self, on_step: bool = False, batch_size: int | None = None) -> None:
        """Log `epoch` counted from 1, as the modular checkpoints, epoch_history and reports count it.

        Lightning would add its 0-based epoch index under this name to every logger write, and
        ModelCheckpoint names files with the logged value (resume-epoch=060.ckpt after the 60th epoch).
        """
        trainer = self._trainer  # None when a step runs without a Trainer (benchmarks); `self.trainer` would raise
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            self.log("epoch", float(self.current_epoch + 1), on_step=on_step, on_epoch=not on_step,
                     batch_size=batch_size)

    def on_train_epoch_start(self) -> None:
        self.epoch_train_loss.reset()
        self._hold_encoder(self.current_epoch)

    def _hold_encoder(self, epoch: int) -> None:
        """Freeze the pretrained encoder for its first `freeze_epochs` epochs (the new layers settle first).

        Frozen parameters get no gradient, so AdamW leaves them (and their moments) untouched.
        """
        encoder = getattr(self.net, "encoder", None)
        if encoder is None:
            return
        frozen = epoch < int((self.hparams.encoder_optim or {}).get("freeze_epochs", 0))
        encoder.frozen = frozen
        for param in encoder.model.parameters():
            param.requires_grad_(not frozen)

    def on_train_epoch_end(self) -> None:
        self._log_metrics("train", self.train_metrics)
        self._log_epoch()

    def _eval_step(self, stage: str, batch: dict, metrics: TaskMetrics) -> None:
        out = self.net(**net_inputs(batch))
        loss, parts = self._loss(out, batch)
        size = len(batch["label"])
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", batch_size=size, sync_dist=True)
        self.log_dict({f"{stage}/loss/{k}": v for k, v in parts.items()}, on_epoch=True, batch_size=size,
                      sync_dist=True)
        metrics.update(out, batch)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch, self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch, self.test_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)
        self._log_epoch()

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def _log_metrics(self, stage: str, metrics: TaskMetrics) -> None:
        values = metrics.compute()
        confusion = metrics.confusion_matrix()
        if confusion is not None:
            self.confusion[stage] = confusion
        metrics.reset()
        if values:
            self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=False, sync_dist=True)
        if "emotion/f1" in values and stage != "train":
            self.log(f"{stage}/f1", values["emotion/f1"], prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict:
        optimizer_factory = hydra.utils.instantiate(self.hparams.optimizer)
        base = optimizer_factory.keywords
        groups = parameter_groups(self.net, base["lr"], base.get("weight_decay", 0.0), self.hparams.layerwise_lr,
                                  self.hparams.encoder_optim)
        optimizer = optimizer_factory(groups)
        if not self.hparams.scheduler:
            return {"optimizer": optimizer}
        settings = dict(self.hparams.scheduler)
        interval = settings.pop("interval", "epoch")  # `step` for per-step schedules (one_cycle)
        if settings.get("total_steps") == "auto":
            settings["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = hydra.utils.instantiate(settings)(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
