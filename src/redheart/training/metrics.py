"""torchmetrics for the final outputs and for every module's own prediction.

Final outputs: emotion accuracy, macro-F1, expected calibration error (15 bins, L1) and confusion
matrix; intensity, regret and SURD MAE; Bentham RMSE and Pearson r (per dimension over records with all
10 scores, then averaged). Per module (`module/<prefix>/...`): emotion accuracy and macro-F1, and the
MAE/RMSE of each regression task it predicts. Regression metrics see sigmoid(logit) of present targets
only; a metric that saw no targets in an epoch is left out rather than logged as NaN.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, PearsonCorrCoef
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)


def _regression(task: str) -> dict[str, nn.Module]:
    return {"rmse": MeanSquaredError(squared=False)} if task == "bentham" else {"mae": MeanAbsoluteError()}


class TaskMetrics(nn.Module):
    """All metrics of one stage; `update(out, batch)` each step, `compute()` then `reset()` per epoch."""

    def __init__(self, num_classes: int, num_bentham: int, module_tasks: dict[str, tuple[str, ...]] | None = None,
                 final_only: bool = False):
        super().__init__()
        self.num_classes = num_classes
        final = {
            "emotion/acc": MulticlassAccuracy(num_classes, average="micro"),
            "emotion/f1": MulticlassF1Score(num_classes, average="macro"),
        }
        if not final_only:
            final |= {
                "emotion/ece": MulticlassCalibrationError(num_classes, n_bins=15, norm="l1"),
                "intensity/mae": MeanAbsoluteError(),
                "bentham/rmse": MeanSquaredError(squared=False),
                "bentham/pearson": PearsonCorrCoef(num_outputs=num_bentham),
                "regret/mae": MeanAbsoluteError(),
                "surd/mae": MeanAbsoluteError(),
            }
            self.confusion = MulticlassConfusionMatrix(num_classes)
        self.final = nn.ModuleDict({k.replace("/", "__"): m for k, m in final.items()})
        self.modules_ = nn.ModuleDict()
        for prefix, tasks in ({} if final_only else (module_tasks or {})).items():
            metrics: dict[str, nn.Module] = {}
            for task in tasks:
                if task == "emotion":
                    metrics |= {"emotion_acc": MulticlassAccuracy(num_classes, average="micro"),
                                "emotion_f1": MulticlassF1Score(num_classes, average="macro")}
                else:
                    metrics |= {f"{task}_{name}": m for name, m in _regression(task).items()}
            self.modules_[prefix.replace(".", "__")] = nn.ModuleDict(metrics)

    @torch.no_grad()
    def update(self, out: dict, batch: dict[str, torch.Tensor]) -> None:
        label = batch["label"]
        final = out["final"]
        for key, metric in self.final.items():
            task, _ = key.split("__")
            if task == "emotion":
                metric.update(final["emotion"].float().softmax(-1) if key.endswith("ece") else final["emotion"], label)
            elif key == "bentham__pearson":
                rows = batch["bentham_mask"].all(dim=1)
                if rows.sum() >= 2:
                    metric.update(torch.sigmoid(final["bentham"][rows].float()), batch["bentham"][rows])
            else:
                self._update_regression(metric, final[task], batch[task], batch[f"{task}_mask"])
        if hasattr(self, "confusion"):
            self.confusion.update(final["emotion"], label)
        for key, metrics in self.modules_.items():
            predictions = out["modules"][key.replace("__", ".")]
            for name, metric in metrics.items():
                task = name.rsplit("_", 1)[0]
                if task == "emotion":
                    metric.update(predictions["emotion"], label)
                else:
                    self._update_regression(metric, predictions[task], batch[task], batch[f"{task}_mask"])

    @staticmethod
    def _update_regression(metric, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        if mask.any():
            metric.update(torch.sigmoid(logits.float())[mask], target[mask])

    def compute(self) -> dict[str, float]:
        """Flat {name: value} of every metric that saw data this epoch (Pearson: mean over dimensions)."""
        values: dict[str, float] = {}
        for key, metric in self.final.items():
            if metric.update_count:
                value = metric.compute()
                values[key.replace("__", "/")] = float(value.float().nanmean()) if value.numel() > 1 else float(value)
        for key, metrics in self.modules_.items():
            for name, metric in metrics.items():
                if metric.update_count:
                    values[f"module/{key.replace('__', '.')}/{name}"] = float(metric.compute())
        return {k: v for k, v in values.items() if v == v}  # NaN (e.g. constant predictions) is left out

    def confusion_matrix(self) -> list[list[int]] | None:
        if not hasattr(self, "confusion") or not self.confusion.update_count:
            return None
        return self.confusion.compute().long().tolist()

    def reset(self) -> None:
        for metric in self.final.values():
            metric.reset()
        if hasattr(self, "confusion"):
            self.confusion.reset()
        for metrics in self.modules_.values():
            for metric in metrics.values():
                metric.reset()
