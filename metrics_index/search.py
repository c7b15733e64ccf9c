"""Hybrid metric search: lexical BM25 on names and documents, dense similarity, rank fusion.

A metric is found three ways, each strong where another is weak:
- BM25 over the name's words (`node_network_transmit_bytes_total` -> node network transmit bytes total,
  abbreviations spelled out): precise when the question uses the metric's own words;
- BM25 over the whole document text (name words, description, category, signal, meter type, unit);
- cosine similarity of sentence embeddings: finds "bytes sent" for `transmit` (the question's vector moved first
  by a linear map learned from the corpus's questions towards the way metric documents say things, query_adapter.py).
Their scores are merged (RankingParams: by default each ranker's scores scaled to [0, 1] over its top list and
weighted, the dense ranker most), then weighed by what the question's wording asks for ("per second" -> counters,
"right now" -> gauges, "how long" -> durations, "p99" -> histograms and summaries, "is it up" -> up/status gauges,
"is it blocking ..." -> 0/1 flags, "last restarted" -> start times, "limit" -> configuration values (otherwise
they yield), "bandwidth" -> metrics counting bytes, "dropped" -> metrics counting failures, "received" / "sent" ->
names of that direction); the monitoring's own metrics (scrapes) and, in an exporter's namespace, the exporter's
own runtime metrics (go_*, process_*) yield unless asked for. The settings are chosen leave-one-service-out by
bench/search_quality.py on a corpus of real services. A question that is, or starts, a metric name puts those
metrics first whatever the fusion says. Everything is scoped to one namespace.

The namespace's documents and vectors are read from the semantic index once and kept in memory with their
BM25 indexes, so a warm search costs one query embedding and a few vector operations. The cache follows the
writer: when the namespace's revision (or the store's stamp) moves, it is read again once no writer holds the store.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import bm25s
import numpy as np

from metrics_index.answers import compact_json
from metrics_index.confidence import is_weak
from metrics_index.dense import DenseVectors
from metrics_index.kinds import metric_kind
from metrics_index.label_preference import DEPTH as LABEL_DEPTH
from metrics_index.label_preference import prefer_labelled, wanted_labels
from metrics_index.learned_words import Table, learned_terms, shipped_table
from metrics_index.query_adapter import adapt, shipped_adapter
from metrics_index.text import (
    ABBREVIATIONS,
    GLUED_PIECE,
    SYNONYM_GROUPS,
    help_vocabulary,
    search_terms,
    split_name,
    synonym_words,
    term_words,
    unglue,
)

if TYPE_CHECKING:
    from metrics_index.embeddings import Embedder
    from metrics_index.stores.semantic_index import SemanticIndex

log = logging.getLogger(__name__)

DEPTH = 100  # how deep each ranker's list is read for fusion
SEMANTIC_EXPLAIN_RANK = 10  # "semantic" is given as a reason when the dense ranker put the metric this high
REMOTE_REVALIDATE_SECONDS = 300.0  # a Chroma server has no cheap change stamp: re-read at most this often
MAX_CACHED_NAMESPACES = 16  # a 50k-metric namespace holds about 150 MB of vectors and indexes

# The metadata a result or an explanation needs; the rest of a document's metadata is not kept in memory.
KEPT_FIELDS = (
    "type", "unit", "description", "category", "subcategory", "golden_signal_type", "meter_type", "metric_kind",
    "promql_hint", "label_names",
)  # fmt: skip
EXPLAIN_FIELDS = {
    "description": "description",
    "category": "category",
    "subcategory": "category",
    "golden_signal_type": "golden_signal",
    "meter_type": "meter_type",
    "unit": "unit",
}
_NAME_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass(frozen=True)
class RankingParams:
    """Everything the ranking's quality depends on. The defaults are what bench/search_quality.py chooses
    on its whole development corpus; its leave-one-service-out scores choose them without each service.

    fusion "rrf": sum of weight / (rrf_k + rank) over the rankers; "score": sum of weight x the ranker's
    score scaled to [0, 1] over its top DEPTH. A metric of a trait the question asks for (question_cues)
    is multiplied by 1 + cue_boost (by 1 + failure_boost for the failure cue: a failure word is in many of a
    namespace's names, errors, drops, rejects, and the question's other words must say which). A configuration
    value, build information or self-monitoring metric the question does not ask for is multiplied by
    1 - kind_penalty; the monitoring's own metrics (scrapes, collectors, a client library's `x_created` timestamps)
    and, in an exporter's namespace, a client library's runtime metric (go_*, process_*, promhttp_*: the exporter's
    own process) by 1 - runtime_penalty unless the question names the exporter, a runtime, or scrapes and
    collectors (RUNTIME_ASKED; "the database process" and "when was it restarted" ask about the service, not the
    exporter). Last, a candidate carrying name words learned for the question's words (learned_words.py) gains
    learned_weight x their name-index score, scaled by the best.
    """

    weights: tuple[tuple[str, float], ...] = (("name", 0.5), ("text", 1.0), ("dense", 4.0))
    fusion: str = "score"
    rrf_k: int = 20
    cue_boost: float = 0.7
    failure_boost: float = 0.35
    kind_penalty: float = 0.4
    runtime_penalty: float = 0.6
    learned_weight: float = 0.1

    def weight(self, ranker: str) -> float:
        return next((w for r, w in self.weights if r == ranker), 0.0)


DEFAULT_PARAMS = RankingParams()
RANKERS = ("name", "text", "dense")
Item = TypeVar("Item")  # a search result, or a (document, score) pair

# What a question asks for, by its wording: each cue names a metric trait (see metric_traits).
QUESTION_CUES: dict[str, re.Pattern[str]] = {
    "counter": re.compile(
        r"\b(per (second|minute|hour|sec|s)|rate|throughput|/s|qps|rps|how (many|much) \w+ .*\b(handl|serv|process)\w*"
        r"|how fast(?!.*\b(answer|respond|repl|serv|return)\w*)|how often|how many times)\b",
        re.IGNORECASE,
    ),
    "current": re.compile(
        r"\b(right now|currently|current|at (the|this) moment|in flight|in progress|simultaneous\w*|concurrent\w*"
        r"|at once|how many (?!times\b)\w+( \w+){0,4} (are|is))\b",
        re.IGNORECASE,
    ),
    "duration": re.compile(
        r"\b(how long|latency|latencies|duration|durations|slow|slowest|response times?|p\d\d|percentiles?|quantiles?"
        r"|time (taken|spent) (to|on|by|in|at)|time (\w+ ){0,3}(spent|spend|spends) \w+ing"
        r"|time (\w+ ){1,3}(spend|spends) (on|in)"
        r"|how (fast|quickly)(?=.*\b(answer|respond|repl|serv|return)\w*))\b",
        re.IGNORECASE,
    ),
    "availability": re.compile(
        r"\b(is (the |it |an? |\w+ ){0,4}(up|down|alive|running(?! out| low)|reachable|healthy|sick|online|offline"
        r"|still (answering|responding|serving))"
        r"|which \w+( \w+){0,4} (is|are) (up|down|alive|running|online|offline|stopped|dead|errored)"
        r"|up or down|reachable|(can|could(?! not)) (the |it |\w+ ){0,2}(reach|talk to|connect to|read|access)"
        r"|marked( \w+){0,3} (as )?(down|up|sick|unhealthy|failed)|alive|liveness|readiness|healthy|health)\b",
        re.IGNORECASE,
    ),
    "start": re.compile(
        r"\b(restart\w*|reboot\w*|uptime|started|start time|boot(ed)?|since when|running since"
        r"|been (running|up|established)|when (did|does|do) .{0,40}\b(start|begin|come up))\b",
        re.IGNORECASE,
    ),
    "failure": re.compile(
        r"\b(fail\w*|errors?|erroring|broken|breaks|breaking|bad|invalid|reject\w*|refus\w*|drop\w*|lost|los(e|ing)|discard\w*"
        r"|tim(ed|ing) out|timeouts?|abort\w*|crash\w*|panic\w*|denied|refused|unauthori[sz]ed|forbidden|blocked"
        r"|overflow\w*|evict\w*)\b",
        re.IGNORECASE,
    ),
    # "Traffic" alone is also the golden signal (requests a second); network traffic is bytes.
    "bytes": re.compile(
        r"\b(bytes|octets|bandwidth|how much data|data (sent|received|transferred)|traffic (in|out)"
        r"|(network|net|interface|link|disk|data|inbound|outbound|incoming|outgoing|ingress|egress) traffic)\b",
        re.IGNORECASE,
    ),
    "configuration": re.compile(
        r"\b(limits?|settings?(?! up)|configured|configuration|config|maximum allowed|max allowed|allowed|threshold"
        r"|capacity|set to|(allocated|assigned|granted|provisioned) (to|for))\b",
        re.IGNORECASE,
    ),
}
# Cues that lift runtime_penalty: the question names the exporter or a runtime, or asks about the monitoring itself.
RUNTIME_ASKED = frozenset({"runtime", "self_monitoring"})
# Kinds a question must ask for before they rank fully (otherwise kind_penalty applies).
PENALISED_KINDS = frozenset({"configuration", "info", "self_monitoring"})
# Not "exporter": "can the exporter reach it" asks about the service, seen from the exporter.
_SELF_MONITORING_WORDS = re.compile(r"\b(scrape\w*|collector\w*|collecting)\b", re.IGNORECASE)
# "Since the last scrape", "between scrapes": a window of time, not a question about the scrapes.
_SCRAPE_WINDOW = re.compile(r"\b(since|between) (the )?(last |previous )?scrapes?\b", re.IGNORECASE)
# The metrics every Prometheus client library exports about its own process: the same in every namespace.
_RUNTIME_PREFIXES = ("go_", "process_", "promhttp_", "python_", "jvm_")
# An exporter says whether it reached its service (`<service>_up`) or names itself (`<service>_exporter_...`): then
# the client library's runtime metrics describe the exporter's process, not the service.
_EXPORTER_NAME = re.compile(r"^[a-z]+_up$|_exporter_")
_RUNTIME_WORDS = re.compile(
    r"\b(exporter\w*|runtime|go|golang|garbage|gc|goroutines?|heap|jvm|python)\b", re.IGNORECASE
)  # not "process": "the database process", "worker processes" are the service's
# "<something> since boot" or "since the daemon started": a running total, not a start time ("running since",
# "since when", "seconds since it started" and "how long since" still ask for one).
_SINCE_START = re.compile(
    r"\b(?<!running )(?<!up )(?<!seconds )(?<!minutes )(?<!hours )(?<!days )(?<!time )(?<!long )since (the )?(last )?"
    r"(\w+ )?(boot|booted|start|started|startup|restart|restarted)\b",
    re.IGNORECASE,
)
# A ratio of events ("hit ratio", "share of answers that fail") is a pair of counters; a share of a capacity in use
# ("percentage of worker slots in use") is a pair of gauges.
_RATIO = re.compile(
    r"\b(ratios?|fractions?|share of|proportion|percentage|percent|hit rate|miss rate)\b", re.IGNORECASE
)
_USAGE = re.compile(
    r"\b(in use|used|use|usage|utili[sz]ation|full|limit|allocation|allocated|capacity)\b", re.IGNORECASE
)
_THROUGHPUT = re.compile(r"\bthroughput\b", re.IGNORECASE)
# "How full is the cache", "CPU in percent": a share of a whole, which a metric may export as a percentage or ratio.
_PROPORTION = re.compile(r"\b(how full|percent|percentage|utili[sz]ation|utili[sz]ed)\b|%", re.IGNORECASE)
_PROPORTION_NAME = re.compile(r"(^|_)(percent|percentage|pct|ratio|utili[sz]ation)(_|$)")
_PROPORTION_HELP = re.compile(r"\b(percent|percentage|ratio|fraction)\b", re.IGNORECASE)
_COUNTED_THINGS = re.compile(
    r"\b(requests?|quer(y|ies)|messages?|transactions?|operations?|ops|packets?|connections?|events?|calls?)\b",
    re.IGNORECASE,
)
_INFO_WORDS = re.compile(r"\b(version|build|revision|info|information|release)\b", re.IGNORECASE)
# A status gauge names its state last (`x_up`, `x_server_status`, `x_domain_state_code`);
# `mysql_global_status_uptime` is an uptime from a status table, not a status.
_AVAILABILITY_WORDS = re.compile(
    r"(^|_)(up|status|health|healthy|ready|alive|reachable|success|successful|running|state|states)(_code)?$"
)
# A state after a plural noun counts the things in it (`threads_running`, `workers_ready`): a count, not a status.
_COUNTED_STATE = re.compile(r"[a-z]{2}[^su_]s_(running|connected|up|ready|alive|healthy|reachable)$")
# A yes-or-no question ("is the broker blocking publishers", "has the origin been marked sick") is answered by a
# flag: a gauge that is 0 or 1 (its help says "whether", "1 if"), or a status gauge.
_YES_NO = re.compile(r"^\s*(is|are|has|have|can|does|do|did|was|were)\b", re.IGNORECASE)
_FLAG_HELP = re.compile(r"\b(whether|is 1 if|1 if|1 when|true if|0 or 1)\b", re.IGNORECASE)
_PERCENTILE = re.compile(r"\b(p\d\d|\d\dth|percentiles?|quantiles?|median|distribution|histogram)\b", re.IGNORECASE)
_SERVED = re.compile(r"\b(served|serving|serves)\b", re.IGNORECASE)
_START_WORDS = re.compile(r"(^|_)(start|started|restart|restarts|boot|uptime)(_|$)")
_TIME_WORDS = re.compile(r"(^|_)(uptime|time|timestamp|seconds)(_|$)")
_COUNTED_STARTS = re.compile(r"(^|_)(starts|restarts|count)(_|$)")  # `pm2_restarts` counts, whatever its type
# "When did it restart", "how long has it been up": a start time or an uptime, not how many starts.
_ASKS_START_TIME = re.compile(
    r"^\s*when\b|\b(since when|running since|how long|uptime|been (up|running))\b", re.IGNORECASE
)
_FAILURE_WORDS = re.compile(
    r"(fail|error|err(_|$)|errs|bad|invalid|reject|refus|drop|lost|discard|timeout|timedout|timed_out|abort|crash"
    r"|panic|denied|unauthori[sz]ed|forbidden|blocked|overflow|evict|nuked|killed|bogus|servfail|mismatch|lame|truncat"
    r"|filter)"  # what a filter counts, it kept out
)
_BYTE_WORDS = re.compile(r"(bytes|octets)(_|$)")
_DURATION_UNITS = {"seconds", "milliseconds", "microseconds", "nanoseconds"}
# The direction a question asks about, as the service sees it ("received", "incoming", "uploads" come in; "sent",
# "outgoing", "forwarded" go out; reads and writes), and the name words that carry it (glued ones too: `outqueries`).
# A cue only when the question names one side of an axis and not the other ("traffic in and out" asks for both).
_INBOUND_WORDS = frozenset({
    "in", "ins", "input", "incoming", "inbound", "ingress", "receive", "received", "recv", "rcvd", "rx", "import",
    "imported", "imports",
})  # fmt: skip
_OUTBOUND_WORDS = frozenset({
    "out", "outs", "output", "outgoing", "outbound", "egress", "send", "sent", "tx", "transmit", "transmitted",
    "export", "exported", "exports",
})  # fmt: skip
DIRECTIONS: dict[str, tuple[re.Pattern[str], frozenset[str]]] = {
    "inbound": (
        re.compile(
            r"\b(receiv\w*|incoming|inbound|ingress|uploads?|uploaded|imports?|imported|(bytes|traffic|data) in)\b"
        ),
        _INBOUND_WORDS,
    ),
    "outbound": (
        re.compile(
            r"\b(sen[dt]s?|sending|outgoing|outbound|egress|downloads?|downloaded|exports?|exported|transmit\w*"
            r"|forwarded|(bytes|traffic|data) out)\b"
        ),
        _OUTBOUND_WORDS,
    ),
    "read": (re.compile(r"\b(reads?|reading)\b"), frozenset({"read", "reads", "rd"})),
    "write": (re.compile(r"\b(writes?|writing|written|wrote)\b"), frozenset({"write", "writes", "written", "wr"})),
}
_SIZE_DIRECTIONS = {
    "outbound": frozenset({"response", "responses", "resp", "reply", "replies"}),
    "inbound": frozenset({"request", "requests", "req", "reqs", "query", "queries"}),
}
_TIMED_OUT = re.compile(r"(?i)time[ds]?_?out")
_BOTH_DIRECTIONS = re.compile(r"\b(in and out|out and in|both ways|in both directions)\b")
_GLUED_DIRECTION_WORDS = tuple(w for _p, words in DIRECTIONS.values() for w in words if len(w) >= GLUED_PIECE)
# Lower-case names that contain a direction word (the shortest of those that contain others): may glue one.
_GLUED_DIRECTION = re.compile(
    "|".join(sorted({w for w in _GLUED_DIRECTION_WORDS if not any(o != w and o in w for o in _GLUED_DIRECTION_WORDS)}))
)
_OPPOSITE = {"inbound": "outbound", "outbound": "inbound", "read": "write", "write": "read"}


# "per second" asks for a rate (a counter), not for a metric about seconds: the rankers do not see it.
_RATE_PHRASE = re.compile(r"\b(per|a|each|every) (second|sec|minute|min|hour)\b|/s\b|\bper-second\b", re.IGNORECASE)


def retrieval_text(question: str) -> str:
    """The question as the rankers see it: without rate phrases, whose words would match durations."""
    return " ".join(_RATE_PHRASE.sub(" ", question).split()) or question


def query_text(corpus: NamespaceCorpus, question: str, synonyms: tuple[tuple[str, ...], ...] = SYNONYM_GROUPS) -> str:
    """The question as every ranker sees it in this namespace: its retrieval text, followed by the synonyms the
    namespace uses of the question words it never or once uses (text.SYNONYM_GROUPS: "worker process crashes" is
    also "panic died" where no metric says crash). What the question's embedding is made of."""
    text = retrieval_text(question)
    words = synonym_words(search_terms(text), lambda term: term_documents(corpus.text_index, term), synonyms)
    return " ".join([text, *words])


