"""Near-duplicate removal: the original O(n²) loop vs ours, then ours at 100k texts.

    python bench/dedup_bench.py [--isear PATH] [--n-generated 100000] [--quick] [--out DIR]

1. ISEAR's whole text column (every row, cleaned as conf/data/isear.yaml cleans it): both
   methods in this process, identical kept sets asserted, speed ratio reported.
2. 100k generated texts (random words with ISEAR-like lengths, 5% planted near-duplicates), in a
   fresh child process so its peak RSS is its own: time and peak memory.
--quick (CI): the seed loop against ours on 300 generated texts instead of ISEAR, then 2,000 texts.
Figures go to stdout and <out>/dedup.json (default bench/results/, with --quick bench/results/quick/).
"""

from __future__ import annotations

import argparse
import json
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

sys.path.insert(0, str(ROOT / "bench"))
from full_step_memory import run_in_child  # noqa: E402


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


def _big_run(n: int, progress: bool, queue) -> None:
    texts = generated_texts(n)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    result = deduplicate(texts, 0.92, progress=progress)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"n": n, "seconds": round(seconds, 2), "dropped": result.n_dropped,
               "mean_length": round(sum(map(len, texts)) / n, 1),
               "peak_rss_mib": round(peak / 1024, 1), "rss_before_dedup_mib": round(base_rss / 1024, 1)})


def compare_with_seed_loop(name: str, texts: list[str]) -> dict:
    """Both methods on the same texts: identical kept sets asserted, speed ratio."""
    t0 = time.perf_counter()
    ours = deduplicate(texts, 0.92).kept_indices
    t_ours = time.perf_counter() - t0
    print(f"{name}: {len(texts)} texts; ours {t_ours:.2f}s, running the seed loop (slow)...", flush=True)
    t0 = time.perf_counter()
    seed = seed_loop_reference(texts, 0.92)
    t_seed = time.perf_counter() - t0
    assert ours == seed, "kept sets differ"
    return {"texts": len(texts), "kept": len(ours), "identical_kept_sets": ours == seed,
            "seed_loop_seconds": round(t_seed, 2), "ours_seconds": round(t_ours, 3),
            "speedup": round(t_seed / t_ours, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isear", default=str(ROOT / ".." / "shared" / "data" / "isear" / "isear.csv"))
    parser.add_argument("--n-generated", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="300 + 2,000 generated texts: seconds, for CI")
    parser.add_argument("--out", type=Path, default=None, help="folder of the JSON (default bench/results/)")
    args = parser.parse_args()
    out_dir = args.out or ROOT / "bench" / "results" / ("quick" if args.quick else "")
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "load_average_1min_at_start": round(os.getloadavg()[0], 2)},
                     "command": "python bench/dedup_bench.py " + " ".join(sys.argv[1:]), "quick": args.quick}

    isear = Path(args.isear)
    if args.quick:
        results["generated_vs_seed_loop"] = compare_with_seed_loop("generated", generated_texts(300, seed=1))
        print(json.dumps(results["generated_vs_seed_loop"]), flush=True)
    elif isear.exists():
        results["isear"] = compare_with_seed_loop("ISEAR", isear_texts(isear))
        print(json.dumps(results["isear"]), flush=True)
    else:
        print(f"ISEAR not found at {isear}; skipping the original-loop comparison")

    # in a fresh child process, so its peak RSS is its own
    results["generated"] = run_in_child(_big_run, 2000 if args.quick else args.n_generated, not args.quick)
    print(json.dumps(results["generated"]), flush=True)
    out = atomic_write_json(out_dir / "dedup.json", results)
    print(f"wrote {out}")

if __name__ == "__main__":
    main()
