"""Near-duplicate removal: the original O(n²) loop vs ours, then ours at 100k texts.

    python bench/dedup_bench.py [--isear PATH] [--n-generated 100000]

1. ISEAR's whole text column (every row, cleaned as conf/data/isear.yaml cleans it): both
   methods in this process, identical kept sets asserted, speed ratio reported.
2. 100k generated texts (random words with ISEAR-like lengths, 5% planted near-duplicates), in a
   fresh child process so its peak RSS is its own: time and peak memory.
Figures go to stdout and bench/results/dedup.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from redheart.data.dedup import deduplicate, seed_loop_reference  # noqa: E402
from redheart.io import atomic_write_json  # noqa: E402


def isear_texts(path: Path) -> list[str]:
    """Every ISEAR row's text, read and cleaned exactly as `data=isear` does (before validation)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from redheart.data.pipeline import read_raw_records
    from redheart.data.validation import TextCleaning
    from redheart.schema import TaskSchema

    os.environ.setdefault("REDHEART_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        data = compose(config_name="train", overrides=["data=isear"]).data
    table, clean, schema = (OmegaConf.to_container(data[k], resolve=True) for k in ("table", "clean", "schema"))
    _, raw = read_raw_records(path, TaskSchema.from_config(**schema), "table", table)
    cleaning = TextCleaning.from_config(clean)
    return [cleaning.clean(r.data["text"]) for r in raw if r.data is not None]


def generated_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    weights = [1 / (k + 1) for k in range(len(vocab))]  # Zipf-like word frequencies
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.05:  # planted near-duplicate of an earlier text
            t = rng.choice(texts)
            k = rng.randrange(len(t))
            texts.append(t[:k] + rng.choice("aeiou") + t[k + 1 :])
            continue
        n_words = max(3, int(rng.lognormvariate(2.9, 0.6)))
        texts.append(" ".join(rng.choices(vocab, weights, k=n_words)) + ".")
    return texts


def _big_run(n: int, queue) -> None:
    texts = generated_texts(n)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    result = deduplicate(texts, 0.92, progress=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"n": n, "seconds": round(seconds, 2), "dropped": result.n_dropped,
               "mean_length": round(sum(map(len, texts)) / n, 1),
               "peak_rss_mib": round(peak / 1024, 1), "rss_before_dedup_mib": round(base_rss / 1024, 1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isear", default=str(ROOT / ".." / "shared" / "data" / "isear" / "isear.csv"))
    parser.add_argument("--n-generated", type=int, default=100_000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "dedup.json"))
    args = parser.parse_args()
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                     "command": "python bench/dedup_bench.py " + " ".join(sys.argv[1:])}

    isear = Path(args.isear)
    if isear.exists():
        texts = isear_texts(isear)
        t0 = time.perf_counter()
        ours = deduplicate(texts, 0.92).kept_indices
        t_ours = time.perf_counter() - t0
        print(f"ISEAR: {len(texts)} texts; ours {t_ours:.2f}s, running the original loop (slow)...", flush=True)
        t0 = time.perf_counter()
        seed = seed_loop_reference(texts, 0.92)
        t_seed = time.perf_counter() - t0
        assert ours == seed, "kept sets differ"
        results["isear"] = {"texts": len(texts), "kept": len(ours), "identical_kept_sets": ours == seed,
                            "seed_loop_seconds": round(t_seed, 2), "ours_seconds": round(t_ours, 3),
                            "speedup": round(t_seed / t_ours, 1)}
        print(json.dumps(results["isear"]), flush=True)
    else:
        print(f"ISEAR not found at {isear}; skipping the original-loop comparison")

    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_big_run, args=(args.n_generated, queue))
    proc.start()
    results["generated"] = queue.get()
    proc.join()
    print(json.dumps(results["generated"]), flush=True)
    atomic_write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
