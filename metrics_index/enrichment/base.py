"""The enricher interface: rules and Claude both plug in here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
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
