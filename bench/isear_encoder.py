"""ISEAR: frozen vectors vs the fine-tuned encoder inside the project's model vs plain fine-tuning.

    python bench/isear_encoder.py [--quick] [--out DIR] [--reuse] [--epochs N (default 4)]
        [--variants frozen,finetune,frozen_tokens,plain_finetune,plain_finetune_hi (the default),finetune_lo]
    python bench/isear_encoder.py --ensemble-seeds 42,7,11 --variants finetune,plain_finetune_hi [--reuse]

Same data pipeline and split as `python train.py experiment=isear` (conf/data/isear.yaml, seed 42).
Variants (each in its own child process, so its wall time and peak RSS are its own):
- frozen: the `small` preset on cached all-MiniLM-L6-v2 vectors (today's default), `--frozen-epochs`;
- finetune: the `small` preset with MiniLM inside (encoder=finetune: LLRD, one-cycle), the config's
  encoder LR 1.2e-4 / decay 0.9; with `finetune_lo` (8e-5 / 0.85, opt-in: 25 more minutes) in
  --variants, `finetune` is whichever of the two has the higher val accuracy;
- frozen_tokens: the same model with the encoder held frozen for every epoch: what a cache of token
  states (computed once) would train on. It runs the encoder's forward pass each step; the JSON gives
  that pass's cost (`encoder_forward_pass_s`) so the cached variant's cost can be read off;
- plain_finetune: MiniLM, mean pooling, one linear layer; AdamW, head LR 1e-3, one-cycle (torch
  OneCycleLR, 10% warm-up), batch 32, label smoothing 0.1, same split and epochs; encoder LR chosen
  on val between 5e-5 (`plain_finetune_default`) and 1e-4 (`plain_finetune_hi`).
Every variant is scored on val and test after each epoch; the epoch with the best val accuracy is
kept (chosen on val, never on test). The logistic regression is crossover/baseline.py on the frozen
vectors. CIs: 95% percentile bootstrap (crossover/bootstrap.py); deltas are paired on the test records.
The best candidate is the variant with the highest val accuracy. `--ensemble-seeds`: each of --variants
trained once per seed (same split), the seed ensemble averages their class probabilities (members chosen
on val as above, nothing on test) → isear_encoder_seeds.json, the single runs beside each ensemble; the
plain recipe's ensemble of the same seeds is the comparison. `--quick`: tiny preset, 300 records,
1 epoch, max_length 32, to check the script in well under a minute. Writes <out>/isear_encoder.json
(quick: isear_encoder_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from redheart.io import atomic_write_json  # noqa: E402

ISEAR = (ROOT / ".." / "shared" / "data" / "isear" / "isear.csv").resolve()
VARIANTS = ("frozen", "finetune", "finetune_lo", "frozen_tokens", "plain_finetune", "plain_finetune_hi")
DEFAULT_VARIANTS = tuple(v for v in VARIANTS if v != "finetune_lo")  # finetune_lo lost on val at 3 epochs
# Second candidates: `finetune` / `plain_finetune` in the JSON are then whichever of the config default
# and its candidates has the higher val accuracy (chosen on val, never on test).
CANDIDATES = {"finetune_lo": ["optim.encoder.lr=8e-5", "optim.encoder.layer_decay=0.85"],
              "frozen_tokens": ["optim.encoder.freeze_epochs=1000"]}
PLAIN_ENCODER_LR = {"plain_finetune": 5e-5, "plain_finetune_hi": 1e-4}
CHOICES = {"finetune": ["finetune_lo"], "plain_finetune": ["plain_finetune_hi"]}


def compose(args: argparse.Namespace, variant: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    os.environ.setdefault("REDHEART_ROOT", str(ROOT))
    overrides = ["experiment=isear" if variant == "frozen" else "experiment=isear_finetune",
                 f"model={'tiny' if args.quick else 'small'}", f"data.path={args.data}", "logger=none",
                 "callbacks=none", f"seed={args.seed}", "data.split.seed=42"]  # --seed: training only, same split
    overrides += CANDIDATES.get(variant, [])
    if args.quick:
        overrides += ["data.max_samples=300", "data.split.on_leakage=warn"]
        if variant != "frozen":
            overrides += ["data.tokens.max_length=32"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(args.work / "run")
        cfg.data.report_dir = None
        cfg.data.progress = False
    return cfg


def predict(net, loader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted classes, labels and class probabilities (kept so that seeds can be ensembled)."""
    import torch

    from redheart.model.net import net_inputs

    net.eval()
    probs, labels = [], []
    with torch.no_grad():
        for batch in loader:
            probs.append(net(**net_inputs(batch))["final"]["emotion"].float().softmax(1))
            labels.append(batch["label"])
    net.train()
    prob = torch.cat(probs).numpy()
    return prob.argmax(1), torch.cat(labels).numpy(), prob


