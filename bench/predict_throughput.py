"""predict.py throughput on the frozen path vs the raw sentence-transformer encoding of the same texts.

    python bench/predict_throughput.py [--quick] [--out DIR] [--preset small] [--texts 1024] [--batch 64]

The bundle holds a randomly initialised network of the preset (the cost of a forward pass does not depend
on the weights) over the packaged all-MiniLM-L6-v2 embeddings. Both sides run in this process on the same
texts (data/sample.jsonl), after a warm-up that loads the embedding model:
  raw      SentenceTransformer.encode(texts, batch_size, normalize) — the floor predict.py cannot beat
  predict  redheart.bundle.predict.predict_file: read JSONL, clean, encode, network, named JSON rows out
Goal: predict ≥ 0.8 × raw (the network and I/O add ≤ 25%).
`fine_tuned`: predict_file on a bundle with a fine-tuned encoder (encoder=finetune's network, the bundle's
own tokenizer, max_length 128, dynamic padding): in full mode the encoder is the packaged all-MiniLM-L6-v2
weights as loaded for fine-tuning, untrained (speed does not depend on the weights); in --quick a tiny
2-layer BERT built in-process (tests/conftest.py), so its figure says nothing about MiniLM's speed.
`--quick`: tiny preset, 128 texts, one repeat (seconds). Results: <out>/predict_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("REDHEART_ROOT", str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from redheart.bundle.card import model_card  # noqa: E402
from redheart.bundle.export import encoder_settings  # noqa: E402
from redheart.bundle.format import write_bundle  # noqa: E402
from redheart.bundle.model import load_model  # noqa: E402
from redheart.bundle.predict import predict_file  # noqa: E402
from redheart.crossover.rebuild import build_net, net_arguments, schema_of  # noqa: E402
from redheart.data.embeddings import PACKAGED_MODEL, SentenceTransformerEncoder  # noqa: E402
from redheart.data.tokens import Tokenizer  # noqa: E402
from redheart.io import atomic_write_json, read_jsonl  # noqa: E402


def make_bundle(folder: Path, preset: str, batch: int) -> Path:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={preset}"])
    encoder = SentenceTransformerEncoder(PACKAGED_MODEL, device="cpu", batch_size=batch, progress=False)
    dim = 384
    torch.manual_seed(0)
    net = build_net(cfg, dim)
    schema = schema_of(cfg)
    config = {"net": net_arguments(cfg, dim),
              "schema": {"class_names": list(schema.class_names), "bentham_names": list(schema.bentham_names),
                         "surd_names": list(schema.surd_names)},
              "embedding": {"backend": "sentence_transformers", "model": PACKAGED_MODEL, "normalize": True,
                            "batch_size": batch, "model_id": encoder.model_id, "input_dim": dim},
              "calibration": {"temperature": 1.0}, "provenance": {"selection": {"name": f"random {preset}"}}}
    return write_bundle(folder, net.state_dict(), config, model_card)


def make_finetuned_bundle(folder: Path, preset: str, batch: int, model: str, max_length: int = 128) -> Path:
    """A bundle as export.py writes it for an encoder=finetune run: encoder tensors, tokenizer and config files."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={preset}", "encoder=finetune",
                                                      f"data.tokens.model={model}",
                                                      f"data.tokens.max_length={max_length}"])
    dim = 384
    torch.manual_seed(0)
    net = build_net(cfg, dim)
    schema = schema_of(cfg)
    net_args = net_arguments(cfg, dim)
    data_cfg = {"tokens": OmegaConf.to_container(cfg.data.tokens, resolve=True)}
    encoder, files = encoder_settings(net_args, data_cfg, SimpleNamespace(tokenizer=Tokenizer(model, max_length)))
    config = {"net": net_args,
              "schema": {"class_names": list(schema.class_names), "bentham_names": list(schema.bentham_names),
                         "surd_names": list(schema.surd_names)},
              "embedding": {"backend": None, "batch_size": batch, "model_id": None, "input_dim": dim},
              "encoder": encoder,
              "calibration": {"temperature": 1.0}, "provenance": {"selection": {"name": f"random {preset}"}}}
    return write_bundle(folder, net.state_dict(), config, model_card, files)


