"""Embedding cache: hits never encode (or load a model), misses encode only new texts,
another model never reuses stale vectors, and the file is written atomically."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors import safe_open

from redheart.data.embeddings import (
    PACKAGED_MODEL,
    EmbeddingCache,
    HashingEncoder,
    SentenceTransformerEncoder,
    build_encoder,
    cache_path_for,
)


class CountingEncoder:
    """Deterministic encoder that records every text it is asked to encode."""

    def __init__(self, model_id: str = "counting:v1", dim: int = 8) -> None:
        self.model_id, self.dim, self.seen = model_id, dim, []

    def encode(self, texts):
        self.seen.extend(texts)
        return np.array([[hash((self.model_id, t, k)) % 1000 / 1000 for k in range(self.dim)] for t in texts],
                        dtype=np.float32)


def test_miss_then_hit_reuses_vectors_without_encoding(tmp_path):
    path = tmp_path / "d.embedded.x.safetensors"
    texts = ["alpha", "beta", "alpha", "gamma"]
    first_encoder = CountingEncoder()
    vectors, stats = EmbeddingCache(path, first_encoder).embed(texts)
    assert first_encoder.seen == ["alpha", "beta", "gamma"]  # each distinct text once
    assert (stats.hits, stats.encoded) == (0, 3)
    assert np.array_equal(vectors[0], vectors[2])

    rerun_encoder = CountingEncoder()
    again, stats = EmbeddingCache(path, rerun_encoder).embed(texts)
    assert rerun_encoder.seen == [] and (stats.hits, stats.encoded) == (4, 0)
    assert np.array_equal(again, vectors)


def test_new_records_encode_only_new_texts(tmp_path):
    path = tmp_path / "c.safetensors"
    EmbeddingCache(path, CountingEncoder()).embed(["a", "b"])
    encoder = CountingEncoder()
    vectors, stats = EmbeddingCache(path, encoder).embed(["b", "c", "a", "d"])
    assert encoder.seen == ["c", "d"] and stats.encoded == 2 and stats.hits == 2
    reference = CountingEncoder().encode(["b", "c", "a", "d"])
    assert np.allclose(vectors, reference)
    assert len(EmbeddingCache(path, CountingEncoder())) == 4


def test_another_model_gets_another_file_and_never_stale_vectors(tmp_path):
    a, b = CountingEncoder("model:A"), CountingEncoder("model:B")
    path_a, path_b = cache_path_for(tmp_path / "d.jsonl", a.model_id), cache_path_for(tmp_path / "d.jsonl", b.model_id)
    assert path_a != path_b and ".embedded." in path_a.name and path_a.parent == tmp_path
    EmbeddingCache(path_a, a).embed(["x"])
    # Even when pointed at A's file, B refuses it (stored model id differs) and re-encodes.
    vectors, stats = EmbeddingCache(path_a, b).embed(["x"])
    assert b.seen == ["x"] and stats.encoded == 1
    assert np.allclose(vectors, CountingEncoder("model:B").encode(["x"]))
    with safe_open(str(path_a), framework="numpy") as fh:
        assert fh.metadata()["model_id"] == "model:B"


def test_corrupt_cache_is_rebuilt_not_trusted(tmp_path):
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"\x00" * 5 + b"not a safetensors file")
    encoder = CountingEncoder()
    vectors, stats = EmbeddingCache(path, encoder).embed(["a"])
    assert stats.encoded == 1 and vectors.shape == (1, 8)
    assert len(EmbeddingCache(path, CountingEncoder())) == 1


def test_cache_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    EmbeddingCache(path, CountingEncoder()).embed(["a"])
    before = path.read_bytes()
    import redheart.data.embeddings as emb

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(emb, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        EmbeddingCache(path, CountingEncoder()).embed(["a", "b"])
    assert path.read_bytes() == before  # the old cache survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_wrong_encoder_output_shape_is_refused(tmp_path):
    class Broken(CountingEncoder):
        def encode(self, texts):
            return np.zeros((len(texts) + 1, 4), np.float32)

    with pytest.raises(ValueError, match="returned shape"):
        EmbeddingCache(tmp_path / "c.safetensors", Broken()).embed(["a"])


def test_hashing_encoder_and_factory():
    encoder = build_encoder("hashing", dim=32)
    vectors = encoder.encode(["hello world", "hello world", "something else"])
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert np.array_equal(vectors[0], vectors[1]) and not np.array_equal(vectors[0], vectors[2])
    assert isinstance(encoder, HashingEncoder) and "dim=32" in encoder.model_id
    with pytest.raises(ValueError, match="backend"):
        build_encoder("word2vec")


@pytest.mark.slow
def test_packaged_minilm_encodes_once_and_rerun_never_loads_it(tmp_path):
    texts = ["I was so happy to see my friend.", "The spider on my pillow terrified me."]
    encoder = SentenceTransformerEncoder(PACKAGED_MODEL, device="cpu", progress=False)
    vectors, _ = EmbeddingCache(tmp_path / "c.safetensors", encoder).embed(texts)
    assert encoder.load_count == 1 and vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)

    fresh = SentenceTransformerEncoder(PACKAGED_MODEL, device="cpu", progress=False)
    again, stats = EmbeddingCache(tmp_path / "c.safetensors", fresh).embed(texts)
    assert fresh.load_count == 0 and stats.hits == 2 and np.array_equal(again, vectors)
    unnormalised = SentenceTransformerEncoder(PACKAGED_MODEL, normalize=False)
    assert unnormalised.model_id != encoder.model_id  # other settings → other cache
