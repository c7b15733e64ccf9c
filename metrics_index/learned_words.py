"""Words of metric names that questions ask for in other words, learned from the search corpus's questions.

A question asking for "memory used by the daemon" is answered by `process_resident_memory_bytes`, "open files
against the limit" by `process_max_fds`, "when was it restarted" by a start time: conventions of metric naming
that no help text states and a question never spells. `learn` reads them off questions whose answers are known
(bench/corpora: each question with its relevant metrics): a question word and a name word its answers carry but
the question does not, kept when the pair recurs in the questions of at least MIN_SERVICES services, follows the
question word at least MIN_SHARE of the time and is at least MIN_LIFT times likelier after it than in any answer.
Words of one service's jargon never recur, so they are never learned; nor are words that say a failure (`skip`): the
failure cue already lifts those names, on purpose weakly, since many names say one. The table ships as
`data/learned_words.json`, written by `bench/search_quality.py --write-learned` from the whole corpus; the
bench scores each service with a table learned without it.

A search looks the learned name words of its question's words up in the name index (search.signals); they add a
little (RankingParams.learned_weight) to the candidates that carry them, and find none by themselves.
"""

from __future__ import annotations

import functools
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LEARNED_WORDS_FILE", "Example", "learn", "learned_terms", "shipped_table"]

LEARNED_WORDS_FILE = Path(__file__).with_name("data") / "learned_words.json"
MIN_SERVICES = 3
MIN_SHARE = 0.2
MIN_LIFT = 5.0

Table = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Example:
    """One question whose answers are known: its search terms and the search terms of its answers' names."""

    service: str
    question_terms: frozenset[str]
    answer_terms: frozenset[str]


def learn(examples: Iterable[Example], skip: Callable[[str], bool] = lambda word: False) -> dict[str, tuple[str, ...]]:
    """Question term -> the name terms it asks for in other words (sorted), as the module says; a name term for which
    `skip` is true is never learned."""
    examples = list(examples)
    services: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    together: Counter[tuple[str, str]] = Counter()
    asked: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    for example in examples:
        asked.update(example.question_terms)
        answered.update(example.answer_terms)
        for term in example.question_terms:
            for word in example.answer_terms - example.question_terms:
                if skip(word):
                    continue
                services[term, word].add(example.service)
                together[term, word] += 1
    table: defaultdict[str, list[str]] = defaultdict(list)
    for (term, word), seen_in in services.items():
        share = together[term, word] / asked[term]
        if len(seen_in) >= MIN_SERVICES and share >= MIN_SHARE and share * len(examples) >= MIN_LIFT * answered[word]:
            table[term].append(word)
    return {term: tuple(sorted(words)) for term, words in sorted(table.items())}


def learned_terms(question_terms: Iterable[str], table: Table) -> list[str]:
    """The name terms `table` associates with the question's terms, minus those the question has (sorted)."""
    terms = set(question_terms)
    return sorted({word for term in terms for word in table.get(term, ())} - terms)


@functools.cache
def shipped_table() -> Table:
    """The table learned from the whole search corpus (data/learned_words.json)."""
    return {term: tuple(words) for term, words in json.loads(LEARNED_WORDS_FILE.read_text())["table"].items()}