def fine_tuned_throughput(tmp: Path, preset: str, quick: bool, batch: int, repeats: int) -> dict:
    if quick:
        from tests.conftest import make_tiny_encoder

        model_name, what = str(make_tiny_encoder(tmp / "tiny_bert")), "tiny in-process BERT (2 layers, hidden 16)"
    else:
        model_name, what = PACKAGED_MODEL, "all-MiniLM-L6-v2 as loaded for fine-tuning (not trained: same speed)"
    model = load_model(make_finetuned_bundle(tmp / "ft_bundle", preset, batch, model_name), device="cpu")
    predict_file(model, tmp / "in.jsonl", tmp / "ft_warm.jsonl", batch_size=batch, progress=False)
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_file(model, tmp / "in.jsonl", tmp / "ft_out.jsonl", batch_size=batch, progress=False)
        seconds.append(time.perf_counter() - t0)
    return {"encoder": what, "max_length": model.tokenizer.max_length,
            "network_parameters": sum(p.numel() for p in model.net.parameters()),
            "predict_seconds": [round(s, 3) for s in seconds]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--preset", default=None, help="model preset (default: small; tiny with --quick)")
    parser.add_argument("--texts", type=int, default=None, help="texts (default 1024; 128 with --quick)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats, median kept (default 3; 1 quick)")
    args = parser.parse_args()
    preset = args.preset or ("tiny" if args.quick else "small")
    n = args.texts or (128 if args.quick else 1024)
    repeats = args.repeats or (1 if args.quick else 3)
    pool = [r["text"] for r in read_jsonl(ROOT / "data" / "sample.jsonl") if isinstance(r.get("text"), str)]
    texts = [pool[i % len(pool)] for i in range(n)]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = load_model(make_bundle(tmp / "bundle", preset, args.batch), device="cpu")
        st = model.encoder._load()  # the same SentenceTransformer object predict uses
        (tmp / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
        st.encode(texts[: args.batch], batch_size=args.batch, normalize_embeddings=True)  # warm-up
        predict_file(model, tmp / "in.jsonl", tmp / "warm.jsonl", batch_size=args.batch, progress=False)
        raw, pred = [], []
        for _ in range(repeats):  # interleaved, so a load change hits both sides alike
            t0 = time.perf_counter()
            st.encode(texts, batch_size=args.batch, normalize_embeddings=True, convert_to_numpy=True,
                      show_progress_bar=False)
            raw.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            predict_file(model, tmp / "in.jsonl", tmp / "out.jsonl", batch_size=args.batch, progress=False)
            pred.append(time.perf_counter() - t0)
        embeddings = model.embed(texts)
        t0 = time.perf_counter()
        for i in range(0, n, args.batch):
            model.forward_embeddings(embeddings[i:i + args.batch])
        network = time.perf_counter() - t0
        parameters = sum(p.numel() for p in model.net.parameters())
        fine_tuned = fine_tuned_throughput(tmp, preset, args.quick, args.batch, repeats)
        fine_tuned["predict_texts_per_second"] = round(n / statistics.median(fine_tuned["predict_seconds"]), 1)
    raw_tps, pred_tps = n / statistics.median(raw), n / statistics.median(pred)
    result = {
        "command": "python bench/predict_throughput.py " + " ".join(sys.argv[1:]),
        "mode": "quick" if args.quick else "full", "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": "cpu",
                    "python": platform.python_version(), "torch": torch.__version__},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "preset": preset, "network_parameters": parameters, "texts": n, "batch_size": args.batch,
        "repeats": repeats, "embedding_model": PACKAGED_MODEL,
        "raw_encode_seconds": [round(s, 3) for s in raw], "predict_seconds": [round(s, 3) for s in pred],
        "raw_encode_texts_per_second": round(raw_tps, 1), "predict_texts_per_second": round(pred_tps, 1),
        "network_only_seconds": round(network, 3),
        "network_share_of_predict": round(network / statistics.median(pred), 3),
        "ratio_predict_to_raw": round(pred_tps / raw_tps, 3), "goal_ratio": 0.8,
        "meets_goal": pred_tps / raw_tps >= 0.8,
        "fine_tuned": fine_tuned,
    }
    out = Path(args.out) / "predict_throughput.json"
    atomic_write_json(out, result)
    print(json.dumps({k: result[k] for k in ("preset", "texts", "raw_encode_texts_per_second",
                                             "predict_texts_per_second", "network_only_seconds", "ratio_predict_to_raw",
                                             "meets_goal", "load_average_before")}
                     | {"fine_tuned_texts_per_second": fine_tuned["predict_texts_per_second"]}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