def term_documents(index: bm25s.BM25, term: str) -> int:
    """How many documents of a BM25 index use `term` (its column in the index's term-major score matrix)."""
    column = index.vocab_dict.get(term)
    indptr = index.scores["indptr"]
    return int(indptr[column + 1] - indptr[column]) if column is not None and column + 1 < len(indptr) else 0


def question_cues(question: str) -> frozenset[str]:
    """The traits a question asks for by its wording ("per second" -> counter, "right now" -> a gauge's current
    value, "how long" -> duration...), plus the metric kinds it names (configuration, info, self_monitoring)."""
    cues = {cue for cue, pattern in QUESTION_CUES.items() if pattern.search(question)}
    if _RATIO.search(question):
        cues.discard("failure")  # "share of answers that are errors": the errors and the total of all answers
        if not _USAGE.search(question):
            cues.add("counter")  # "cache hit ratio": hits and misses counted; "memory in use as a percentage": gauges
    if _SINCE_START.search(question):
        cues.discard("start")  # "forks since boot" asks for a running total
        cues.add("counter")
    if "start" in cues and not _ASKS_START_TIME.search(question):
        cues.add("start_count")  # "how often does it restart"; "when did it restart" asks for a time
    if "current" in cues and _RATE_PHRASE.search(question):
        cues.discard("current")  # "number of queries per second": a rate
    if "current" in cues:
        cues.discard("counter")  # "how many requests is it handling right now" asks for a gauge, not a rate
    if _SELF_MONITORING_WORDS.search(_SCRAPE_WINDOW.sub(" ", question)):
        cues.add("self_monitoring")
    if _RUNTIME_WORDS.search(question) and "availability" not in cues:
        cues.add("runtime")  # lifts runtime_penalty; "can the exporter reach it" asks about the service
    if _YES_NO.search(question):
        cues.add("flag")
    if _PERCENTILE.search(question):
        cues.add("distribution")
    if _PROPORTION.search(question):
        cues.add("proportion")
    lower = question.lower()
    asked = {d for d, (pattern, _words) in DIRECTIONS.items() if pattern.search(lower)}
    if _BOTH_DIRECTIONS.search(lower):
        asked |= {"inbound", "outbound"}
    cues.update(d for d in asked if _OPPOSITE[d] not in asked)
    if _THROUGHPUT.search(question) and not _COUNTED_THINGS.search(question):
        cues.add("bytes")  # "disk read throughput" is bytes a second; "request throughput" is a rate of requests
    if "bytes" in cues and _SERVED.search(question) and "inbound" not in cues:
        cues.add("outbound")  # "bandwidth served to clients" goes out; "requests served" is no direction
    if _INFO_WORDS.search(question):
        cues.add("info")
        cues.discard("availability")  # "which version is running"
    return frozenset(cues)


