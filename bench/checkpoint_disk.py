"""Disk a run's checkpoints take, per storage option, at the `full` preset's size (730M parameters).

    python bench/checkpoint_disk.py [--quick] [--out DIR] [--checkpoints 30]

No 90 GB are written: the sizes are exact arithmetic on the real model, built on the meta device from
the composed config (every tensor's shape and dtype, grouped by conf/module_groups as ModularCheckpoint
groups them), plus each safetensors file's header, computed as the library lays it out (8-byte length,
JSON of dtype/shape/offsets and metadata, padded to 8 bytes). The arithmetic is then checked against
real files: the real ModularCheckpoint writes one checkpoint of a smaller preset (`small`; `tiny` with
--quick) in every option and the predicted sizes must equal the files' sizes byte for byte.

Options (callbacks.modular_checkpoint.*): `weights` evaluated (default: the copy validation measured,
EMA when it runs) or both (raw and EMA); `dtype` float32 (default) or bfloat16. The resume checkpoint
(Lightning's, one kept: weights, EMA weights and AdamW's two moments, all fp32) is sized the same way
from the tensor bytes (pickle overhead excluded); while a new one is written the previous one still
exists, so its peak is twice that. Figures go to stdout and <out>/checkpoint_disk.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # `callbacks` package
os.environ.setdefault("REDHEART_ROOT", str(ROOT))

import torch  # noqa: E402

from callbacks.modular_checkpoint import DTYPES, FORMAT, ModularCheckpoint  # noqa: E402
from callbacks.module_groups import ModuleGroups  # noqa: E402
from redheart.io import atomic_write_json  # noqa: E402

GOAL_GB = 90.0
GB = 1e9
CODES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64", torch.float64: "F64",
         torch.int32: "I32", torch.bool: "BOOL", torch.uint8: "U8"}
OPTIONS = [("evaluated", "float32"), ("both", "float32"), ("evaluated", "bfloat16"), ("both", "bfloat16")]
LOSES = {
    ("evaluated", "float32"): "nothing the analysis or the crossover reads; the raw (non-EMA) weights are not kept",
    ("both", "float32"): "nothing: raw and EMA weights, bit-exact",
    ("evaluated", "bfloat16"): "the raw weights, and the low 16 mantissa bits of the evaluated ones (a crossover "
                               "of bf16 weights is not bit-exact to the trained model)",
    ("both", "bfloat16"): "the low 16 mantissa bits of both copies",
}


def composed(preset: str) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={preset}"])
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"  # no run folder: only the model and module groups are read
    return OmegaConf.to_container(cfg, resolve=True)


def meta_state(config: dict) -> dict[str, torch.Tensor]:
    from omegaconf import OmegaConf

    from redheart.crossover.rebuild import build_net

    return build_net(OmegaConf.create(config), 384, device="meta").state_dict()


def header_bytes(tensors: dict[str, tuple[str, list[int], int]], metadata: dict[str, str]) -> int:
    """Bytes before the data in a safetensors file: the 8-byte length and the space-padded JSON header."""
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, (code, shape, nbytes) in sorted(tensors.items(), key=lambda kv: kv[0]):
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    return 8 + len(text) + (-len(text)) % 8


def predicted_files(state: dict[str, torch.Tensor], groups: dict, weights: str, dtype: str, epoch: int,
                    ema_runs: bool = True) -> dict[str, int]:
    """{group: file bytes} of one modular checkpoint in this option (ModularCheckpoint's layout)."""
    store_dtype = DTYPES[dtype]
    copies = ["ema"] if ema_runs else ["raw"]
    if weights == "both" and ema_runs:
        copies = ["raw", "ema"]
    partition = ModuleGroups(groups).partition(state.items())
    out = {}
    for group, members in partition.items():
        tensors = {}
        for prefix in copies:
            for name, t in members.items():
                dt = store_dtype if t.dtype.is_floating_point else t.dtype
                nbytes = t.numel() * torch.empty(0, dtype=dt).element_size()
                tensors[f"{prefix}/{name}"] = (CODES[dt], list(t.shape), nbytes)
        meta = {"format": FORMAT, "epoch": str(epoch), "group": group, "dtype": dtype,
                "ema": str("ema" in copies).lower(), "raw": str("raw" in copies).lower()}
        out[group] = header_bytes(tensors, meta) + sum(n for _, _, n in tensors.values())
    return out


def check_against_real_files(preset: str) -> dict:
    """Write one checkpoint per option with the real writer; compare each file with the prediction."""
    config = composed(preset)
    state_meta = meta_state(config)
    groups = config["module_groups"]
    from omegaconf import OmegaConf

    from redheart.crossover.rebuild import build_net

    net = build_net(OmegaConf.create(config), 384)
    raw = net.state_dict()
    ema = {k: v.clone() for k, v in raw.items()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="checkpoint_disk_") as tmp:
        for weights, dtype in OPTIONS:
            folder = Path(tmp) / f"{weights}_{dtype}"
            writer = ModularCheckpoint(str(folder), groups, dtype=dtype, weights=weights, background=False)
            partition = writer.module_groups.partition(net.named_parameters())
            writer._group_names = {g: list(m) for g, m in partition.items()}
            writer._write(2, raw if weights == "both" else None, ema, {"epoch": 2})
            manifest = json.loads((folder / "manifest.json").read_text())
            actual = {g: f["bytes"] for g, f in manifest["checkpoints"][0]["files"].items()}
            predicted = predicted_files(state_meta, groups, weights, dtype, 2)
            rows.append({"weights": weights, "dtype": dtype, "actual_bytes": sum(actual.values()),
                         "predicted_bytes": sum(predicted.values()), "exact": actual == predicted,
                         "metrics_file_bytes": (folder / "metrics_epoch_002.json").stat().st_size})
    return {"preset": preset, "params": sum(t.numel() for t in state_meta.values()), "options": rows,
            "all_exact": all(r["exact"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="check the arithmetic on `tiny` files (seconds)")
    parser.add_argument("--checkpoints", type=int, default=30, help="modular checkpoints per run (60 epochs / 2)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for checkpoint_disk.json")
    args = parser.parse_args()
    check = check_against_real_files("tiny" if args.quick else "small")
    if not check["all_exact"]:
        raise SystemExit(f"the size arithmetic does not match the real files: {check['options']}")
    config = composed("full")
    state = meta_state(config)
    params = sum(t.numel() for t in state.values())
    fp32_weights = sum(t.numel() * t.element_size() for t in state.values())
    resume = 4 * fp32_weights  # weights, EMA weights, AdamW exp_avg and exp_avg_sq (fp32)
    options = []
    for weights, dtype in OPTIONS:
        per = sum(predicted_files(state, config["module_groups"], weights, dtype, 60).values())
        total = per * args.checkpoints
        options.append({"weights": weights, "dtype": dtype, "default": (weights, dtype) == ("evaluated", "float32"),
                        "gb_per_checkpoint": round(per / GB, 3), "gb_modular_total": round(total / GB, 2),
                        "gb_run_peak_with_resume": round((total + 2 * resume) / GB, 2),
                        "loses": LOSES[(weights, dtype)]})
    default = next(o for o in options if o["default"])
    result = {
        "command": "python bench/checkpoint_disk.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": "exact size arithmetic on the full preset built on the meta device (tensor bytes + safetensors "
                  "headers), checked byte for byte against real files of a smaller preset",
        "model": "full", "params": params, "checkpoints": args.checkpoints,
        "fp32_weights_gb": round(fp32_weights / GB, 3),
        "resume_checkpoint_gb": round(resume / GB, 2),
        "resume_checkpoint_note": "one kept (save_top_k=1); the previous one is removed once the new one is whole, "
                                  "so 2x during a write",
        "options": options, "default_modular_gb": default["gb_modular_total"], "goal_gb": GOAL_GB,
        "meets_goal": default["gb_modular_total"] <= GOAL_GB, "real_file_check": check,
    }
    out = Path(args.out) / "checkpoint_disk.json"
    atomic_write_json(out, result)
    print(json.dumps({k: result[k] for k in ("params", "fp32_weights_gb", "resume_checkpoint_gb",
                                              "default_modular_gb", "meets_goal")}, indent=2))
    for o in options:
        print(f"  weights={o['weights']:9s} dtype={o['dtype']:8s} {o['gb_per_checkpoint']:7.3f} GB/checkpoint  "
              f"{o['gb_modular_total']:7.2f} GB x{args.checkpoints}  "
              f"peak with resume {o['gb_run_peak_with_resume']:7.2f} GB")
    print(f"real files ({check['preset']}): predicted sizes exact: {check['all_exact']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
