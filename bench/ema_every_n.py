"""Does updating the EMA every n steps (decay**n per update) change what validation measures?

    python bench/ema_every_n.py [--model small] [--epochs 10] [--every 1 4 8] [--quick] [--out DIR]

The same run (seed, data=sample with its cached embeddings, default callbacks) is trained once per
`callbacks.ema.update_every_n_steps` value; validation runs on the EMA weights, so each epoch's val
loss and emotion macro-F1 (from epoch_history.json) are those of the averaged weights. Reported: the
per-epoch curves, the largest per-epoch difference from n=1, and the final values. --quick: `tiny`,
hashing embeddings, 6 epochs (CI-sized; a smoke test more than a measurement).
Output: <out>/ema_every_n.json (--quick: ema_every_n_quick.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("REDHEART_ROOT", str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import open_dict  # noqa: E402

import redheart.train as rt  # noqa: E402
from redheart.io import atomic_write_json  # noqa: E402


def fit(model: str, epochs: int, every: int, quick: bool, output_dir: Path) -> list[dict]:
    overrides = [f"model={model}", "data=sample", "logger=none", "test=false", "seed=42", "data.progress=false",
                 f"trainer.max_epochs={epochs}", "+trainer.enable_progress_bar=false",
                 f"callbacks.ema.update_every_n_steps={every}"]
    if quick:
        overrides += ["data.embedding.backend=hashing", "data.embedding.dim=64"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    rt.train(cfg)
    history = json.loads((output_dir / "epoch_history.json").read_text())["epochs"]
    return [{"epoch": r["epoch"], "val_loss": r["val_loss"], "emotion_f1": r["val"].get("emotion/f1")} for r in history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--quick", action="store_true", help="tiny, hashing embeddings, 6 epochs")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the JSON")
    args = parser.parse_args()
    if args.quick:
        args.model, args.epochs = "tiny", 6
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "redheart", "callbacks"):
        logging.getLogger(name).setLevel(logging.WARNING)
    rt.git_commit = lambda root: None
    started = time.perf_counter()
    curves = {}
    with tempfile.TemporaryDirectory(prefix="ema_every_n_") as tmp:
        for every in sorted(set(args.every) | {1}):
            curves[every] = fit(args.model, args.epochs, every, args.quick, Path(tmp) / f"n{every}")
            print(f"n={every}: final val loss {curves[every][-1]['val_loss']:.5f}, "
                  f"emotion F1 {curves[every][-1]['emotion_f1']:.4f}", flush=True)
    base = curves[1]
    summary = {}
    for every, curve in curves.items():
        summary[str(every)] = {
            "final_val_loss": curve[-1]["val_loss"], "final_emotion_f1": curve[-1]["emotion_f1"],
            "max_abs_val_loss_difference_vs_n1": max(abs(a["val_loss"] - b["val_loss"])
                                                     for a, b in zip(curve, base, strict=True)),
            "max_abs_emotion_f1_difference_vs_n1": max(abs(a["emotion_f1"] - b["emotion_f1"])
                                                       for a, b in zip(curve, base, strict=True)),
        }
    # how much val loss moves from one epoch to the next at n=1: the scale a difference is judged against
    steps = [abs(a["val_loss"] - b["val_loss"]) for a, b in zip(base[1:], base[:-1], strict=True)]
    result = {
        "command": "python bench/ema_every_n.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": args.model, "epochs": args.epochs, "quick": args.quick, "decay_per_step": 0.99,
        "summary": summary, "median_epoch_to_epoch_val_loss_change_n1": sorted(steps)[len(steps) // 2],
        "curves": {str(k): v for k, v in curves.items()}, "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out) / ("ema_every_n_quick.json" if args.quick else "ema_every_n.json")
    atomic_write_json(out, result)
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
