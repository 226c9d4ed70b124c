"""Token ids for the fine-tuned encoder, cached beside the dataset like the embeddings.

The cache is one safetensors file `<dataset stem>.tokens.<tokenizer slug>.safetensors` holding the
ids of every text back to back (`ids`, int32), where each text starts (`offsets`, int64, n + 1) and
the SHA-256 of each text (`text_sha256`); the tokenizer's id (model fingerprint + max_length) is in
the header. Why the same keying as data/embeddings.py: a rerun finds every text by its hash and never
loads the tokenizer; another tokenizer or max_length has another id and so another file.
Batches are padded per batch (dynamic padding) by `pad_collate`, optionally over length buckets.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file
from torch.utils.data import Sampler

from redheart.data.embeddings import PACKAGED_MODEL, _directory_fingerprint, model_slug, resolve_model_path
from redheart.io import atomic_write_with, sha256_text

log = logging.getLogger(__name__)

TOKEN_CACHE_FORMAT = "1"


class Tokenizer:
    """A Hugging Face tokenizer from a local folder (or the packaged MiniLM), loaded only when needed."""

    def __init__(self, model: str = PACKAGED_MODEL, max_length: int = 128) -> None:
        if int(max_length) < 2:
            raise ValueError(f"data.tokens.max_length must be >= 2, got {max_length}")
        self.model_name = model
        self.model_path = resolve_model_path(model)
        self.max_length = int(max_length)
        local = Path(self.model_path)
        fingerprint = _directory_fingerprint(local) if local.is_dir() else "hub"
        readable = model.split(":", 1)[1] if model.startswith("packaged:") else local.name
        self.model_id = f"tokenizer:{readable}:{fingerprint}:max_length={self.max_length}"
        self._tokenizer = None
        self.load_count = 0

    def _load(self):
        if self._tokenizer is None:
            if Path(self.model_path).is_dir():
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=False)
            self.load_count += 1
        return self._tokenizer

    @property
    def pad_id(self) -> int:
        pad = self._load().pad_token_id
        return 0 if pad is None else int(pad)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        out = self._load()(list(texts), truncation=True, max_length=self.max_length)
        return [list(ids) for ids in out["input_ids"]]


class TokenCache:
    """Text-hash → token ids for one tokenizer, persisted as a safetensors file."""

    def __init__(self, path: Path, tokenizer: Tokenizer) -> None:
        self.path = Path(path)
        self.tokenizer = tokenizer
        self._rows: dict[bytes, int] = {}
        self._ids: list[np.ndarray] = []
        self.pad_id: int | None = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            with safe_open(self.path, framework="numpy") as fh:
                meta = fh.metadata() or {}
            if meta.get("model_id") != self.tokenizer.model_id or meta.get("format") != TOKEN_CACHE_FORMAT:
                log.warning("token cache %s belongs to %r, not %r; ignoring it", self.path, meta.get("model_id"),
                            self.tokenizer.model_id)
                return
            tensors = load_file(self.path)
            self.pad_id = int(meta["pad_id"])
        except (SafetensorError, OSError, ValueError, KeyError) as err:
            log.warning("token cache %s is unreadable (%s); it will be rebuilt", self.path, err)
            return
        ids, offsets = tensors["ids"], tensors["offsets"]
        self._ids = [ids[offsets[i]: offsets[i + 1]] for i in range(len(offsets) - 1)]
        self._rows = {bytes(h): i for i, h in enumerate(tensors["text_sha256"])}

    def tokenize(self, texts: Sequence[str]) -> tuple[list[np.ndarray], dict]:
        """Token ids for `texts` (in order), tokenizing only the texts not yet cached; and cache stats."""
        hashes = [sha256_text(t) for t in texts]
        missing: dict[bytes, str] = {}
        for h, t in zip(hashes, texts, strict=True):
            if h not in self._rows and h not in missing:
                missing[h] = t
        if missing or self.pad_id is None:
            self.pad_id = self.tokenizer.pad_id
        if missing:
            for h, ids in zip(missing, self.tokenizer.encode(list(missing.values())), strict=True):
                self._rows[h] = len(self._ids)
                self._ids.append(np.asarray(ids, dtype=np.int32))
            self._save()
        out = [self._ids[self._rows[h]] for h in hashes]
        lengths = np.array([len(x) for x in out]) if out else np.zeros(1)
        stats = {"requested": len(texts), "hits": len(texts) - sum(1 for h in hashes if h in missing),
                 "tokenized": len(missing), "path": str(self.path), "model_id": self.tokenizer.model_id,
                 "length_mean": round(float(lengths.mean()), 2), "length_p95": float(np.percentile(lengths, 95)),
                 "truncated_share": round(float((lengths >= self.tokenizer.max_length).mean()), 4)}
        return out, stats

    def _save(self) -> None:
        order = sorted(self._rows, key=self._rows.get)
        hashes = np.frombuffer(b"".join(order), dtype=np.uint8).reshape(len(order), 32)
        lengths = np.array([len(x) for x in self._ids], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.concatenate(self._ids).astype(np.int32) if self._ids else np.zeros(0, np.int32)
        meta = {"model_id": self.tokenizer.model_id, "format": TOKEN_CACHE_FORMAT, "count": str(len(order)),
                "pad_id": str(self.pad_id)}
        tensors = {"ids": ids, "offsets": offsets, "text_sha256": hashes}
        atomic_write_with(self.path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def token_cache_path(dataset_path: Path, model_id: str, cache_dir: Path | None = None) -> Path:
    folder = Path(cache_dir) if cache_dir is not None else Path(dataset_path).parent
    return folder / f"{Path(dataset_path).stem}.tokens.{model_slug(model_id)}.safetensors"


def pad_collate(pad_id: int):
    """Stack a list of items; `input_ids` padded to the batch's longest text, plus `attention_mask`."""

    def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "input_ids"}
        if "input_ids" in items[0]:
            longest = max(len(it["input_ids"]) for it in items)
            ids = torch.full((len(items), longest), pad_id, dtype=torch.long)
            mask = torch.zeros((len(items), longest), dtype=torch.long)
            for row, it in enumerate(items):
                ids[row, : len(it["input_ids"])] = it["input_ids"]
                mask[row, : len(it["input_ids"])] = 1
            batch["input_ids"], batch["attention_mask"] = ids, mask
        return batch

    return collate


class LengthBucketSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length texts: less padding, so fewer wasted encoder FLOPs on CPU.

    Each epoch: a random permutation (drawn from torch's global RNG, as RandomSampler does, so seeding
    and checkpointed RNG state reproduce it) cut into pools of `pool` batches, each pool sorted by
    length and cut into batches, and the batches shuffled.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, pool: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.pool = int(batch_size), int(pool)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.lengths), generator=generator).numpy()
        span = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start: start + span]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i: i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        for i in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[i]
