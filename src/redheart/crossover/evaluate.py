"""Predictions and metrics of one assembled model on the run's val or test split.

One model object is built once; each candidate's weights are copied into it group by group
(assemble.load_into), running statistics are recomputed when the model has any (BatchNorm), then the
split is predicted once. Metrics are the training's own definitions (redheart.training: the multitask
loss with deep supervision, torchmetrics for accuracy, macro-F1, ECE and every per-task and per-module
metric), plus the Brier score and temperature scaling (calibration.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from redheart.crossover.assemble import AssemblyPlan, load_into
from redheart.crossover.checkpoints import RunCheckpoints
from redheart.crossover.task_eval import REGRESSION_TASKS
from redheart.crossover.temperature import calibration_metrics
from redheart.model.net import MODULE_TASKS, net_inputs
from redheart.training.losses import multitask_loss
from redheart.training.metrics import TaskMetrics

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """What a split's pass yields: emotion logits and labels per record, the loss, every task metric."""

    logits: torch.Tensor  # (N, C) float32, final emotion logits
    labels: torch.Tensor  # (N,)
    loss: float | None    # the training's multitask loss, mean over records (None: not a network)
    tasks: dict[str, float] = field(default_factory=dict)
    # regression task -> (sigmoid(output), target, mask), each (N, D): the per-record final outputs
    regression: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def predicted(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)

    @property
    def accuracy(self) -> float:
        return float(multiclass_accuracy(self.logits, self.labels, self.logits.shape[1], average="micro"))

    @property
    def macro_f1(self) -> float:
        return float(multiclass_f1_score(self.logits, self.labels, self.logits.shape[1], average="macro"))


def has_running_stats(net: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in net.modules())


def recompute_running_stats(net: nn.Module, loader: Iterable[dict]) -> bool:
    """BatchNorm statistics of combined weights are not any checkpoint's: re-estimate them on train batches
    (torch's update_bn, as SWA does). Returns False, doing nothing, for models without BatchNorm."""
    if not has_running_stats(net):
        return False
    update_bn((batch["embedding"] for batch in loader), net)
    return True


class Evaluator:
    """The run's model and loaders; `predict(plan, split)` loads a candidate and runs one split."""

    def __init__(self, net: nn.Module, checkpoints: RunCheckpoints, loaders: dict[str, DataLoader],
                 loss: dict[str, Any], num_classes: int, num_bentham: int, device: torch.device,
                 recompute_stats: bool = True):
        self.net = net.to(device).eval()
        self.checkpoints = checkpoints
        self.loaders = loaders
        self.loss = loss
        self.num_classes, self.num_bentham = num_classes, num_bentham
        self.device = device
        self.recompute_stats = recompute_stats
        self._loaded: tuple | None = None
        self.running_stats_recomputed = False

    def load(self, plan: AssemblyPlan) -> None:
        key = (plan.weights, tuple(sorted((g, tuple(e)) for g, e in plan.recipe.items())))
        if key == self._loaded:
            return
        load_into(self.net, self.checkpoints, plan)
        if self.recompute_stats and has_running_stats(self.net):
            self.net.train()
            self.running_stats_recomputed = recompute_running_stats(self.net, self._on_device(self.loaders["train"]))
            self.net.eval()
        self._loaded = key

    def _on_device(self, loader: Iterable[dict]) -> Iterable[dict]:
        for batch in loader:
            yield {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def predict(self, plan: AssemblyPlan, split: str) -> Predictions:
        self.load(plan)
        self.net.eval()
        metrics = TaskMetrics(self.num_classes, self.num_bentham, MODULE_TASKS).to(self.device)
        logits, labels, total, count = [], [], 0.0, 0
        regression: dict[str, list[list[torch.Tensor]]] = {t: [[], [], []] for t in REGRESSION_TASKS}
        for batch in self._on_device(self.loaders[split]):
            out = self.net(**net_inputs(batch))
            loss, _ = multitask_loss(out, batch, self.loss["weights"], self.loss["label_smoothing"],
                                     self.loss["deep_supervision"])
            size = len(batch["label"])
            total += float(loss) * size
            count += size
            metrics.update(out, batch)
            logits.append(out["final"]["emotion"].float().cpu())
            labels.append(batch["label"].cpu())
            for task, parts in regression.items():
                if task in out["final"] and task in batch:
                    for part, value in zip(parts, (torch.sigmoid(out["final"][task].float()), batch[task].float(),
                                                   batch[f"{task}_mask"].bool()), strict=True):
                        part.append(value.reshape(size, -1).cpu())
        per_record = {t: tuple(torch.cat(p) for p in parts) for t, parts in regression.items() if parts[0]}
        return Predictions(torch.cat(logits), torch.cat(labels), total / max(count, 1), metrics.compute(), per_record)


def summarize(predictions: Predictions, temperature: float = 1.0, bins: int = 15) -> dict[str, Any]:
    """Loss, accuracy, macro-F1, calibration (before and after T) and per-task metrics of one split."""
    out = {"records": len(predictions.labels), "loss": predictions.loss, "accuracy": predictions.accuracy,
           "macro_f1": predictions.macro_f1}
    out |= calibration_metrics(predictions.logits, predictions.labels, temperature, bins)
    out["tasks"] = {k: v for k, v in predictions.tasks.items() if not k.startswith("module/")}
    out["modules"] = {k[len("module/"):]: v for k, v in predictions.tasks.items() if k.startswith("module/")}
    return out
