"""LightningDataModule over cached sentence embeddings.

Batches are dicts of tensors: `embedding` (B×D), `label` (B), and for each optional target its
values and a boolean mask of the same shape (`intensity`, `regret`, `bentham`, `surd` and
`*_mask`); masked-out values are 0 and must be ignored by the loss. `index` points back into the
kept records, so any prediction can be traced to its record id.

With `tokens` set (the fine-tuned encoder, conf/encoder/finetune.yaml) batches also carry `input_ids`
and `attention_mask` [B, L], padded to the batch's longest text; the ids come from a cache beside the
dataset (data/tokens.py), and training batches can group similar lengths (`tokens.bucket`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Subset

from redheart.data.embeddings import build_encoder
from redheart.data.pipeline import PipelineSettings, PreparedDataset, prepare_dataset
from redheart.data.scripts import script_report
from redheart.data.tokens import LengthBucketSampler, TokenCache, Tokenizer, pad_collate, token_cache_path
from redheart.io import atomic_write_json, atomic_write_with
from redheart.schema import Record, TaskSchema
from redheart.threads import init_worker, worker_threads

log = logging.getLogger(__name__)


def _target_matrix(values: list[list[float | None] | None], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = np.zeros((len(values), width), dtype=np.float32)
    mask = np.zeros((len(values), width), dtype=bool)
    for row, vector in enumerate(values):
        if vector is None:
            continue
        for col, v in enumerate(vector):
            if v is not None:
                data[row, col] = v
                mask[row, col] = True
    return torch.from_numpy(data), torch.from_numpy(mask)


class EmbeddingDataset(Dataset):
    """Tensors for the records at `indices`, built once; `__getitem__` only slices."""

    def __init__(self, records: list[Record], embeddings: np.ndarray, indices: np.ndarray, schema: TaskSchema,
                 token_ids: list[np.ndarray] | None = None):
        self.token_ids = None if token_ids is None else [torch.from_numpy(token_ids[i].astype(np.int64))
                                                         for i in indices.tolist()]
        chosen = [records[i] for i in indices.tolist()]
        self.tensors: dict[str, torch.Tensor] = {
            "embedding": torch.from_numpy(np.ascontiguousarray(embeddings[indices], dtype=np.float32)),
            "label": torch.tensor([r.label for r in chosen], dtype=torch.long),
            "index": torch.as_tensor(indices, dtype=torch.long),
        }
        for name, attr in (("intensity", "intensity"), ("regret", "regret_factor")):
            values, mask = _target_matrix([[getattr(r, attr)] for r in chosen], 1)
            self.tensors[name], self.tensors[f"{name}_mask"] = values[:, 0], mask[:, 0]
        self.tensors["bentham"], self.tensors["bentham_mask"] = _target_matrix(
            [r.bentham for r in chosen], len(schema.bentham_names))
        self.tensors["surd"], self.tensors["surd_mask"] = _target_matrix([r.surd for r in chosen],
                                                                         len(schema.surd_names))

    def __len__(self) -> int:
        return len(self.tensors["label"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {k: v[i] for k, v in self.tensors.items()}
        if self.token_ids is not None:
            item["input_ids"] = self.token_ids[i]
        return item


class RedHeartDataModule(LightningDataModule):
    """validate → dedup → split → embed in `prepare_data` (cached on disk); loaders in `setup`."""

    def __init__(
        self,
        path: str,
        schema: Mapping[str, Any] | None = None,
        format: str = "auto",
        table: Mapping[str, Any] | None = None,
        clean: Mapping[str, Any] | None = None,
        on_invalid: str = "error",
        max_text_chars: int = 20_000,
        max_samples: int | None = None,
        dedup_threshold: float = 0.92,
        dedup: Mapping[str, Any] | None = None,
        split: Mapping[str, Any] | None = None,
        embedding: Mapping[str, Any] | None = None,
        cache_dir: str | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        report_dir: str | None = None,
        progress: bool = True,
        tokens: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.schema = TaskSchema.from_config(**(schema or {}))
        split = dict(split or {})
        self.settings = PipelineSettings(
            format=format, table=dict(table) if table else None, clean=dict(clean or {}), on_invalid=on_invalid,
            max_text_chars=max_text_chars, max_samples=max_samples, dedup_threshold=dedup_threshold,
            on_label_conflict=(dedup or {}).get("on_label_conflict", "keep"),
            val_ratio=split.get("val", 0.1), test_ratio=split.get("test", 0.1), seed=split.get("seed", 42),
            on_leakage=split.get("on_leakage", "error"),
        )
        self.encoder = build_encoder(**{"progress": progress, **(embedding or {})})
        self.cache_dir = cache_dir
        tokens = dict(tokens or {})
        self.bucket = bool(tokens.pop("bucket", False))
        self.tokenizer = Tokenizer(**tokens) if tokens else None
        self.token_ids: list[np.ndarray] | None = None
        self.token_report: dict | None = None
        self.language_report: dict | None = None
        self.pad_id = 0
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.report_dir = Path(report_dir) if report_dir else None
        self.progress = progress
        self.prepared: PreparedDataset | None = None
        self.datasets: dict[str, EmbeddingDataset] = {}

    def _prepare(self) -> PreparedDataset:
        return prepare_dataset(self.path, self.schema, self.settings, self.encoder, self.cache_dir, self.progress)

    def _tokenize(self, prepared: PreparedDataset) -> None:
        """Token ids of every kept record (cached beside the dataset); stats into the data report."""
        if self.tokenizer is None:
            return
        folder = Path(self.cache_dir) if self.cache_dir is not None else self.path.parent
        cache = TokenCache(token_cache_path(self.path, self.tokenizer.model_id, folder), self.tokenizer)
        self.token_ids, self.token_report = cache.tokenize([r.text for r in prepared.records])
        prepared.report["tokens"] = self.token_report
        self.pad_id = int(cache.pad_id or 0)

    def _add_language(self, prepared: PreparedDataset) -> None:
        if self.language_report is None:  # once per datamodule: setup() re-reads the prepared data
            model = (self.tokenizer.model_name if self.tokenizer is not None
                     else getattr(self.encoder, "model_name", None))
            self.language_report = script_report([r.text for r in prepared.records], model)
        prepared.report["language"] = self.language_report

    def prepare_data(self) -> None:
        prepared = self._prepare()
        self._tokenize(prepared)
        self._add_language(prepared)
        self._write_report(prepared)

    @rank_zero_only
    def _write_report(self, prepared: PreparedDataset) -> None:
        counts = prepared.report["counts"]
        log.info("data: read %d = kept %d + near-duplicates %d + quarantined %d + label-conflict quarantined %d",
                 counts["read"], counts["kept"], counts["near_duplicates"], counts["quarantined"],
                 counts["label_conflict_quarantined"])
        if self.report_dir is None:
            return
        self.report_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.report_dir / "data_report.json", prepared.report)
        for name in ("quarantine.jsonl", "near_duplicates.jsonl", "label_conflicts.jsonl"):
            atomic_write_with(self.report_dir / name, lambda tmp, n=name: shutil.copyfile(prepared.directory / n, tmp))

    def setup(self, stage: str | None = None) -> None:
        if self.prepared is None:
            self.prepared = self._prepare()  # every stage is cached: this reads, it does not recompute
        p = self.prepared
        if self.tokenizer is not None and self.token_ids is None:
            self._tokenize(p)
        elif self.tokenizer is not None:
            p.report["tokens"] = self.token_report  # what prepare_data found (a re-read here would say "all hits")
        self._add_language(p)
        self.datasets = {name: EmbeddingDataset(p.records, p.embeddings, idx, self.schema, self.token_ids)
                         for name, idx in p.split.items()}

    @property
    def embedding_dim(self) -> int:
        if self.prepared is None:
            raise RuntimeError("call setup() first")
        return int(self.prepared.embeddings.shape[1])

    def _loader(self, name: str, shuffle: bool, indices: Sequence[int] | None = None) -> DataLoader:
        if name not in self.datasets:
            raise RuntimeError("call setup() before asking for a dataloader")
        init = None
        if self.num_workers > 0:  # each worker gets the cores the training threads leave (torch would give 1)
            seeded = int(os.environ.get("PL_SEED_WORKERS", 0))  # seed_everything(workers=True) was called
            rank = self.trainer.global_rank if self.trainer is not None else 0
            init = partial(init_worker, threads=worker_threads(torch.get_num_threads(), self.num_workers),
                           seed_rank=rank if seeded else None)
        common = {"num_workers": self.num_workers, "persistent_workers": self.num_workers > 0, "worker_init_fn": init}
        dataset = self.datasets[name] if indices is None else Subset(self.datasets[name], list(indices))
        if self.tokenizer is None:
            return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, **common)
        collate = pad_collate(self.pad_id)
        # Lightning shards a plain sampler across DDP processes but not a custom batch sampler: no buckets there
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if shuffle and indices is None and self.bucket and not (distributed and torch.distributed.get_world_size() > 1):
            sampler = LengthBucketSampler([len(t) for t in dataset.token_ids], self.batch_size)
            return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, **common)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def subset_dataloader(self, name: str, indices: Sequence[int]) -> DataLoader:
        """A loader over some records of one split, in order, batched (and padded) as that split's own."""
        return self._loader(name, shuffle=False, indices=indices)
