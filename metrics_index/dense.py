"""The dense ranker's pass over a namespace: exact cosine top lists at about a quarter of the memory reads.

Scoring every unit vector of a namespace reads the whole float32 matrix (50,000 x 384: 77 MB per question), and
that read is most of the pass's time. An int8 copy (one scale per dimension) is scored first, with SIMD integer
dot products (simsimd). The error of an int8 score is bounded (by the largest rounding error of a stored row and
of the query), so every document that could be among the `depth` best by exact cosine is kept; only those are
scored exactly, by the same float32 einsum as before. The top list and its scores are the ones the full pass
gives, bit for bit; documents that cannot reach it get no score.
"""

from __future__ import annotations

import numpy as np
import simsimd

QUANTIZED_ROWS = 5_000  # below this the full float32 pass takes well under a millisecond
# More than the float32 rounding of a 384-term dot product of unit vectors (about 2e-5): the exact scores compared
# are einsum's, not the true products the int8 bound is about.
FLOAT_SLACK = 1e-4


class DenseVectors:
    """A namespace's unit vectors (rows), with their int8 codes when there are enough rows to gain from them."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self._codes: np.ndarray | None = None
        if len(vectors) < QUANTIZED_ROWS or not vectors.size:
            return
        scale = np.abs(vectors).max(axis=0) / 127
        scale[scale == 0] = 1.0
        codes = np.round(vectors / scale).astype(np.int8)
        self._scale = scale.astype(np.float32)
        self._codes = codes
        # The bound of an int8 score's error (scores): the largest of each row's rounding error and code length.
        self._row_error = float(np.linalg.norm(vectors - codes * self._scale, axis=1).max())
        self._code_norm = float(np.linalg.norm(codes.astype(np.float32), axis=1).max())

    def scores(self, query: np.ndarray, depth: int) -> np.ndarray:
        """Each row's dot product with `query` where the row may be among the `depth` highest; -inf where it
        cannot be. Every row is scored when there are no int8 codes."""
        query = np.asarray(query, dtype=np.float32)
        if self._codes is None or len(self.vectors) <= depth:
            return np.einsum("ij,j->i", self.vectors, query)
        scaled = query * self._scale
        step = float(np.abs(scaled).max()) / 127
        if step == 0:
            return np.einsum("ij,j->i", self.vectors, query)
        query_codes = np.round(scaled / step).astype(np.int8)
        approximate = np.empty((1, len(self._codes)), dtype=np.float32)  # integers below 2**24: exact in float32
        simsimd.cdist(query_codes[None], self._codes, metric="dot", out=approximate)
        approximate = approximate[0]
        # exact = step * approximate + (scaled - step * codes) . row codes + query . (row - scale * row codes)
        error = float(np.linalg.norm(scaled - query_codes * step)) * self._code_norm
        error += float(np.linalg.norm(query)) * self._row_error + FLOAT_SLACK
        kth = np.partition(approximate, len(approximate) - depth)[len(approximate) - depth]
        candidates = np.flatnonzero(approximate >= kth - 2 * error / step)
        scores = np.full(len(self.vectors), -np.inf, dtype=np.float32)
        scores[candidates] = np.einsum("ij,j->i", self.vectors[candidates], query)
        return scores
