"""Whether a search answer is a good match at all, or only the least bad of a namespace that has no such metric.

Search scores are ranks fused into [0, 1]: the best answer to nonsense scores about as high as the best answer to a
good question. What tells them apart is how close in meaning the question and the metric's document are, as the
absolute cosine similarity of their embeddings. An answer below WEAK_BELOW that the question does not name is
marked weak. bench/weak_match.py calibrates the threshold on the development questions against nonsense and
out-of-namespace questions, and prints its false-alarm and miss rates.
"""

from __future__ import annotations

WEAK_BELOW = 0.19
"""Cosine similarity of question and document below which an answer is weak (bench/weak_match.py)."""


def is_weak(similarity: float) -> bool:
    return similarity < WEAK_BELOW