def says_failure(word: str) -> bool:
    """Whether a name, or a word of one, says a failure (the failure trait: errors, drops, rejects...). DNS NOERROR
    is a success."""
    return bool(_FAILURE_WORDS.search(word.replace("noerror", "")))


def metric_traits(name: str, row: Mapping[str, Any]) -> set[str]:
    """The traits of one metric that question cues can ask for, and its kind."""
    meter = str(row.get("meter_type") or row.get("type") or "unknown")
    unit = str(row.get("unit") or "")  # resolved at enrichment (metrics_index.units)
    help_text = str(row.get("description") or "")
    kind = str(row.get("metric_kind") or metric_kind(name, meter, help_text))
    traits = {kind}
    # The type says what a value is; an untyped one may be a counter or a gauge (both cues may ask for it), unless
    # its name ends in _total. A gauge named `..._total` (a total size) is no counter.
    if meter in ("counter", "unknown"):
        traits.add("counter")
    if meter == "gauge" or (meter == "unknown" and not name.endswith("_total")):
        traits.add("current")  # a value at this moment: what "right now" asks for
    timestamp = "epoch" in unit or name.endswith("_timestamp_seconds")
    if not timestamp and (meter in ("histogram", "summary") or unit in _DURATION_UNITS):
        traits.add("duration")
    base = name.lower()
    if (
        meter not in ("counter", "histogram", "summary")
        and _AVAILABILITY_WORDS.search(base)
        and not _COUNTED_STATE.search(base)
    ):
        traits.add("availability")
    if meter not in ("counter", "histogram", "summary") and ("availability" in traits or _FLAG_HELP.search(help_text)):
        traits.add("flag")  # 0 or 1: what a yes-or-no question asks for
    if says_failure(base):
        traits.add("failure")
    if unit == "bytes" or _BYTE_WORDS.search(base):
        traits.add("bytes")  # an amount of data: what "bandwidth" and "traffic" count
    if meter in ("histogram", "summary") or _PERCENTILE.search(help_text):
        traits.add("distribution")
    if meter not in ("counter", "histogram", "summary") and (
        unit in ("percent", "ratio") or _PROPORTION_NAME.search(base) or _PROPORTION_HELP.search(help_text)
    ):
        traits.add("proportion")  # a share of a whole: what "how full" and "in percent" ask for
    if _START_WORDS.search(base) and kind != "configuration":
        # a start time or an uptime, or a count of starts; not a setting about starting
        counted = meter == "counter" or _COUNTED_STARTS.search(base)
        traits.add("start_count" if counted and not _TIME_WORDS.search(base) else "start")
    directions = direction_traits(name)
    if "bytes" in traits and not directions:  # the size of what a server answers goes out, of what it is asked in
        words = set(split_name(name))
        directions |= {d for d, carried in _SIZE_DIRECTIONS.items() if words & carried}
    return traits | directions


