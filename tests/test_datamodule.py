"""DataModule: dict batches with masks, reports in the run folder, cached stages on rerun."""

from __future__ import annotations

import json
import time

import torch

from redheart.data.datamodule import RedHeartDataModule
from tests.conftest import write_records


def make_dm(tmp_path, path, **kwargs) -> RedHeartDataModule:
    return RedHeartDataModule(
        path=str(path), embedding={"backend": "hashing", "dim": 16}, cache_dir=str(tmp_path / "cache"),
        report_dir=str(tmp_path / "run"), batch_size=8, progress=False, **kwargs,
    )


def test_batches_are_dicts_with_targets_and_masks(tmp_path):
    path = write_records(tmp_path / "d.jsonl", n=70)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["bentham_scores"] = [0.1, None, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    rows[0]["surd_metrics"] = {"surprise": 0.25}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dm = make_dm(tmp_path, path, split={"val": 0.1, "test": 0.1, "seed": 0})
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"embedding", "label", "index", "intensity", "intensity_mask", "regret", "regret_mask",
                          "bentham", "bentham_mask", "surd", "surd_mask"}
    assert batch["embedding"].shape == (8, 16) and batch["embedding"].dtype == torch.float32
    assert batch["label"].dtype == torch.long and batch["bentham"].shape == (8, 10) and batch["surd"].shape == (8, 4)

    # Every record's targets and masks, looked up through `index`, match the source file.
    records = dm.prepared.records
    for name in ("train", "val", "test"):
        ds = dm.datasets[name]
        for k in range(len(ds)):
            item = ds[k]
            source = rows[records[int(item["index"])].source_index]
            assert int(item["label"]) == source["label"]
            assert bool(item["regret_mask"]) == (source["regret_factor"] is not None)
            if source["regret_factor"] is None:
                assert float(item["regret"]) == 0.0
            if source["id"] == "r0":
                assert item["bentham_mask"].tolist() == [True, False] + [True] * 8
                assert item["surd_mask"].tolist() == [True, False, False, False]
                assert float(item["surd"][0]) == 0.25
            else:
                assert not item["bentham_mask"].any() and not item["surd_mask"].any()


def test_prepare_data_writes_reconciled_report_and_rerun_reuses_everything(tmp_path):
    path = write_records(tmp_path / "d.jsonl", n=70)
    with path.open("a") as fh:  # one near-duplicate and one invalid record
        fh.write(json.dumps({"id": "dup", "text": path.read_text().splitlines()[0].split('"text": "')[1].split('"')[0]
                             + "!", "label": 0}) + "\n")
        fh.write(json.dumps({"id": "bad", "text": "fine text", "label": 99}) + "\n")
    dm = make_dm(tmp_path, path, on_invalid="skip")
    dm.prepare_data()
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["counts"] == {"in_file": 72, "read": 72, "quarantined": 1, "near_duplicates": 1, "kept": 70,
                                "label_conflict_quarantined": 0, "reconciles": True}
    assert report["embedding"]["cache"]["encoded"] == 70 and report["reused_prepared"] is False
    quarantine = [json.loads(line) for line in (tmp_path / "run" / "quarantine.jsonl").read_text().splitlines()]
    assert [q["id"] for q in quarantine] == ["bad"] and "outside 0..6" in quarantine[0]["problems"][0]

    again = make_dm(tmp_path, path, on_invalid="skip")
    again.setup("fit")
    assert again.prepared.report["reused_prepared"] is True
    assert again.prepared.report["embedding"]["cache"] == {**report["embedding"]["cache"], "hits": 70, "encoded": 0}
    assert sum(len(d) for d in again.datasets.values()) == 70


def test_changed_settings_are_not_served_from_the_old_cache(tmp_path):
    path = write_records(tmp_path / "d.jsonl", n=140)
    dm = make_dm(tmp_path, path)
    dm.setup()
    smaller = make_dm(tmp_path, path, max_samples=70)
    smaller.setup()
    assert smaller.prepared.report["reused_prepared"] is False
    assert smaller.prepared.report["counts"]["read"] == 70
    assert sum(len(d) for d in smaller.datasets.values()) == 70


def _prepare_in_process(path, cache_dir, queue):
    from redheart.data.embeddings import HashingEncoder
    from redheart.data.pipeline import PipelineSettings, prepare_dataset
    from redheart.schema import TaskSchema

    class SlowEncoder(HashingEncoder):  # widens the window in which two unlocked jobs would collide
        def encode(self, texts):
            time.sleep(3)
            return super().encode(texts)

    prepared = prepare_dataset(path, TaskSchema(), PipelineSettings(), SlowEncoder(16), cache_dir, progress=False)
    queue.put((prepared.report["reused_prepared"], prepared.report["embedding"]["cache"]["encoded"]))


def test_parallel_jobs_prepare_once_and_share_the_result(tmp_path):
    """Two processes (as in a joblib sweep) on one dataset: one builds and encodes, the other reuses."""
    import multiprocessing as mp

    path = write_records(tmp_path / "d.jsonl", n=140)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_prepare_in_process, args=(str(path), str(tmp_path / "cache"), queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == [(False, 140), (True, 0)]
