"""Embedding cache: first run (load the model, encode every text) vs a cached rerun.

    python bench/embedding_cache_bench.py [--dataset data/sample.jsonl] [--model packaged:all-MiniLM-L6-v2]
                                          [--quick] [--out DIR]

Both runs happen in this process with fresh objects and an empty temporary cache folder at the
start, so the ratio compares like with like. The rerun builds a new encoder and a new cache object
from the file, exactly as a new training process would; it must not load the model.
--quick (CI): the first 64 texts. Figures go to stdout and <out>/embedding_cache.json (default
bench/results/, with --quick bench/results/quick/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from redheart.data.embeddings import (  # noqa: E402
    PACKAGED_MODEL,
    EmbeddingCache,
    SentenceTransformerEncoder,
    cache_path_for,
)
from redheart.io import atomic_write_json, read_jsonl  # noqa: E402


def timed_embed(dataset: Path, cache_dir: Path, texts: list[str], model: str) -> dict:
    t0 = time.perf_counter()
    encoder = SentenceTransformerEncoder(model, device="cpu", progress=False)
    cache = EmbeddingCache(cache_path_for(dataset, encoder.model_id, cache_dir), encoder)
    vectors, stats = cache.embed(texts)
    return {"seconds": time.perf_counter() - t0, "model_loads": encoder.load_count, **stats.as_dict(),
            "shape": list(vectors.shape)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(ROOT / "data" / "sample.jsonl"))
    parser.add_argument("--model", default=PACKAGED_MODEL)
    parser.add_argument("--quick", action="store_true", help="the first 64 texts: seconds, for CI")
    parser.add_argument("--out", type=Path, default=None, help="folder of the JSON (default bench/results/)")
    args = parser.parse_args()
    out_dir = args.out or ROOT / "bench" / "results" / ("quick" if args.quick else "")
    dataset = Path(args.dataset)
    texts = [r["text"] for r in read_jsonl(dataset) if isinstance(r.get("text"), str) and r["text"].strip()]
    texts = texts[:64] if args.quick else texts
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        first = timed_embed(dataset, Path(tmp), texts, args.model)
        rerun = timed_embed(dataset, Path(tmp), texts, args.model)
    assert rerun["model_loads"] == 0 and rerun["encoded"] == 0, rerun
    result = {
        "command": "python bench/embedding_cache_bench.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min_at_start": round(load, 2)},
        "quick": args.quick, "dataset": str(dataset.name), "texts": len(texts), "model": args.model,
        "first_run_seconds": round(first["seconds"], 3), "first_run_encoded": first["encoded"],
        "rerun_seconds": round(rerun["seconds"], 4), "rerun_model_loads": rerun["model_loads"],
        "speedup": round(first["seconds"] / rerun["seconds"], 1),
    }
    print(json.dumps(result, indent=2))
    print(f"wrote {atomic_write_json(out_dir / 'embedding_cache.json', result)}")


if __name__ == "__main__":
    main()