def direction_traits(
    name: str, vocabulary: frozenset[str] = frozenset(), pieces: dict[str, tuple[str, ...]] | None = None
) -> set[str]:
    """The directions a metric's name carries (DIRECTIONS), from its words and the words glued in them, split with
    the namespace's vocabulary (`pieces` keeps the splits between calls). "Timed out" is no direction."""
    pieces = {} if pieces is None else pieces
    words = set()
    for word in split_name(_TIMED_OUT.sub("", name)):
        words.add(word)
        words.update(ABBREVIATIONS.get(word, "").split())  # `rcvbuf`: receive buffer
        if word not in pieces:
            glued = vocabulary and len(word) > GLUED_PIECE and _GLUED_DIRECTION.search(word)
            pieces[word] = unglue(word, vocabulary) if glued else ()  # nothing splits without a vocabulary
        words.update(pieces[word])
    return {direction for direction, (_pattern, names) in DIRECTIONS.items() if words & names}


@dataclass
class SearchResult:
    metric_name: str
    score: float
    type: str
    unit: str
    description: str
    matched: list[str] = field(default_factory=list)
    promql: str = ""  # how to query it (promql.query_hint), when the index has it
    similarity: float = 0.0  # cosine of the question's and the document's embeddings
    weak: bool = False  # not close in meaning to the question, nor named by it (confidence.py)


@dataclass
class CorpusParts:
    """What a corpus is built from, one entry per document in one order: kept with the corpus so that a reload
    prepares only the documents whose hash changed (the hash of the index's metadata, stores/semantic_index.py)."""

    names: list[str]
    hashes: list[str]  # "" when unknown: such a document is prepared again at every reload
    rows: list[dict[str, str]]  # KEPT_FIELDS
    vectors: np.ndarray  # unit length
    name_terms: list[str]  # search terms of the name, space-separated
    text_terms: list[str]  # search terms of the document text, space-separated
    traits: list[frozenset[str]]  # metric_traits

    @classmethod
    def prepare(
        cls,
        names: Sequence[str],
        documents: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
        vectors: Any,
        hashes: Sequence[str] | None = None,
    ) -> CorpusParts:
        matrix = np.asarray(vectors, dtype=np.float32)
        kept = [{k: str(row.get(k) or "") for k in KEPT_FIELDS} for row in rows]
        return cls(
            names=list(names),
            hashes=list(hashes) if hashes is not None else [""] * len(names),
            rows=kept,
            vectors=matrix / np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12, None),
            name_terms=[" ".join(search_terms(name)) for name in names],
            text_terms=[" ".join(search_terms(doc)) for doc in documents],
            traits=[frozenset(metric_traits(name, row)) for name, row in zip(names, kept, strict=True)],
        )

    def take(self, order: Sequence[int]) -> CorpusParts:
        return CorpusParts(
            names=[self.names[i] for i in order],
            hashes=[self.hashes[i] for i in order],
            rows=[self.rows[i] for i in order],
            vectors=self.vectors[np.asarray(order, dtype=np.int64)],
            name_terms=[self.name_terms[i] for i in order],
            text_terms=[self.text_terms[i] for i in order],
            traits=[self.traits[i] for i in order],
        )

    def __add__(self, other: CorpusParts) -> CorpusParts:
        return CorpusParts(
            names=self.names + other.names,
            hashes=self.hashes + other.hashes,
            rows=self.rows + other.rows,
            vectors=np.concatenate([self.vectors, other.vectors]),
            name_terms=self.name_terms + other.name_terms,
            text_terms=self.text_terms + other.text_terms,
            traits=self.traits + other.traits,
        )


