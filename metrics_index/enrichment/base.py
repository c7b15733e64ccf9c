"""The enricher interface: rules and Claude both plug in here."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from metrics_index.enrichment.vocabulary import EnrichedFields
from metrics_index.sources import RawMetric

ProgressCallback = Callable[[int], None]
"""Called with the number of metrics just finished, so a CLI can advance a progress bar."""


@dataclass
class EnrichmentUsage:
    """What an enrichment run cost; all zero for the rule-based enricher."""

    requests: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    rate_limited: int = 0
    """Answers that were 429: each paused every request of the process until its retry-after."""
    answers_without_cache: int = 0
    """Answers, with prompt caching on, that reported neither a cache write nor a cache read."""
    cache_prefix_tokens: int = 0
    """The cacheable prefix (tools + system prompt) as counted by the API, 0 when not counted."""
    caching: str = ""
    """Whether prompt caching engaged, in words ("engaged", "not engaged: ...", "off"); empty for the rules."""

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)

    def add(self, other: EnrichmentUsage) -> EnrichmentUsage:
        """Both runs' counts together (the texts of `other` win when set)."""
        mine, theirs = asdict(self), asdict(other)
        return EnrichmentUsage(
            **{
                name: (theirs[name] or value) if isinstance(value, str) else value + theirs[name]
                for name, value in mine.items()
            }
        )


@dataclass
class EnrichmentOutcome:
    """Per metric name, either validated fields or the reason it failed."""

    enriched: dict[str, EnrichedFields] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    usage: EnrichmentUsage = field(default_factory=EnrichmentUsage)


class Enricher(ABC):
    """Enriches a batch of metrics. Must never raise for one bad metric: report it in `failures`."""

    #: Written to the `enricher` column of every row this enricher produced.
    name: str

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Everything besides the metric that decides the answer (version, model, prompt version).

        Part of each metric's input hash: when it changes, earlier enrichments are not reused."""

    @abstractmethod
    def enrich(self, metrics: Sequence[RawMetric], progress: ProgressCallback | None = None) -> EnrichmentOutcome:
        """Enrich `metrics`; every name ends up in exactly one of `enriched` or `failures`."""


@dataclass(frozen=True)
class Ticket:
    """Where a metric's answer will come from: one request of a batch submitted for later (Message Batches API)."""

    batch_id: str
    request_id: str

    def text(self) -> str:
        """How the ticket is kept in the catalog row (its `error` column) until the answer is collected."""
        return f"awaiting batch {self.batch_id}, request {self.request_id}"

    @staticmethod
    def parse(text: object) -> Ticket | None:
        match = _TICKET.match(text) if isinstance(text, str) else None
        return Ticket(match["batch"], match["request"]) if match else None


_TICKET = re.compile(r"^awaiting batch (?P<batch>[\w-]+), request (?P<request>[\w-]+)$")


@dataclass
class Collected:
    """What a deferred enrichment gave back for the metrics that waited on it."""

    enriched: dict[str, EnrichedFields] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Not answered (request errored or expired, answer invalid): the metric is enriched again now."""
    waiting: set[str] = field(default_factory=set)
    """Its batch is still being processed: the row stays as it is."""
    usage: EnrichmentUsage = field(default_factory=EnrichmentUsage)


class DeferredEnricher(Enricher):
    """An enricher that can also answer later, cheaper: submit now, collect on a later run (Claude's Message
    Batches API). Until then each submitted metric's row holds the fallback's answer and its ticket."""

    @abstractmethod
    def defers(self, count: int, first_run: bool) -> bool:
        """Whether `count` metrics to enrich on this run go into a batch rather than being asked now."""

    @abstractmethod
    def submit(self, metrics: Sequence[RawMetric]) -> dict[str, Ticket]:
        """Submit the metrics for later; the ticket of each."""

    @abstractmethod
    def collect(self, tickets: Mapping[str, Ticket], metrics: Mapping[str, RawMetric]) -> Collected:
        """What the batches behind these tickets answered, for those that have ended."""

    @abstractmethod
    def batch_ended(self, batch_id: str) -> bool:
        """Whether a submitted batch has finished processing (its answers can be collected)."""
