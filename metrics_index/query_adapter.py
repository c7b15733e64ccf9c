"""A linear map that moves a question's embedding towards the metric documents that answer it, learned from the
search corpus's questions.

MiniLM embeds a question ("how many clients are connected right now") near texts that share its words and topic;
the documents that answer it are metric names and help texts in a service's own words ("threads connected"). The map
q -> q + A q (then unit length), learned on questions whose answers are known (bench/corpora), moves a question
towards how metric documents say things. Documents are embedded as before: an index is never rebuilt for it.

`learn` fits A by full-batch Adam (STEPS steps of LEARNING_RATE) on a softmax over each question's namespace, its
answers against every other metric of it at TEMPERATURE, with REGULARISATION x |A|^2 keeping the map near the
identity. The matrix ships in data/query_adapter.npz with the models whose vectors it was learned on (one map per
model; MiniLM's in both arithmetics is one), written by `bench/search_quality.py --write-learned` from the whole
corpus; the bench scores each service with a map learned without it. Only the dense ranker reads the moved vector
(search.signals); the similarity that says whether an answer is a good match at all (confidence.py) stays the
model's own.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["QUERY_ADAPTER_FILE", "AskedNamespace", "adapt", "learn", "shipped_adapter", "write_adapter"]

QUERY_ADAPTER_FILE = Path(__file__).with_name("data") / "query_adapter.npz"
REGULARISATION = 0.01
TEMPERATURE = 0.1
STEPS = 100
LEARNING_RATE = 0.001


@dataclass(frozen=True)
class AskedNamespace:
    """One namespace's questions whose answers are known, as `learn` reads them."""

    questions: np.ndarray  # the questions' unit vectors (rows), embedded as searched (search.query_text)
    documents: np.ndarray  # the namespace's document unit vectors (rows)
    answers: np.ndarray  # bool [question, document]: the documents that answer each question

    def answered(self) -> AskedNamespace:
        """Only the questions with at least one answer among the documents."""
        kept = self.answers.any(axis=1)
        return AskedNamespace(self.questions[kept], self.documents, self.answers[kept])


def learn(asked: Iterable[AskedNamespace], steps: int = STEPS) -> np.ndarray:
    """The matrix A of the map q -> q + A q, as the module says (zero when no question has an answer)."""
    groups = [
        (group.questions.astype(np.float64), group.documents.astype(np.float64), group.answers.astype(np.float64))
        for group in (g.answered() for g in asked)
        if len(group.questions)
    ]
    if not groups:
        return np.zeros((0, 0), dtype=np.float32)
    questions = sum(len(q) for q, _d, _a in groups)
    matrix = np.zeros((groups[0][0].shape[1],) * 2)
    first, second = np.zeros_like(matrix), np.zeros_like(matrix)
    for step in range(1, steps + 1):
        gradient = 2 * REGULARISATION * matrix
        for vectors, documents, answers in groups:
            moved = vectors + vectors @ matrix.T
            length = np.linalg.norm(moved, axis=1, keepdims=True)
            unit = moved / length
            logits = unit @ documents.T / TEMPERATURE
            weights = np.exp(logits - logits.max(axis=1, keepdims=True))
            every = weights / weights.sum(axis=1, keepdims=True)
            right = weights * answers
            right /= right.sum(axis=1, keepdims=True)
            towards = (every - right) @ documents / (TEMPERATURE * questions)  # d loss / d unit
            gradient += ((towards - unit * (unit * towards).sum(axis=1, keepdims=True)) / length).T @ vectors
        first = 0.9 * first + 0.1 * gradient
        second = 0.999 * second + 0.001 * gradient**2
        matrix -= LEARNING_RATE * (first / (1 - 0.9**step)) / (np.sqrt(second / (1 - 0.999**step)) + 1e-8)
    return matrix.astype(np.float32)


def adapt(vectors: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """The question vector(s) moved by the map of `matrix` (unchanged when it is None or empty), at unit length."""
    if matrix is None or not matrix.size:
        return vectors
    moved = vectors + vectors @ matrix.T
    return (moved / np.linalg.norm(moved, axis=-1, keepdims=True)).astype(np.float32)


def write_adapter(
    matrix: np.ndarray, models: Sequence[str], learned_from: str, path: Path = QUERY_ADAPTER_FILE
) -> None:
    """Ship `matrix` for the embedding models whose vectors it was learned on. The maps of other models stay in the
    file: `--write-learned --model DIR` adds that model's map beside MiniLM's instead of replacing it."""
    others = [entry for entry in _shipped_maps(path) if not set(entry[0]) & set(models)]
    arrays = {}
    for i, (for_models, learned, source) in enumerate([*others, (list(models), matrix, learned_from)]):
        arrays[f"matrix_{i}"] = learned.astype(np.float32)
        arrays[f"models_{i}"] = np.array(for_models)
        arrays[f"learned_from_{i}"] = np.array(source)
    with path.open("wb") as file:
        np.savez_compressed(file, **arrays)
    shipped_adapter.cache_clear()


def _shipped_maps(path: Path) -> list[tuple[list[str], np.ndarray, str]]:
    """(models, matrix, learned from) of each map in the file; none when there is no file."""
    if not path.exists():
        return []
    with np.load(path) as shipped:
        count = sum(1 for key in shipped.files if key.startswith("matrix_"))
        return [
            (shipped[f"models_{i}"].tolist(), shipped[f"matrix_{i}"], str(shipped[f"learned_from_{i}"]))
            for i in range(count)
        ]


@functools.cache
def shipped_adapter(model: str, path: Path = QUERY_ADAPTER_FILE) -> np.ndarray | None:
    """The shipped matrix learned on `model`'s vectors, else None (a model without a map: no map)."""
    return next((matrix for models, matrix, _from in _shipped_maps(path) if model in models), None)
