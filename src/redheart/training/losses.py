"""Multi-task loss with masked targets and deep supervision.

Every regression target lives in [0, 1] and may be missing (mask 0); the model emits logits, so the
loss is the squared error of sigmoid(logit) over the present targets only. A batch with no present
target of a task contributes an exact zero that still belongs to the graph (so parameters keep a
defined, zero, gradient instead of None).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

REGRESSION_TASKS = ("intensity", "bentham", "regret", "surd")
TASKS = ("emotion", *REGRESSION_TASKS)


def masked_mse(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of sigmoid(logits) over the elements where `mask` is true."""
    squared = (torch.sigmoid(logits.float()) - target.float()).pow(2) * mask
    return squared.sum() / mask.sum().clamp(min=1)


def task_loss(task: str, prediction: torch.Tensor, batch: dict[str, torch.Tensor],
              label_smoothing: float) -> torch.Tensor:
    if task == "emotion":
        return F.cross_entropy(prediction.float(), batch["label"], label_smoothing=label_smoothing)
    return masked_mse(prediction, batch[task], batch[f"{task}_mask"])


def multitask_loss(out: dict, batch: dict[str, torch.Tensor], weights: dict[str, float], label_smoothing: float = 0.0,
                   deep_supervision: float = 0.5) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted final-output losses + `deep_supervision` × the mean per-module loss.

    Returns the total and its parts: `final/<task>` and `module/<prefix>` (each module's weighted
    loss over the tasks it predicts), all detached for logging.
    """
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=batch["label"].device)
    for task in TASKS:
        loss = task_loss(task, out["final"][task], batch, label_smoothing)
        parts[f"final/{task}"] = loss.detach()
        total = total + weights[task] * loss
    if deep_supervision > 0:
        module_losses = []
        for name, predictions in out["modules"].items():
            loss = sum(weights[t] * task_loss(t, p, batch, label_smoothing) for t, p in predictions.items())
            parts[f"module/{name}"] = loss.detach()
            module_losses.append(loss)
        total = total + deep_supervision * torch.stack(module_losses).mean()
    return total, parts


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """R-Drop's consistency term: ½ (KL(p‖q) + KL(q‖p)) between two dropout passes, batch mean."""
    log_p, log_q = F.log_softmax(logits_a.float(), -1), F.log_softmax(logits_b.float(), -1)
    kl_pq = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    kl_qp = F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    return 0.5 * (kl_pq + kl_qp)