def scored_epoch(epoch: int, net, dm) -> dict:
    """One epoch's val and test predictions (classes and probabilities) and its val accuracy."""
    val, val_y, val_prob = predict(net, dm.val_dataloader())
    test, test_y, test_prob = predict(net, dm.test_dataloader())
    return {"epoch": epoch, "val_acc": float((val == val_y).mean()), "val": val, "val_labels": val_y,
            "val_prob": val_prob, "test": test, "test_labels": test_y, "test_prob": test_prob}


def encoder_pass_seconds(encoder, loader) -> float:
    """Seconds of one no-grad forward pass of the encoder over the training set (eval mode)."""
    import torch

    encoder.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for batch in loader:
            encoder(batch["input_ids"], batch["attention_mask"])
    encoder.train()
    return round(time.perf_counter() - start, 3)


def run_project_model(args: argparse.Namespace, variant: str) -> dict:
    """The project's model (small preset) trained by Lightning; scored on val and test after every epoch."""
    import hydra
    import lightning as L

    from redheart.train import model_arguments
    from redheart.training.lit_module import RedHeartLitModule

    cfg = compose(args, variant)
    L.seed_everything(cfg.seed, workers=True)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    epochs = 1 if args.quick else (args.frozen_epochs if variant == "frozen" else args.epochs)
    L.seed_everything(cfg.seed, workers=True)
    model = RedHeartLitModule(**model_arguments(cfg, dm.embedding_dim, dm.schema))
    history: list[dict] = []
    steps: list[float] = []

    class Score(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            steps.append(time.perf_counter() - self.t0)

        def on_train_epoch_end(self, trainer, pl_module):
            history.append(scored_epoch(trainer.current_epoch + 1, pl_module.net, dm))
            print(f"[{variant}] epoch {trainer.current_epoch + 1}: val acc {history[-1]['val_acc']:.4f}", flush=True)

    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        callbacks=[Score()], limit_val_batches=0, num_sanity_val_steps=0, gradient_clip_val=1.0,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    extra = {"train_records": len(dm.datasets["train"]), "batch_size": dm.batch_size, "epochs": epochs,
             "step_s_mean": float(np.mean(steps[1:] or steps)), "step_s_median": float(np.median(steps)),
             "steps": len(steps), "parameters": sum(p.numel() for p in model.net.parameters()),
             "config": {"model": "tiny" if args.quick else "small", "optim": dict(model_arguments(
                 cfg, dm.embedding_dim, dm.schema).get("encoder_optim") or {}), "lr": float(cfg.optim.lr),
                 "tokens": dict(cfg.data.get("tokens") or {})}}
    if variant == "frozen_tokens":  # the pass a token-state cache would make once instead of every epoch
        extra["encoder_forward_pass_s"] = encoder_pass_seconds(model.net.encoder, dm.train_dataloader())
    if variant == "frozen":  # the logistic baseline reads the same frozen vectors and split
        from redheart.crossover.baseline import fit_logistic_regression

        fit = fit_logistic_regression(dm.datasets, len(dm.schema.class_names))
        extra["logistic"] = {"C": fit.C, "val": fit.log_probs["val"].argmax(1).numpy(),
                             "test": fit.log_probs["test"].argmax(1).numpy()}
    return {"history": history, **extra}


def run_plain_finetune(args: argparse.Namespace, variant: str) -> dict:
    """MiniLM + mean pooling + one linear layer, the reference recipe, on the same loaders and split."""
    import hydra
    import lightning as L
    import torch
    from torch import nn

    from redheart.model.encoder import SentenceEncoder

    cfg = compose(args, variant)
    L.seed_everything(cfg.seed, workers=True)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    L.seed_everything(cfg.seed, workers=True)
    encoder = SentenceEncoder(cfg.data.tokens.model, out_dim=1, normalize=False)
    encoder.project = nn.Identity()  # only the pretrained transformer; the head below is the one linear layer
    head = nn.Linear(encoder.hidden, len(dm.schema.class_names))
    epochs = 1 if args.quick else args.epochs
    loader = dm.train_dataloader()
    total = epochs * len(loader)
    encoder_lr = PLAIN_ENCODER_LR[variant]
    groups = [{"params": list(encoder.parameters()), "lr": encoder_lr},
              {"params": list(head.parameters()), "lr": args.plain_head_lr}]
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[encoder_lr, args.plain_head_lr],
                                                   total_steps=total, pct_start=0.1)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.head = encoder, head

        def forward(self, input_ids, attention_mask):
            return {"final": {"emotion": self.head(self.encoder(input_ids, attention_mask)[0])}}

    net = Plain()
    history, steps = [], []
    for epoch in range(epochs):
        for batch in loader:
            t0 = time.perf_counter()
            logits = net(batch["input_ids"], batch["attention_mask"])["final"]["emotion"]
            loss = loss_fn(logits, batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            steps.append(time.perf_counter() - t0)
        history.append(scored_epoch(epoch + 1, net, dm))
        print(f"[{variant}] epoch {epoch + 1}: val acc {history[-1]['val_acc']:.4f}", flush=True)
    return {"history": history, "train_records": len(dm.datasets["train"]), "batch_size": dm.batch_size,
            "epochs": epochs, "step_s_mean": float(np.mean(steps[1:] or steps)), "steps": len(steps),
            "step_s_median": float(np.median(steps)), "parameters": sum(p.numel() for p in net.parameters()),
            "config": {"encoder_lr": encoder_lr, "head_lr": args.plain_head_lr, "label_smoothing": 0.1,
                       "schedule": "OneCycleLR pct_start=0.1", "pooling": "mean"}}


def child(args: argparse.Namespace) -> None:
    """One variant: train, keep the best-val epoch's predictions, write <work>/<variant>.npz and .json."""
    import torch

    torch.manual_seed(0)
    start = time.perf_counter()
    plain = args.variant in PLAIN_ENCODER_LR
    out = run_plain_finetune(args, args.variant) if plain else run_project_model(args, args.variant)
    out["overrides"] = CANDIDATES.get(args.variant, [])
    wall = time.perf_counter() - start
    history = out.pop("history")
    best = max(history, key=lambda h: h["val_acc"])
    arrays = {k: best[k] for k in ("val", "val_labels", "val_prob", "test", "test_labels", "test_prob")}
    logistic = out.pop("logistic", None)
    if logistic is not None:
        arrays |= {"logistic_val": logistic["val"], "logistic_test": logistic["test"]}
        out["logistic_C"] = logistic["C"]
    np.savez(args.work / f"{args.variant}.npz", **arrays)
    peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    summary = {"wall_s": round(wall, 1), "peak_rss_mb": peak_rss_mb,
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
               "load_at_end": [round(x, 2) for x in os.getloadavg()],
               "chosen_epoch": best["epoch"], "val_acc_per_epoch": [round(h["val_acc"], 4) for h in history], **out}
    (args.work / f"{args.variant}.json").write_text(json.dumps(summary, default=float), encoding="utf-8")


def scores(labels: np.ndarray, predicted: np.ndarray) -> dict:
    from redheart.crossover.bootstrap import metric_ci

    acc, f1 = metric_ci(labels, predicted, "accuracy"), metric_ci(labels, predicted, "macro_f1")
    return {"test_acc": round(acc["value"], 4), "test_acc_ci": [round(acc["ci_low"], 4), round(acc["ci_high"], 4)],
            "test_macro_f1": round(f1["value"], 4),
            "test_macro_f1_ci": [round(f1["ci_low"], 4), round(f1["ci_high"], 4)]}


def val_accuracy(arrays: dict) -> float:
    """Val accuracy of a variant's kept predictions (<variant>.npz)."""
    return float((arrays["val"] == arrays["val_labels"]).mean())


def delta(labels: np.ndarray, candidate: np.ndarray, baseline: np.ndarray) -> dict:
    from redheart.crossover.bootstrap import paired_difference_ci

    d = paired_difference_ci(labels, candidate, baseline, "accuracy")
    return {"value": round(d["difference"], 4), "ci": [round(d["ci_low"], 4), round(d["ci_high"], 4)],
            "excludes_zero": bool(d["better_beyond_ci"] or d["worse_beyond_ci"])}


def run_child(args: argparse.Namespace, variant: str, work: Path, seed: int) -> bool:
    """Train one variant in a child process (its wall time and peak RSS its own); reuse finished files
    when --reuse is given."""
    if args.reuse and (work / f"{variant}.npz").is_file() and (work / f"{variant}.json").is_file():
        print(f"=== {variant} (seed {seed}): reused from {work}", flush=True)
        return True
    print(f"=== {variant} (seed {seed})", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, f"--variant={variant}", f"--work={work}", f"--data={args.data}",
           f"--epochs={args.epochs}", f"--frozen-epochs={args.frozen_epochs}",
           f"--plain-head-lr={args.plain_head_lr}", f"--seed={seed}", *(["--quick"] if args.quick else [])]
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        print(f"error: variant {variant} (seed {seed}) failed", file=sys.stderr)
        return False
    return True


def run_setup(args: argparse.Namespace, test_records: int, load_before: tuple, argv: list[str] | None) -> dict:
    """How a result JSON was made: split, bootstrap, machine, load, note, time and the command."""
    return {"quick": args.quick, "test_records": test_records, "split": "conf/data/isear.yaml, seed 42",
            "bootstrap": "95% percentile, 1000 resamples, paired on test records",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()], "note": args.note,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python bench/isear_encoder.py", *(sys.argv[1:] if argv is None else argv)])}


def seed_ensembles(args: argparse.Namespace, variants: list[str], seeds: list[int],
                   argv: list[str] | None = None) -> int:
    """Each variant trained once per seed (same split; each run's epoch chosen on val as usual); its
    ensemble averages the runs' class probabilities, nothing chosen on test. Writes
    isear_encoder_seeds.json: per variant the single runs and the ensemble, each ensemble against the
    logistic regression and against the plain recipe's ensemble of the same seeds (paired on test texts)."""
    if len(seeds) < 2:
        print("error: --ensemble-seeds needs at least two seeds", file=sys.stderr)
        return 2
    root = args.out / (".isear_encoder_seeds_quick" if args.quick else ".isear_encoder_seeds")
    load_before = os.getloadavg()
    runs = [(v, s) for s in seeds for v in variants] + [("frozen", seeds[0])]  # frozen: the logistic baseline
    for variant, seed in runs:
        if not run_child(args, variant, root / f"seed_{seed}", seed):
            return 2
    frozen = dict(np.load(root / f"seed_{seeds[0]}" / "frozen.npz"))
    labels, logistic = frozen["test_labels"], frozen["logistic_test"]
    members: dict[str, list[dict]] = {}
    probs: dict[str, list[np.ndarray]] = {}
    for variant in variants:
        for seed in seeds:
            arrays = dict(np.load(root / f"seed_{seed}" / f"{variant}.npz"))
            meta = json.loads((root / f"seed_{seed}" / f"{variant}.json").read_text(encoding="utf-8"))
            if not np.array_equal(arrays["test_labels"], labels) or "test_prob" not in arrays:
                print(f"error: {variant} seed {seed}: other test records, or no probabilities (rerun it)",
                      file=sys.stderr)
                return 2
            probs.setdefault(variant, []).append(arrays)
            members.setdefault(variant, []).append({
                "seed": seed, "val_acc": round(val_accuracy(arrays), 4), **scores(labels, arrays["test"]),
                "chosen_epoch": meta["chosen_epoch"], "wall_s": meta["wall_s"], "peak_rss_mb": meta["peak_rss_mb"],
                "omp_num_threads": meta.get("omp_num_threads")})
    ensembles = {}
    for variant, arrays in probs.items():
        val = np.mean([a["val_prob"] for a in arrays], axis=0).argmax(1)
        test = np.mean([a["test_prob"] for a in arrays], axis=0).argmax(1)
        ensembles[variant] = {"val_acc": round(float((val == arrays[0]["val_labels"]).mean()), 4),
                              **scores(labels, test), "delta_acc_vs_logistic_ci": delta(labels, test, logistic),
                              "test": test}
    plain = next((v for v in variants if v in PLAIN_ENCODER_LR), None)
    out: dict = {"seeds": seeds, "variants": {}, "logistic": scores(labels, logistic)}
    for variant in variants:
        row = {k: v for k, v in ensembles[variant].items() if k != "test"}
        if plain is not None:
            row["delta_acc_vs_plain_finetune_ci"] = delta(labels, ensembles[variant]["test"], ensembles[plain]["test"])
        single = [m["test_acc"] for m in members[variant]]
        out["variants"][variant] = {"ensemble": row, "single_runs": members[variant],
                                    "single_test_acc_mean": round(float(np.mean(single)), 4),
                                    "ensemble_minus_single_mean": round(row["test_acc"] - float(np.mean(single)), 4)}
    out["plain_baseline"] = plain
    out["quick"] = args.quick
    out["goal"] = {"finetune_ensemble_test_acc_ge_0.70": out["variants"].get("finetune", {}).get(
        "ensemble", {}).get("test_acc", 0) >= 0.70}
    out["setup"] = {**run_setup(args, len(labels), load_before, argv),
                    "ensemble": "mean of the runs' softmax probabilities, argmax; each run's epoch chosen on val"}
    name = "isear_encoder_seeds_quick.json" if args.quick else "isear_encoder_seeds.json"
    atomic_write_json(args.out / name, out)
    for variant, row in out["variants"].items():
        e = row["ensemble"]
        print(f"{variant:<18} ensemble of {len(seeds)}: test acc {e['test_acc']:.4f} {e['test_acc_ci']}  "
              f"single runs {[m['test_acc'] for m in row['single_runs']]}  vs plain "
              f"{e.get('delta_acc_vs_plain_finetune_ci')}")
    print(f"written {args.out / name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--data", type=Path, default=ISEAR)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--reuse", action="store_true", help="keep variants already finished in the work folder")
    parser.add_argument("--epochs", type=int, default=4, help="epoch budget of both fine-tuned variants")
    parser.add_argument("--frozen-epochs", type=int, default=8)
    parser.add_argument("--plain-head-lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42,
                        help="training seed of the fine-tuned and frozen variants (the split stays seed 42)")
    parser.add_argument("--ensemble-seeds", default="",
                        help="comma-separated training seeds: train --variants with each (same split) and write "
                             "isear_encoder_seeds.json, every variant's seed ensemble vs its single runs")
    parser.add_argument("--note", default="", help="how the children ran (threads, load), kept in setup.note")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"error: ISEAR not found at {args.data}; pass --data /path/to/isear.csv", file=sys.stderr)
        return 2
    if args.variant:
        child(args)
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        print(f"error: unknown variants {unknown}; choose from {list(VARIANTS)}", file=sys.stderr)
        return 2
    if args.ensemble_seeds:
        return seed_ensembles(args, variants, [int(x) for x in args.ensemble_seeds.split(",") if x.strip()], argv)
    if "frozen" not in variants:
        variants.insert(0, "frozen")  # it carries the logistic baseline
    work = args.out / (".isear_encoder_quick" if args.quick else ".isear_encoder")
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    for variant in variants:
        if not run_child(args, variant, work, args.seed):
            return 2
    arrays = {v: dict(np.load(work / f"{v}.npz")) for v in variants}
    meta = {v: json.loads((work / f"{v}.json").read_text(encoding="utf-8")) for v in variants}
    labels = arrays["frozen"]["test_labels"]
    for v in variants:
        if not np.array_equal(arrays[v]["test_labels"], labels):
            print(f"error: variant {v} was tested on other records than frozen", file=sys.stderr)
            return 2
    logistic = arrays["frozen"]["logistic_test"]
    out: dict = {"variants": {}, "logistic": {**scores(labels, logistic), "C": meta["frozen"].pop("logistic_C"),
                                             "val_acc": round(float((arrays["frozen"]["logistic_val"]
                                                                     == arrays["frozen"]["val_labels"]).mean()), 4)}}
    chosen = {}
    for name, others in CHOICES.items():  # the config default vs its candidates, chosen on val
        tried = [v for v in (name, *others) if v in arrays]
        if tried:
            chosen[name] = max(tried, key=lambda v: val_accuracy(arrays[v]))
    plain = arrays[chosen["plain_finetune"]]["test"] if "plain_finetune" in chosen else None
    for v in variants:
        row = {**scores(labels, arrays[v]["test"]),
               "val_acc": round(val_accuracy(arrays[v]), 4),
               "delta_acc_vs_logistic_ci": delta(labels, arrays[v]["test"], logistic), **meta[v]}
        if plain is not None:
            row["delta_acc_vs_plain_finetune_ci"] = delta(labels, arrays[v]["test"], plain)
        out["variants"][v] = row
    for name, pick in chosen.items():
        tried = [v for v in (name, *CHOICES[name]) if v in arrays]
        if len(tried) > 1:  # keep every candidate; `name` is the one chosen on val
            out["variants"][f"{name}_default"] = out["variants"].pop(name)
            label = {name: f"{name}_default"}
            out["variants"][name] = {**out["variants"][label.get(pick, pick)], "chosen": label.get(pick, pick),
                                     "chosen_on_val_from": [label.get(v, v) for v in tried]}
            variants = [*variants, f"{name}_default"]
    best = max(variants, key=lambda v: out["variants"][v]["val_acc"])
    out["best_on_val"] = best
    out["goal"] = {"test_acc_ge_0.70": out["variants"].get("finetune", {}).get("test_acc", 0) >= 0.70}
    out["quick"] = args.quick
    out["setup"] = {**run_setup(args, len(labels), load_before, argv), "training_seed": args.seed}
    name = "isear_encoder_quick.json" if args.quick else "isear_encoder.json"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / name, out)
    for v in variants:
        r = out["variants"][v]
        print(f"{v:<15} test acc {r['test_acc']:.4f} {r['test_acc_ci']}  macro-F1 {r['test_macro_f1']:.4f}  "
              f"vs logistic {r['delta_acc_vs_logistic_ci']}  wall {r['wall_s']} s  peak RSS {r['peak_rss_mb']} MB")
    print(f"logistic        test acc {out['logistic']['test_acc']:.4f} {out['logistic']['test_acc_ci']}")
    print(f"best on val: {best}; written {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
