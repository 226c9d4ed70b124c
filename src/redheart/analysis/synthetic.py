"""Synthetic run folders with planted features, for the tests and the speed bench.

A folder looks like a real run's: `modular/manifest.json` (the callbacks' format, with a weight-file
entry per group and epoch) and `modular/metrics_epoch_EEE.json`, but the weight files are never
written (or are junk): the analysis must not need them. Each group's validation loss falls linearly
until `plateau[0]`, stays flat (a shallow bowl centred on the plateau, plus small noise) up to
`plateau[1]`, and rises after it; task metrics peak at the plateau centre; the update ratio is lowest
there and the gradient norm steadiest; the train–val gap starts rising after `overfit`.
`Plan.groups` plants a different sweet spot per group: each group's own signals (its validation loss,
its modules' task metrics, its gradient and update statistics) follow its own plateau. The backbone's
validation loss is the whole `val/loss`; the phase group's are the final outputs (`val/loss/final/*`,
`val/<task>` metrics and the confusion matrix).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from redheart.io import atomic_write_text
from redheart.model.summary import config_dir
from redheart.run_folder import MANIFEST, MODULAR_DIR, group_file, metrics_file, new_manifest

# the training's own module groups (conf/module_groups), so a synthetic run has the groups a real one has
GROUPS: dict[str, list[str]] = OmegaConf.to_container(OmegaConf.load(config_dir() / "module_groups" / "default.yaml"))
MODULE_TASKS = {
    "heads.emotion": ("emotion", "intensity"), "heads.bentham": ("bentham",), "heads.regret": ("regret",),
    "heads.surd": ("surd",), "analyzers.neural_emotion": ("emotion",), "analyzers.neural_bentham": ("bentham",),
    "analyzers.neural_regret": ("regret",), "analyzers.neural_surd": ("surd",),
    "analyzers.advanced_emotion": ("emotion",), "analyzers.advanced_regret": ("regret",),
    "analyzers.advanced_bentham": ("bentham",), "analyzers.advanced_surd": ("surd",),
    "analyzers.dsp": ("emotion",), "analyzers.kalman": ("emotion",),
}
# bytes per group file of the full preset (raw + EMA, fp32): what a real manifest would list
FULL_BYTES = {"backbone": 725_000_000, "heads": 1_224_000_000, "neural_analyzers": 2_944_000_000,
              "dsp_kalman": 130_000_000, "advanced_emotion": 224_000_000, "advanced_regret": 224_000_000,
              "advanced_bentham": 224_000_000, "advanced_surd": 224_000_000, "phase": 8_000_000}


@dataclass
class Plan:
    """What to plant. Epochs are checkpoint epochs (every 2)."""

    epochs: list[int] = field(default_factory=lambda: list(range(2, 62, 2)))
    plateau: tuple[int, int] = (24, 40)
    overfit: int | None = 40
    noise: float = 0.002                 # relative noise of the validation losses
    nan: dict[int, str] = field(default_factory=dict)        # epoch -> metric reference made NaN
    spike: dict[str, int] = field(default_factory=dict)      # group -> epoch with a gradient spike
    confusion: bool = True
    task_peak: float | None = None       # epoch where the task metrics peak (None: the plateau centre)
    seed: int = 0
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)  # group -> its own plateau (default: plateau)

    def of(self, group: str) -> Plan:
        """The plan of one group: its own plateau when `groups` names one."""
        return replace(self, plateau=self.groups[group], task_peak=None) if group in self.groups else self

    @property
    def centre(self) -> float:
        return (self.plateau[0] + self.plateau[1]) / 2


def loss_curve(epochs: np.ndarray, plan: Plan, level: float, rng: np.random.Generator) -> np.ndarray:
    """Falls linearly to the plateau, a shallow bowl on it, rises after it; relative noise."""
    p0, p1 = plan.plateau
    drop = np.clip((p0 - epochs) / max(1, p0 - epochs[0]), 0, None) * 0.6
    bowl = 0.002 * ((epochs - plan.centre) / max(1.0, (p1 - p0) / 2)) ** 2 * ((epochs >= p0) & (epochs <= p1))
    rise = np.clip(epochs - p1, 0, None) * 0.015
    return level * (1 + drop + bowl + rise) * (1 + plan.noise * rng.standard_normal(len(epochs)))


def peak(epochs: np.ndarray, plan: Plan, best: float, width: float, rng: np.random.Generator) -> np.ndarray:
    """A metric that is best (= `best`) at `plan.task_peak` (the plateau centre), worse away from it."""
    top = plan.centre if plan.task_peak is None else plan.task_peak
    return best - width * ((epochs - top) / 30.0) ** 2 + 0.001 * rng.standard_normal(len(epochs))


def group_of(module: str) -> str:
    """The group owning a module path (`heads.emotion` -> heads): the longest matching prefix."""
    owners = [(len(p), g) for g, prefixes in GROUPS.items() for p in prefixes
              if module == p or module.startswith(p + ".")]
    return max(owners)[1]


def epoch_records(plan: Plan) -> list[dict]:
    rng = np.random.default_rng(plan.seed)
    e = np.asarray(plan.epochs, dtype=float)
    whole, final_plan = plan.of("backbone"), plan.of("phase")
    val_loss = loss_curve(e, whole, 1.0, rng)
    gap = -0.05 - 0.0005 * (e - e[0]) / 2
    if plan.overfit is not None:
        gap = gap + np.clip(e - plan.overfit, 0, None) * 0.01
    train_loss = val_loss - gap
    module_loss = {p: loss_curve(e, plan.of(group_of(p)), 0.05 if t[0] != "emotion" else 1.2, rng)
                   for p, t in MODULE_TASKS.items()}
    final = {t: loss_curve(e, final_plan, 0.05 if t != "emotion" else 1.0, rng)
             for t in ("emotion", "intensity", "bentham", "regret", "surd")}
    fp = final_plan
    task = {"emotion/f1": peak(e, fp, 0.85, 0.3, rng), "emotion/acc": peak(e, fp, 0.86, 0.3, rng),
            "emotion/ece": -peak(e, fp, -0.03, -0.05, rng), "bentham/pearson": peak(e, fp, 0.6, 0.3, rng)}
    task |= {k: 0.3 - peak(e, fp, 0.2, 0.1, rng) for k in ("intensity/mae", "bentham/rmse", "regret/mae", "surd/mae")}
    modules = {p: {} for p in MODULE_TASKS}
    for p, tasks in MODULE_TASKS.items():
        own = plan.of(group_of(p))
        for t in tasks:
            if t == "emotion":
                modules[p]["emotion_acc"] = peak(e, own, 0.8, 0.3, rng)
                modules[p]["emotion_f1"] = peak(e, own, 0.8, 0.3, rng)
            else:
                modules[p][f"{t}_{'rmse' if t == 'bentham' else 'mae'}"] = 0.3 - peak(e, own, 0.2, 0.1, rng)
    update = {g: 2e-3 * (1 + ((e - plan.of(g).centre) / 12.0) ** 2) for g in GROUPS}
    records = []
    for i, epoch in enumerate(plan.epochs):
        val = {"loss": val_loss[i], **{f"loss/final/{t}": v[i] for t, v in final.items()},
               **{f"loss/module/{p}": v[i] for p, v in module_loss.items()}, **{k: v[i] for k, v in task.items()},
               "f1": task["emotion/f1"][i]}
        groups = {}
        for g in GROUPS:
            mean = 0.5 * (1 + 0.3 * abs(epoch - plan.of(g).centre) / 30) * (1 + 0.001 * rng.standard_normal())
            groups[g] = {"grad_norm_mean": mean, "grad_norm_max": mean * (60 if plan.spike.get(g) == epoch else 2),
                         "grad_steps": 40, "update_ratio": float(update[g][i]), "param_norm": 20.0 + 0.1 * i,
                         "dead_unit_fraction": 0.1}
        record = {"epoch": epoch, "global_step": 20 * epoch, "lr": [1e-4, 1e-4], "train_loss": train_loss[i],
                  "val_loss": val_loss[i], "val": val,
                  "modules": {p: {k: v[i] for k, v in m.items()} for p, m in modules.items()},
                  "groups": groups, "ema": True, "weights_evaluated": "ema", "wall_time_s": 2.0,
                  "elapsed_s": 1.0 * epoch, "peak_rss_bytes": 10**9, "gpu_max_allocated_bytes": None}
        if plan.confusion:
            k = 7
            off = 0.05 + 0.2 * abs(epoch - final_plan.centre) / 30 + 0.01 * rng.random()
            record["val_confusion"] = np.rint(100 * ((1 - off) * np.eye(k) + off / k)).astype(int).tolist()
        if epoch in plan.nan:
            _set(record, plan.nan[epoch], float("nan"))
        records.append(record)
    return records


def _set(record: dict, ref: str, value: float) -> None:
    section, _, rest = ref.partition("/")
    if not rest:
        record[section] = value
    elif section == "val":
        record["val"][rest] = value
    else:
        owner, _, key = rest.rpartition("/")
        record[section][owner][key] = value


def write_run(folder: str | Path, plan: Plan | None = None, full_preset: bool = True,
              junk_weights: bool = False) -> Path:
    """A run folder at `folder` (its modular/ holds the manifest and metrics files); returns it."""
    plan = plan or Plan()
    modular = Path(folder) / MODULAR_DIR
    checkpoints = []
    for record in epoch_records(plan):
        epoch = record["epoch"]
        text = json.dumps(record, indent=2, allow_nan=True) + "\n"  # NaN on purpose where planted
        name = metrics_file(modular, epoch).name
        atomic_write_text(modular / name, text)
        files = {}
        for g in GROUPS:
            path = group_file(modular, epoch, g).relative_to(modular).as_posix()
            if junk_weights:
                atomic_write_text(modular / path, "not a safetensors file\n")
            files[g] = {"path": path, "bytes": FULL_BYTES[g] if full_preset else 1000, "sha256": "0" * 64,
                        "tensors": 10}
        checkpoints.append({"epoch": epoch, "files": files, "metrics": name,
                            "metrics_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "ema": True,
                            "dtype": "float32"})
    manifest = new_manifest(2, GROUPS) | {"checkpoints": checkpoints}
    atomic_write_text(modular / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return Path(folder)
