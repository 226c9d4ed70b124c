"""Activation memory of the fine-tuned encoder path: bytes saved for backward per text, by sequence length.

    python bench/encoder_activations.py [--quick] [--out DIR] [--model full] [--lengths 32,128]

Why: with encoder=finetune the backbone's sequence grows from 7 latent tokens to 7 + L words, so the
activations of every transformer layer, attention reader and the GRU grow with L; docs/gpu.md needs
that figure to say whether `trainer=gpu` / `trainer=gpu_8gb` still fit. The forward of one batch runs
on the CPU under `torch.autograd.graph.saved_tensors_hooks`, summing each distinct saved tensor's
bytes (fp32); a GPU run in 16-mixed saves about half. Weights are random (sizes are what matter).
Writes <out>/encoder_activations.json (quick: tiny preset, encoder_activations_quick.json).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from redheart.io import atomic_write_json  # noqa: E402


def saved_bytes(net: torch.nn.Module, batch: int, length: int) -> int:
    ids = torch.randint(1000, 2000, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    seen: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}  # saved too, but not activations

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(input_ids=ids, attention_mask=mask)
    del out
    return sum(seen.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--model", default="full")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lengths", default="32,128")
    args = parser.parse_args(argv)
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    os.environ.setdefault("REDHEART_ROOT", str(ROOT))
    preset = "tiny" if args.quick else args.model
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={preset}", "encoder=finetune"])
    net_cfg = OmegaConf.to_container(cfg.model.net, resolve=True)
    torch.manual_seed(0)
    start = time.perf_counter()
    net = instantiate(net_cfg)
    built = time.perf_counter() - start
    rows = {}
    for length in (int(x) for x in args.lengths.split(",")):
        total = saved_bytes(net, args.batch, length)
        rows[str(length)] = {"saved_bytes_fp32_per_text": total // args.batch,
                             "saved_mib_fp32_batch32": round(total / args.batch * 32 / 2**20, 1)}
        print(f"L={length}: {total / args.batch / 2**20:.2f} MiB saved per text (fp32); batch 32: "
              f"{rows[str(length)]['saved_mib_fp32_batch32']} MiB", flush=True)
    encoder_params = sum(p.numel() for p in net.encoder.parameters())
    result = {"model": preset, "batch_measured": args.batch, "lengths": rows, "encoder_parameters": encoder_params,
              "parameters": sum(p.numel() for p in net.parameters()), "build_s": round(built, 1),
              "load": [round(x, 2) for x in os.getloadavg()],
              "quick": args.quick,
              "command": "python bench/encoder_activations.py" + (" --quick" if args.quick else "")}
    name = "encoder_activations_quick.json" if args.quick else "encoder_activations.json"
    atomic_write_json(args.out / name, result)
    print(f"written {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