@dataclass
class NamespaceCorpus:
    """One namespace's documents, ready to rank: metadata rows, unit vectors, and two BM25 indexes."""

    names: list[str]
    rows: list[dict[str, str]]
    vectors: np.ndarray
    dense: DenseVectors  # the vectors, ready for the dense ranker's top list
    name_index: bm25s.BM25
    text_index: bm25s.BM25
    position: dict[str, int]
    by_lower_name: list[tuple[str, int]]
    traits: dict[str, np.ndarray]  # trait -> boolean mask over the documents (metric_traits)
    parts: CorpusParts
    model: str = ""  # the embedding model of the vectors ("": unknown), which says what query map applies

    @classmethod
    def build(
        cls,
        names: Sequence[str],
        documents: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
        vectors: Any,
        model: str = "",
    ) -> NamespaceCorpus:
        return cls.from_parts(CorpusParts.prepare(names, documents, rows, vectors), model)

    @classmethod
    def from_parts(cls, parts: CorpusParts, model: str = "") -> NamespaceCorpus:
        """Index the documents in name order, so that equal scores always rank alphabetically."""
        parts = parts.take(sorted(range(len(parts.names)), key=parts.names.__getitem__))
        return cls.assemble(parts, bm25_index(parts.name_terms), bm25_index(parts.text_terms), model)

    @classmethod
    def assemble(
        cls, parts: CorpusParts, name_index: bm25s.BM25, text_index: bm25s.BM25, model: str = ""
    ) -> NamespaceCorpus:
        """The corpus of parts already in name order and their BM25 indexes (built, or read from a snapshot)."""
        names = parts.names
        traits = with_glued_directions(names, parts.rows, parts.traits)
        masks = {t: np.array([t in doc for doc in traits], dtype=bool) for t in frozenset().union(*traits)}
        own = masks.get("self_monitoring", np.zeros(len(names), dtype=bool))  # scrapes, collectors: in any namespace
        if any(_EXPORTER_NAME.search(name) for name in names):
            own = own | np.array([name.startswith(_RUNTIME_PREFIXES) for name in names], dtype=bool)
        own = own | creation_timestamps(names, parts.rows)
        if own.any():
            masks["exporter_runtime"] = own
        return cls(
            names=names,
            rows=parts.rows,
            vectors=parts.vectors,
            dense=DenseVectors(parts.vectors),
            name_index=name_index,
            text_index=text_index,
            position={name: i for i, name in enumerate(names)},
            by_lower_name=sorted(zip([name.lower() for name in names], range(len(names)), strict=True)),
            traits=masks,
            parts=parts,
            model=model,
        )


def creation_timestamps(names: Sequence[str], rows: Sequence[Mapping[str, str]]) -> np.ndarray:
    """Which metrics are a client library's `x_created` gauges: the time each series of the counter, histogram or
    summary `x` was created (Python's client serves them in the classic text format), which share the family's help
    and words but answer no question about it. A counter named `x_created` counts creations and is not one."""
    measured = set()
    for name, row in zip(names, rows, strict=True):
        if row["type"] == "counter":
            measured.add(name.removesuffix("_total"))
        elif row["type"] in ("histogram", "gaugehistogram", "summary"):
            measured.add(name)
    return np.array(
        [
            name.endswith("_created") and row["type"] in ("gauge", "unknown") and name[: -len("_created")] in measured
            for name, row in zip(names, rows, strict=True)
        ],
        dtype=bool,
    )


def with_glued_directions(
    names: Sequence[str], rows: Sequence[Mapping[str, str]], traits: Sequence[frozenset[str]]
) -> list[frozenset[str]]:
    """`traits` plus the directions of words glued in names (`outqueries`), split with the vocabulary of the
    namespace's descriptions: only names that may glue a direction word are split again."""
    glued = [i for i, name in enumerate(names) if _GLUED_DIRECTION.search(name.lower())]
    if not glued:
        return list(traits)
    abbreviations = {word for word in ABBREVIATIONS if len(word) >= GLUED_PIECE and word.isalpha()}
    vocabulary = help_vocabulary(row["description"] for row in rows) | abbreviations
    pieces: dict[str, tuple[str, ...]] = {}
    found = list(traits)
    for i in glued:
        found[i] = found[i] | direction_traits(names[i], vocabulary, pieces)
    return found


def bm25_index(documents: Sequence[str], k1: float = 1.5, b: float = 0.75) -> bm25s.BM25:
    """bm25s's Lucene BM25 over space-separated terms, its score matrix computed with whole-array numpy
    operations instead of bm25s's per-document Python loop (50k documents: well under a second instead of
    several, during which a warm service's searches wait for the GIL). Scores equal `BM25().index(...)`'s."""
    import pandas as pd  # here, not at the top: a search answered from a snapshot (search_snapshot.py) never needs it

    # Joined by single spaces, an empty document is one "" term, as bm25s indexes it.
    ids, terms = pd.factorize(np.array(" ".join(documents).split(" "), dtype=object))
    lengths = np.array([doc.count(" ") + 1 for doc in documents], dtype=np.int64)
    n_docs, n_vocab = len(documents), len(terms)
    pairs, tf = np.unique(ids * n_docs + np.repeat(np.arange(n_docs), lengths), return_counts=True)
    token, doc = np.divmod(pairs, n_docs)  # sorted by token, then document: the CSC layout bm25s reads
    df = np.bincount(token, minlength=n_vocab)
    idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    tfc = tf / (k1 * ((1 - b) + b * lengths[doc] / lengths.mean()) + tf)
    scores = {
        "data": (idf[token] * tfc).astype(np.float32),
        "indices": doc.astype(np.int32),
        "indptr": np.concatenate([[0], np.cumsum(df)]),
        "num_docs": n_docs,
    }
    vocab = dict(zip(terms.tolist(), range(n_vocab), strict=True))
    vocab.setdefault("", n_vocab)
    return bm25_from_scores(scores, vocab, k1, b)


