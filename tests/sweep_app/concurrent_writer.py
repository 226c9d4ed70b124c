"""A process that appends entries to a cumulative file (imported by spawned test workers: kept light)."""

from redheart.sweep.cumulative import CumulativeResults


def append_entries(path: str, worker: int, n: int) -> None:
    results = CumulativeResults(path)
    for i in range(n):
        results.append({"key": f"{worker}-{i}", "lr": 1e-4, "worker": worker})
