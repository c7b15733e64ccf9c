"""The kind of a metric (a key of vocabulary.METRIC_KINDS): configuration values, build information and an
exporter's self-monitoring answer other questions than activity metrics do, so search tells them apart. Worked
out from the name's and the help text's words at search time; it lives below the enrichers, so that search
imports none of them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from metrics_index.text import metric_words, split_name

_HELP_WORD = re.compile(r"[a-z0-9]+")

# The kind of a metric (vocabulary.METRIC_KINDS), first match wins; "activity" otherwise. Patterns are
# matched against the name's words ("name"), its last word ("last word") or the help text's words ("help").
# Build information names itself last (`x_build_info`, `x_version`): `mysql_info_schema_*` (information_schema)
# and `x_domain_info_memory_bytes` are measures. Only gauges and untyped metrics can be configuration values or
# build information: a counter or a distribution measures work (except `x_build_info_total`, a counter of one).
KIND_RULES: tuple[tuple[str, str, str], ...] = (
    ("info", "last word", r"^(info|build|version)$"),
    ("self_monitoring", "name", r" exporter | scrape | scrapes | scraper | collector | collectors | promhttp "),
    ("configuration", "name", r" config | configuration | configured | setting | settings | variables | limit | limits"
     r" | capacity | threshold | retention "),
    ("configuration", "help", r" configured | configuration | setting | limit | variable | allowed "),
)  # fmt: skip
_MEASURES = ("counter", "histogram", "summary")
# Words that make a configuration-sounding gauge a state or an event instead (a reload's success, its time).
_NOT_CONFIGURATION = re.compile(r" reload | reloads | last | success | successful | hash | timestamp | time seconds ")


@lru_cache(maxsize=1)
def _compiled_kind_rules() -> list[tuple[str, str, re.Pattern[str]]]:
    return [(kind, source, re.compile(pattern)) for kind, source, pattern in KIND_RULES]


def metric_kind(name: str, meter: str, help_text: str = "") -> str:
    """What kind of value the metric is; "activity" when no rule matches."""
    words = split_name(name)
    if words[-3:] == ["build", "info", "total"]:  # build information exported as a counter
        words, meter = words[:-1], "gauge"
    texts = {
        "last word": words[-1] if words and meter not in _MEASURES else "",
        "name": f" {' '.join(metric_words(name))} ",
        "help": f" {' '.join(_HELP_WORD.findall(help_text.lower()))} ",
    }
    for kind, source, pattern in _compiled_kind_rules():
        if not pattern.search(texts[source]):
            continue
        if kind != "configuration":
            return kind
        if meter in ("gauge", "unknown") and not _NOT_CONFIGURATION.search(texts["name"]):
            return kind
    return "activity"
