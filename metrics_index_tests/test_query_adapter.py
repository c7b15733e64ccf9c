"""The query map learned from questions whose answers are known, and where a search applies it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from metrics_index.embeddings import DEFAULT_MODEL, PACKAGED_MODEL
from metrics_index.query_adapter import QUERY_ADAPTER_FILE, AskedNamespace, adapt, learn, shipped_adapter, write_adapter
from metrics_index.search import NamespaceCorpus, signals


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def namespace(rng: np.random.Generator, questions: int) -> AskedNamespace:
    """Four documents; each question sits nearest the document that says its words (dimension 0 or 1), but is
    answered by the one that says the service's way of putting it (dimension 2 or 3): the convention to learn."""
    documents = np.eye(4)
    asked = rng.integers(2, size=questions)
    vectors = unit(np.eye(4)[asked] * 0.8 + np.eye(4)[asked + 2] * 0.4 + rng.normal(0, 0.05, (questions, 4)))
    return AskedNamespace(vectors, documents, np.eye(4, dtype=bool)[asked + 2])


def first_answer_rate(asked: AskedNamespace, matrix: np.ndarray | None) -> float:
    best = (adapt(asked.questions, matrix) @ asked.documents.T).argmax(axis=1)
    return float(asked.answers[np.arange(len(best)), best].mean())


def test_the_map_learns_a_convention_that_holds_in_a_namespace_it_never_saw() -> None:
    rng = np.random.default_rng(0)
    matrix = learn([namespace(rng, 20) for _ in range(3)], steps=300)
    unseen = namespace(rng, 50)
    assert first_answer_rate(unseen, None) == 0.0
    assert first_answer_rate(unseen, matrix) >= 0.9
    assert np.allclose(np.linalg.norm(adapt(unseen.questions, matrix), axis=1), 1.0)


def test_questions_without_an_answer_teach_nothing() -> None:
    unanswered = AskedNamespace(np.eye(4)[:2], np.eye(4), np.zeros((2, 4), dtype=bool))
    matrix = learn([unanswered])
    assert matrix.size == 0
    vector = np.eye(4)[0]
    assert adapt(vector, matrix) is vector and adapt(vector, None) is vector


def test_the_shipped_map_is_for_minilm_in_either_arithmetic_only() -> None:
    for model in (DEFAULT_MODEL, PACKAGED_MODEL):
        matrix = shipped_adapter(model)
        assert matrix is not None and matrix.shape == (384, 384) and np.isfinite(matrix).all()
    assert shipped_adapter("some-other-model") is None


def test_a_search_moves_the_question_by_the_map_of_the_corpus_model() -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(12, 384)))
    names = [f"m{i:02}_total" for i in range(12)]
    rows = [{"metric_name": name} for name in names]
    question = unit(vectors[0] + rng.normal(0, 0.05, 384))

    def dense(model: str, adapter: np.ndarray | None = None) -> np.ndarray:
        corpus = NamespaceCorpus.build(names, ["x"] * 12, rows, vectors, model)
        return signals(corpus, "x", question, adapter=adapter).scaled["dense"]

    assert not np.allclose(dense(DEFAULT_MODEL), dense(""))
    assert np.allclose(dense(DEFAULT_MODEL), dense("", adapter=shipped_adapter(DEFAULT_MODEL)))
    assert np.allclose(dense("some-other-model"), dense(DEFAULT_MODEL, adapter=np.zeros((0, 0))))


def test_writing_a_map_for_another_model_keeps_the_maps_of_the_others(tmp_path: Path) -> None:
    path = tmp_path / "query_adapter.npz"
    shutil.copy(QUERY_ADAPTER_FILE, path)
    minilm = shipped_adapter(DEFAULT_MODEL, path)
    write_adapter(np.eye(8, dtype=np.float32), ["my-model"], "8 questions of 1 service", path)
    assert np.array_equal(shipped_adapter(DEFAULT_MODEL, path), minilm)
    assert np.array_equal(shipped_adapter(PACKAGED_MODEL, path), minilm)
    assert np.array_equal(shipped_adapter("my-model", path), np.eye(8))
    # A model's map learned again replaces its own only.
    write_adapter(2 * np.eye(8, dtype=np.float32), ["my-model"], "16 questions of 2 services", path)
    assert np.array_equal(shipped_adapter("my-model", path), 2 * np.eye(8))
    assert np.array_equal(shipped_adapter(DEFAULT_MODEL, path), minilm)
