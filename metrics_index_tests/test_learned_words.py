"""Name words learned from questions whose answers are known, and what they do to a search."""

from __future__ import annotations

import numpy as np

from metrics_index.learned_words import Example, learn, learned_terms, shipped_table
from metrics_index.search import (
    DEFAULT_PARAMS,
    NamespaceCorpus,
    RankingParams,
    answered_documents,
    rank,
    says_failure,
    signals,
)


def asked(service: str, question: str, answer: str) -> Example:
    return Example(service, frozenset(question.split()), frozenset(answer.split()))


# Questions about other things, in six services: what a name word's frequency is measured against.
OTHERS = [asked(service, f"question{i}", f"answer{i}") for i, service in enumerate("abcdef" * 5)]


def test_a_pair_is_learned_only_when_three_services_ask_it() -> None:
    examples = [asked(s, "memory used", "process resident memory byte") for s in ("a", "b", "c")]
    examples += [asked("d", "queries answered", "dns queries total")] * 10  # another service's jargon, often
    examples += OTHERS
    table = learn(examples)
    assert table["memory"] == ("byte", "process", "resident")
    assert "queries" not in table and "answered" not in table  # one service only, however often
    assert "memory" not in learn(examples[1:])  # two services are not enough


def test_a_word_in_every_answer_is_not_learned() -> None:
    # "total" follows "memory" as often as any question: no more likely after it than anywhere.
    examples = [asked(s, f"{word} used", f"x {word} total") for s in "abc" for word in ("memory", "disk", "cpu")]
    examples += [asked(s, "memory used", "process resident total") for s in "abc"] + OTHERS
    table = learn(examples)
    assert "resident" in table["memory"] and "total" not in table["memory"]


def test_failure_words_are_left_to_the_failure_cue() -> None:
    examples = [asked(s, "failures seen", "x error") for s in "abc"] + OTHERS
    assert learn(examples)["failures"] == ("error", "x")
    assert learn(examples, says_failure)["failures"] == ("x",)


def test_learned_terms_leave_out_what_the_question_says() -> None:
    table = {"memory": ("byte", "resident"), "restart": ("start", "time")}
    assert learned_terms(["memory", "byte"], table) == ["resident"]
    assert learned_terms(["queue"], table) == []


def test_the_shipped_table_is_learned_from_the_corpus() -> None:
    table = shipped_table()
    assert table and all(isinstance(words, tuple) and words for words in table.values())


def test_learned_words_lift_a_metric_the_question_names_otherwise() -> None:
    names = ["process_resident_memory_bytes", "x_memory_pool_chunks", *(f"x_queries_{i}_total" for i in range(4))]
    documents = ["resident memory bytes", "memory pool chunks", *["queries answered"] * 4]
    rows = [{"meter_type": "gauge"}] * 2 + [{"meter_type": "counter"}] * 4
    vectors = np.array([[0.95, 0.31], [1.0, 0.0], *[[0.1, 0.995]] * 4])
    corpus = NamespaceCorpus.build(names, documents, rows, vectors)
    question, vector = "memory used by the daemon", np.array([1.0, 0.0])

    def first(table: dict, params: RankingParams = DEFAULT_PARAMS) -> str:
        found = signals(corpus, question, vector, learned_table=table)
        return corpus.names[answered_documents(corpus, question, found, params, 3)[0]]

    assert first({}) == "x_memory_pool_chunks"
    assert first({"memory": ("resident",)}) == "process_resident_memory_bytes"
    assert first({"memory": ("resident",)}, RankingParams(learned_weight=0.0)) == "x_memory_pool_chunks"
    assert first({"queue": ("resident",)}) == "x_memory_pool_chunks"  # a word the question does not use


def test_explain_names_the_learned_words_a_result_carries() -> None:
    corpus = NamespaceCorpus.build(
        ["process_resident_memory_bytes", "x_queries_total"],
        ["resident memory bytes", "queries answered"],
        [{"meter_type": "gauge"}, {"meter_type": "counter"}],
        np.array([[1.0, 0.0], [0.0, 1.0]]),
    )
    assert "resident" in shipped_table()["memory"]
    result = rank(corpus, "memory used by the daemon", np.array([1.0, 0.0]), explain=True)[0]
    assert result.metric_name == "process_resident_memory_bytes"
    assert any(reason.startswith("learned: ") and "resident" in reason for reason in result.matched)
    assert "second" in shipped_table()["uptim"]  # the table holds stems
    elapsed = NamespaceCorpus.build(
        ["x_elapsed_seconds", "x_queries_total"],
        ["elapsed", "queries"],
        [{"meter_type": "gauge"}] * 2,
        np.array([[1.0, 0.0], [0.0, 1.0]]),
    )
    result = rank(elapsed, "how long has the server been running, its uptime", np.array([1.0, 0.0]), explain=True)[0]
    assert "learned: seconds" in result.matched  # the name's word, not its stem