def bm25_from_scores(scores: dict[str, Any], vocab: dict[str, int], k1: float, b: float) -> bm25s.BM25:
    """A bm25s index from its score matrix (CSC: data, indices, indptr, num_docs) and vocabulary."""
    index = bm25s.BM25(k1=k1, b=b)
    index.scores = scores
    index.nonoccurrence_array = None
    index.vocab_dict = vocab
    index.unique_token_ids_set = set(vocab.values())
    return index


def load_corpus(
    index: SemanticIndex, namespace: str, previous: NamespaceCorpus | None = None
) -> NamespaceCorpus | None:
    """Read the namespace's documents, with metadata and embeddings (None when it has none). With `previous`
    (the corpus held so far), only the metadata of every document is read, then the text and embedding of the
    documents whose hash is new; the others are taken from `previous` as they are.

    Read in pages by id (SemanticIndex.pages), which keeps Chroma's read buffers small; the store is held for
    reading throughout, so both reads see one version.
    """
    from metrics_index.stores.semantic_index import document_id

    with index.reading():
        model = index.embedder.model_id
        if previous is None:
            return _corpus(_read_parts(index, namespace, None, ["documents", "metadatas", "embeddings"]), model)
        listing = {
            metadata["metric_name"]: metadata.get("doc_hash") or ""
            for page in index.pages(namespace, ["metadatas"])
            for metadata in page["metadatas"]
        }
        held = previous.parts
        kept = [
            i
            for i, (name, digest) in enumerate(zip(held.names, held.hashes, strict=True))
            if digest and listing.get(name) == digest
        ]
        fresh = sorted(set(listing) - {held.names[i] for i in kept})
        ids = [document_id(namespace, name) for name in fresh]
        parts = held.take(kept)
        if ids:
            parts = parts + _read_parts(index, namespace, ids, ["documents", "metadatas", "embeddings"])
        return _corpus(parts, model)


def _read_parts(index: SemanticIndex, namespace: str, ids: Sequence[str] | None, include: list[str]) -> CorpusParts:
    names: list[str] = []
    documents: list[str] = []
    rows: list[dict] = []
    vectors: list[np.ndarray] = []
    for page in index.pages(namespace, include, ids=ids):
        for metadata, document in zip(page["metadatas"], page["documents"], strict=True):
            names.append(metadata["metric_name"])
            documents.append(document or "")
            rows.append(metadata)
        vectors.append(np.asarray(page["embeddings"], dtype=np.float32))
    hashes = [row.get("doc_hash") or "" for row in rows]
    matrix = np.concatenate(vectors) if vectors else np.empty((0, 0), dtype=np.float32)
    return CorpusParts.prepare(names, documents, rows, matrix, hashes)


def _corpus(parts: CorpusParts, model: str) -> NamespaceCorpus | None:
    return NamespaceCorpus.from_parts(parts, model) if parts.names else None


@dataclass(frozen=True)
class _Entry:
    version: Any
    corpus: NamespaceCorpus | None


