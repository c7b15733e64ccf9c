"""The dense ranker's int8 pre-pass gives the same top list and scores as the full float32 pass."""

from __future__ import annotations

import numpy as np
import pytest

from metrics_index.dense import QUANTIZED_ROWS, DenseVectors
from metrics_index.search import DEPTH, _top


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered_vectors(count: int, seed: int) -> np.ndarray:
    """Rows in a few tight clusters, with exact duplicates: many near-ties at the top list's last place."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, 384))
    rows = centres[rng.integers(0, len(centres), count)] + 0.05 * rng.standard_normal((count, 384))
    rows[1::97] = rows[0]  # duplicates of one row: equal scores, ranked by index
    return unit_rows(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_top_list_and_scores_as_the_full_pass(seed: int) -> None:
    vectors = clustered_vectors(QUANTIZED_ROWS * 2, seed)
    dense = DenseVectors(vectors)
    rng = np.random.default_rng(seed + 10)
    queries = [vectors[0], vectors[5] + 0.01 * rng.standard_normal(384), rng.standard_normal(384)]
    for query in [np.asarray(q, dtype=np.float32) for q in queries]:
        full = np.einsum("ij,j->i", vectors, query)
        scores = dense.scores(query, DEPTH)
        top = _top(scores)
        assert top == _top(full)
        assert np.array_equal(scores[top], full[top])
        assert np.isfinite(scores).sum() < len(vectors) / 2  # the pre-pass did leave most rows out


def test_small_namespaces_and_degenerate_queries_score_every_row() -> None:
    small = clustered_vectors(QUANTIZED_ROWS - 1, 3)
    query = small[7]
    assert np.array_equal(DenseVectors(small).scores(query, DEPTH), np.einsum("ij,j->i", small, query))
    large = DenseVectors(clustered_vectors(QUANTIZED_ROWS, 4))
    zero = np.zeros(384, dtype=np.float32)
    assert np.array_equal(large.scores(zero, DEPTH), np.zeros(QUANTIZED_ROWS, dtype=np.float32))


def test_a_dimension_that_is_zero_everywhere() -> None:
    vectors = clustered_vectors(QUANTIZED_ROWS, 5)
    vectors[:, 3] = 0.0
    query = vectors[11]
    scores = DenseVectors(vectors).scores(query, DEPTH)
    full = np.einsum("ij,j->i", vectors, query)
    assert _top(scores) == _top(full)