class _CorpusCache:
    """Namespace corpora kept between searches and tagged with the version they were read at (the namespace's
    revision, or the store's stamp). A namespace is read at its first search. When its version moves, the search
    that notices reads it again, unless a writer holds the store right now or another thread is already reading
    it: then the copy in memory answers, and a later search reloads. A reload that fails keeps the copy too. So a
    re-index in another process never fails a search or empties its answer, and a process sees its own writes at
    its next search. The least recently searched namespaces are dropped beyond MAX_CACHED_NAMESPACES."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}

    def get(self, index: SemanticIndex, namespace: str, version: Any) -> NamespaceCorpus | None:
        key = (str(index.collection.id), namespace)
        with self._lock:
            entry = self._entries.get(key)
            loading = self._loading.setdefault(key, threading.Lock())
        if entry is None:
            with loading:  # the first read: concurrent first searches wait for it
                entry = self._entries.get(key) or self._put(key, _Entry(version, load_corpus(index, namespace)))
        elif entry.version != version and loading.acquire(blocking=False):
            try:
                entry = self._reload(key, index, namespace, version, entry.corpus) or entry
            finally:
                loading.release()
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
        return entry.corpus

    def _reload(
        self, key: tuple[str, str], index: SemanticIndex, namespace: str, version: Any, held: NamespaceCorpus | None
    ) -> _Entry | None:
        from metrics_index.stores.lock import StoreBusyError  # Redis: imported by what reads a store, not by search

        try:
            with index.reading(wait_seconds=0):
                return self._put(key, _Entry(version, load_corpus(index, namespace, held)))
        except StoreBusyError:
            return None  # a writer is at work: answer from memory, reload at a later search
        except Exception:
            log.exception("re-reading %s failed; answering from the copy in memory", namespace)
            return None

    def _put(self, key: tuple[str, str], entry: _Entry) -> _Entry:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_CACHED_NAMESPACES:
                dropped, _ = self._entries.popitem(last=False)
                self._loading.pop(dropped, None)
        return entry


_CACHE = _CorpusCache()


def store_stamp(index: SemanticIndex) -> Any:
    """Changes whenever the store may have changed: for embedded Chroma the generation its writers leave in the
    store's lock file (an O(1) read). A Chroma server offers no such check: its collection size plus a time
    window stand in; pass the namespace's revision (stores/revision.py) to `search` instead."""
    generation = index.generation()
    if generation is not None:
        return ("embedded", generation)
    return ("remote", index.collection.count(), int(time.monotonic() // REMOTE_REVALIDATE_SECONDS))


def search(
    index: SemanticIndex, namespace: str, question: str, k: int = 10, explain: bool = False, revision: Any = None
) -> list[SearchResult]:
    """The k metrics of `namespace` that best answer `question`, best first. `revision` is the namespace's
    current revision (stores/revision.py); without it the store's stamp says when to re-read."""
    corpus = _CACHE.get(index, namespace, store_stamp(index) if revision is None else revision)
    if corpus is None or not question.strip():
        return []
    return embed_and_answer(corpus, index.embedder, question, k, explain)


def embed_and_answer(
    corpus: NamespaceCorpus, embedder: Embedder, question: str, k: int = 10, explain: bool = False
) -> list[SearchResult]:
    """`answer` with the question embedded as every ranker expects (`query_text`), one question at a time."""
    return answer(corpus, question, embedder.embed([query_text(corpus, question)])[0], k=k, explain=explain)


def answer(
    corpus: NamespaceCorpus, question: str, query_vector: np.ndarray, k: int = 10, explain: bool = False
) -> list[SearchResult]:
    """The k best results for `question` in a corpus held in memory; `query_vector` is the embedding of
    `query_text(corpus, question)`. What every caller answers with: this module's `search` and the service."""
    results = rank(corpus, question, query_vector, k=max(k, LABEL_DEPTH), explain=explain)
    return _prefer_asked_labels(corpus, question, results, explain)[:k]


def _prefer_asked_labels(
    corpus: NamespaceCorpus, question: str, results: list[SearchResult], explain: bool
) -> list[SearchResult]:
    """Metrics carrying a label the question asks to break down by move up (label_preference.py)."""
    preferred = _labels_preferred(
        corpus, question, results, lambda r: r.score, lambda r: corpus.position[r.metric_name]
    )
    for result, score, hits in preferred:
        result.score = round(score, 4)
        if explain and hits:
            result.matched.append(f"label: {' '.join(sorted(hits))}")
    return [result for result, _score, _hits in preferred]


def _labels_preferred(
    corpus: NamespaceCorpus,
    question: str,
    items: Sequence[Item],
    score: Callable[[Item], float],
    doc: Callable[[Item], int],
) -> list[tuple[Item, float, set[str]]]:
    """`items` (results, or (document, score) pairs) re-ordered by the labels the question asks for."""
    return prefer_labelled(items, score, lambda item: label_names(corpus, doc(item)), wanted_labels(question))


def label_names(corpus: NamespaceCorpus, doc: int) -> list[str]:
    """A document's label names ([""] when its labels are unknown)."""
    return corpus.rows[doc]["label_names"].split(",")


def shown_score(score: float) -> float:
    """A fused score as a search result carries it (exact and prefix name matches, above 1, show 1)."""
    return round(min(score, 1.0), 4)


def answered_documents(
    corpus: NamespaceCorpus, question: str, found: Signals, params: RankingParams, k: int
) -> list[int]:
    """The documents `answer` returns for `found` (the question's signals) under `params`, best first: the fused
    ranking, then the labels the question asks for. What bench/search_quality.py scores."""
    ranked = ranked_documents(found, params, max(k, LABEL_DEPTH))
    preferred = _labels_preferred(corpus, question, ranked, lambda r: shown_score(r[1]), lambda r: r[0])
    return [doc for (doc, _score), _new, _hits in preferred][:k]


def rank(
    corpus: NamespaceCorpus,
    question: str,
    query_vector: np.ndarray,
    k: int = 10,
    explain: bool = False,
    params: RankingParams = DEFAULT_PARAMS,
) -> list[SearchResult]:
    """Fuse the three rankings, weigh by what the question asks for, then put exact and prefix name
    matches first."""
    found = signals(corpus, question, query_vector)
    ranked = ranked_documents(found, params, k)
    similarity = cosine_similarities(corpus, query_vector, [doc for doc, _score in ranked])

    dense_rank = set(found.order["dense"][:SEMANTIC_EXPLAIN_RANK])
    labels = term_words(found.text) if explain else {}  # the synonyms searched for too
    learned = set(learned_terms(search_terms(found.text), shipped_table())) if explain else set()
    pinned_reason = {
        doc: reason for reason, docs in zip(("exact name", "name prefix"), found.pinned, strict=True) for doc in docs
    }
    results = []
    for (doc, score), cosine in zip(ranked, similarity.tolist(), strict=True):
        row = corpus.rows[doc]
        matched = _reasons(corpus, doc, labels, learned, doc in dense_rank, pinned_reason.get(doc)) if explain else []
        results.append(
            SearchResult(
                metric_name=corpus.names[doc],
                score=shown_score(score),
                type=row.get("type", ""),
                unit=row.get("unit", ""),
                description=row.get("description", ""),
                matched=matched,
                promql=row.get("promql_hint", ""),
                similarity=round(cosine, 4),
                weak=is_weak(cosine) and doc not in pinned_reason,
            )
        )
    return results


def cosine_similarities(corpus: NamespaceCorpus, query_vector: np.ndarray, docs: Sequence[int]) -> np.ndarray:
    """The cosine of the question's embedding with the given documents' (their vectors are unit length)."""
    query = np.asarray(query_vector, dtype=np.float32)
    unit = query / max(float(np.linalg.norm(query)), 1e-12)
    return dot_products(corpus.vectors[np.asarray(docs, dtype=np.int64)], unit)


def dot_products(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """vectors @ query, on one thread: OpenBLAS's matrix-vector product over a namespace's rows is no faster on
    2 cores and much slower when other processes hold them (its threads wait for each other)."""
    return np.einsum("ij,j->i", vectors, np.asarray(query, dtype=np.float32))


@dataclass
class Signals:
    """What the rankers and the question's wording say, before any RankingParams: each ranker's best DEPTH
    documents in order; the candidates (documents in any of those lists, or named by the question); and per
    ranker, each candidate's rank (infinite when not in its list) and score scaled to [0, 1] over its list."""

    order: dict[str, list[int]]
    candidates: np.ndarray
    ranks: dict[str, np.ndarray]
    scaled: dict[str, np.ndarray]
    traits: dict[str, np.ndarray]  # trait -> mask over the candidates
    cues: frozenset[str]
    pinned: tuple[list[int], list[int]]  # exact name matches, name-prefix matches
    pin_boost: np.ndarray  # over the candidates: 2 for an exact name match, 1 for a prefix match, else 0
    text: str  # the question as the rankers searched it (query_text: with the synonyms)
    learned: np.ndarray  # over the candidates: name-index score of the learned words (learned_words.py), in [0, 1]


def signals(
    corpus: NamespaceCorpus,
    question: str,
    query_vector: np.ndarray,
    synonyms: tuple[tuple[str, ...], ...] = SYNONYM_GROUPS,
    learned_table: Table | None = None,
    adapter: np.ndarray | None = None,
) -> Signals:
    """Score the question with the three rankers (the part of a search that does not depend on RankingParams);
    `query_vector` is the embedding of `query_text(corpus, question, synonyms)`, which the dense ranker reads moved
    by the query map (query_adapter.py) of the corpus's model. `synonyms`, `learned_table`, `adapter` (an empty
    matrix: no map): the shipped ones unless the bench, which learns or checks them out of fold, says otherwise."""
    text = query_text(corpus, question, synonyms)
    terms = search_terms(text)
    matrix = shipped_adapter(corpus.model) if adapter is None else adapter
    raw = {
        "name": corpus.name_index.get_scores(terms) if terms else None,
        "text": corpus.text_index.get_scores(terms) if terms else None,
        "dense": corpus.dense.scores(adapt(query_vector, matrix), DEPTH),
    }
    order = {ranker: _top(scores) for ranker, scores in raw.items()}
    pinned = _name_matches(corpus, question)
    cues = question_cues(question)
    listed = [d for docs in (*order.values(), *pinned) for d in docs]
    candidates = np.unique(np.array(listed, dtype=np.int64))
    ranks, scaled = {}, {}
    for ranker, scores in raw.items():
        top = np.asarray(order[ranker], dtype=np.int64)
        ranks[ranker] = np.full(len(candidates), np.inf)
        ranks[ranker][np.searchsorted(candidates, top)] = np.arange(len(top))
        scaled[ranker] = np.zeros(len(candidates))
        if len(top):
            best, worst = float(scores[top[0]]), float(scores[top[-1]])
            seen = np.isfinite(ranks[ranker])
            values = scores[candidates[seen]]
            scaled[ranker][seen] = (values - worst) / (best - worst) if best > worst else 1.0
    traits = {trait: mask[candidates] for trait, mask in corpus.traits.items()}
    pin_boost = np.zeros(len(candidates))
    for boost, docs in enumerate(reversed(pinned), start=1):
        pin_boost[np.searchsorted(candidates, docs)] = float(boost)
    return Signals(
        order,
        candidates,
        ranks,
        scaled,
        traits,
        cues,
        pinned,
        pin_boost,
        text,
        _learned(corpus, terms, candidates, learned_table),
    )


def _learned(corpus: NamespaceCorpus, terms: Sequence[str], candidates: np.ndarray, table: Table | None) -> np.ndarray:
    """Each candidate's name-index score for the name words learned for the question's terms, scaled by the best."""
    words = learned_terms(terms, shipped_table() if table is None else table)
    if not words:
        return np.zeros(len(candidates))
    scores = corpus.name_index.get_scores(words)
    best = float(scores.max())
    return scores[candidates] / best if best > 0 else np.zeros(len(candidates))


def fuse(found: Signals, params: RankingParams) -> np.ndarray:
    """Each candidate's fused score in [0, 1] (before name matches are put first), weighed by the cues."""
    total = sum(params.weight(r) for r in RANKERS) or 1.0
    fused = np.zeros(len(found.candidates))
    for ranker in RANKERS:
        weight = params.weight(ranker)
        if not weight:
            continue
        if params.fusion == "rrf":
            fused += weight * (params.rrf_k + 1) / (params.rrf_k + 1 + found.ranks[ranker])
        else:
            fused += weight * found.scaled[ranker]
    fused /= total
    for cue in found.cues:
        boost = cue_boost(params, cue)
        if boost and cue in found.traits:
            fused[found.traits[cue]] *= 1.0 + boost
    if params.runtime_penalty and not found.cues & RUNTIME_ASKED and "exporter_runtime" in found.traits:
        fused[found.traits["exporter_runtime"]] *= 1.0 - params.runtime_penalty
    if params.kind_penalty:
        for kind in PENALISED_KINDS - found.cues:
            if kind in found.traits:
                fused[found.traits[kind]] *= 1.0 - params.kind_penalty
    return fused + params.learned_weight * found.learned


def cue_boost(params: RankingParams, cue: str) -> float:
    """How much a metric of the trait `cue` gains when the question asks for it."""
    return params.failure_boost if cue == "failure" else params.cue_boost


def ranked_documents(found: Signals, params: RankingParams, k: int) -> list[tuple[int, float]]:
    """The k best (document, score) pairs, best first: exact name matches, then name-prefix matches, then
    the fused ranking. Equal scores rank in name order. A document some ranker listed stays a candidate at score 0
    (min-max scaling gives a list's last document 0), so a small namespace answers k; one no ranker saw is left out."""
    scores = fuse(found, params) + found.pin_boost
    best = np.lexsort((found.candidates, -scores))[:k]
    return [(int(found.candidates[i]), float(scores[i])) for i in best]


def _top(scores: np.ndarray | None) -> list[int]:
    """Indexes of the DEPTH highest positive scores, best first; ties by index, also at the list's last place."""
    if scores is None or not len(scores):
        return []
    positive = np.flatnonzero(scores > 0)
    if len(positive) > DEPTH:  # (BM25 scores most documents 0: then every positive one is in the list)
        values = scores[positive]
        last = np.partition(values, len(values) - DEPTH)[len(values) - DEPTH]
        above = positive[values > last]
        positive = np.concatenate([above, positive[values == last][: DEPTH - len(above)]])
    return positive[np.lexsort((positive, -scores[positive]))].tolist()


def _name_matches(corpus: NamespaceCorpus, question: str) -> tuple[list[int], list[int]]:
    """Metrics named exactly by a token of the question, then (for a one-token question) those whose
    name starts with it."""
    tokens = _NAME_TOKEN.findall(question)
    exact = [corpus.position[t] for t in dict.fromkeys(tokens) if t in corpus.position]
    prefix: list[int] = []
    if len(tokens) == 1 and len(question.split()) == 1 and len(tokens[0]) >= 2:
        start = tokens[0].lower()
        at = bisect.bisect_left(corpus.by_lower_name, (start, -1))
        for name, i in corpus.by_lower_name[at:]:
            if not name.startswith(start):
                break
            if i not in exact:
                prefix.append(i)
    return exact, prefix


def _reasons(
    corpus: NamespaceCorpus, doc: int, labels: Mapping[str, str], learned: set[str], semantic: bool, pinned: str | None
) -> list[str]:
    """Which fields share words with the question (and the question's words), the learned name words the name
    carries, plus name and meaning matches."""
    reasons = [pinned] if pinned else []
    fields = {"name": corpus.names[doc]} | {column: corpus.rows[doc].get(column, "") for column in EXPLAIN_FIELDS}
    by_field: dict[str, set[str]] = {}
    for column, text in fields.items():
        hits = labels.keys() & set(search_terms(text))
        if hits:
            by_field.setdefault(EXPLAIN_FIELDS.get(column, column), set()).update(labels[h] for h in hits)
    reasons += [f"{label}: {' '.join(sorted(hits))}" for label, hits in by_field.items()]
    carried = learned.intersection(corpus.parts.name_terms[doc].split())
    if carried:
        spelled = term_words(corpus.names[doc])  # the name's own words, not their stems
        reasons.append(f"learned: {' '.join(sorted(spelled.get(term, term) for term in carried))}")
    if semantic:
        reasons.append("semantic: close in meaning")
    return reasons


def results_to_json(results: Sequence[SearchResult]) -> str:
    """Compact JSON for programs and LLM callers (see answers.py)."""
    return compact_json([asdict(result) for result in results])
