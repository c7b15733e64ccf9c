"""A deterministic enricher from Prometheus naming conventions: the default when no LLM is configured.

Everything it knows is in the tables below (data, not code paths): name prefixes say who exposes a
metric, keyword rules say what it is about, suffixes say its unit and meter, and signal rules say which
golden signal it serves and why. Rules are regular expressions over the metric's words (see
`metrics_index.text.metric_words`) joined by single spaces and padded with one space on each side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from pydantic import ValidationError

from metrics_index.enrichment.base import Enricher, EnrichmentOutcome, ProgressCallback
from metrics_index.enrichment.vocabulary import GOLDEN_SIGNALS, METER_TYPES, EnrichedFields
from metrics_index.sources import RawMetric
from metrics_index.text import metric_words, readable_words
from metrics_index.units import UNIT_SUFFIXES, unit_of, without_series_suffix

VERSION = "5"
"""Feeds every rules row's input hash: bump it when the rows change (4: the resolved unit is stored; 5: UDP-Lite)."""


@dataclass(frozen=True)
class Subject:
    """Who exposes metrics under a name prefix, as written at the start of a description."""

    prefix: str
    label: str


# Protocols the kernel names in one CamelCase word (the UdpLite and UdpLite6 fields of /proc/net/snmp and snmp6),
# by their names (RFC 3828): split into words they read "UDP lite 6".
PROTOCOL_NAMES = {"UdpLite": "UDP-Lite", "UdpLite6": "UDP-Lite over IPv6"}
_PROTOCOL_PART = re.compile(rf"(?:^|_)({'|'.join(PROTOCOL_NAMES)})(?=_|$)")

# Longest matching prefix wins.
SUBJECTS: tuple[Subject, ...] = (
    Subject("node_memory_", "Host memory (/proc/meminfo)"),
    Subject("node_vmstat_", "Host virtual memory statistics (/proc/vmstat)"),
    Subject("node_netstat_", "Host network protocol statistics (/proc/net/snmp, netstat)"),
    Subject("node_network_", "Host network interface"),
    Subject("node_sockstat_", "Host sockets (/proc/net/sockstat)"),
    Subject("node_nf_conntrack_", "Host connection tracking (netfilter)"),
    Subject("node_disk_", "Host block device"),
    Subject("node_filesystem_", "Host filesystem"),
    Subject("node_timex_", "Host clock synchronisation (adjtimex)"),
    Subject("node_hwmon_", "Host hardware sensor"),
    Subject("node_", "Host (node exporter)"),
    Subject("process_", "Process"),
    Subject("go_memstats_", "Go runtime memory allocator"),
    Subject("go_", "Go runtime"),
    Subject("jvm_", "JVM runtime"),
    Subject("python_", "Python runtime"),
    Subject("prometheus_tsdb_", "Prometheus time series database"),
    Subject("prometheus_", "Prometheus"),
    Subject("promhttp_", "Metrics endpoint (promhttp)"),
    Subject("alertmanager_", "Alertmanager"),
    Subject("blackbox_exporter_", "Blackbox exporter"),
    Subject("blackbox_", "Blackbox exporter"),
    Subject("probe_", "Blackbox probe"),
    Subject("pushgateway_", "Pushgateway"),
    Subject("push_", "Pushgateway"),
    Subject("redis_exporter_", "Redis exporter"),
    Subject("redis_", "Redis"),
    Subject("mysql_", "MySQL"),
    Subject("pg_", "PostgreSQL"),
    Subject("mongodb_", "MongoDB"),
    Subject("kafka_", "Kafka"),
    Subject("rabbitmq_", "RabbitMQ"),
    Subject("nginx_", "NGINX"),
    Subject("haproxy_", "HAProxy"),
    Subject("envoy_", "Envoy"),
    Subject("kube_", "Kubernetes object state"),
    Subject("container_", "Container (cAdvisor)"),
    Subject("net_conntrack_", "Network connections of the Go dialer and listener"),
    Subject("http_", "HTTP"),
    Subject("grpc_", "gRPC"),
)


@dataclass(frozen=True)
class CategoryRule:
    """Metrics whose name starts with one of `prefixes` (any name when empty) and whose words match
    `pattern` belong to `category`/`subcategory`."""

    prefixes: tuple[str, ...]
    pattern: str
    category: str
    subcategory: str


def _rules(prefixes: tuple[str, ...], *rules: tuple[str, str, str]) -> tuple[CategoryRule, ...]:
    return tuple(CategoryRule(prefixes, pattern, category, sub) for pattern, category, sub in rules)


# Prefix-specific rules are tried before the generic ones; within a group, first match wins.
CATEGORY_RULES: tuple[CategoryRule, ...] = (
    *_rules(
        ("node_",),
        (r" build ", "service", "build_info"),
        (r" uname | os | selinux | entropy | filefd | kernel ", "system", "kernel"),
        (r" scrape | textfile ", "monitoring", "exporter"),
        (r"^ node time | timex | boot | clocksource | ntp ", "system", "time"),
        (r" hwmon | thermal | power | rapl | edac | cooling | temperature ", "system", "hardware"),
        (r" pressure ", "compute", "pressure"),
        (r" cpu | schedstat ", "compute", "cpu"),
        (r" load\d* | load ", "compute", "load"),
        (r" context | intr | forks | procs ", "compute", "scheduler"),
        (r" swap | pswpin | pswpout ", "memory", "swap"),
        (
            r" vmstat | huge | hugepages | hugepagesize | hugetlb | vmalloc | slab | page tables | numa"
            r" | s reclaimable | s unreclaim | direct map ",
            "memory",
            "virtual_memory",
        ),
        (r" memory ", "memory", "usage"),
        (r" filesystem ", "storage", "filesystem"),
        (r" disk | md | nvme ", "storage", "disk_io"),
        (r" sockstat | conntrack ", "network", "sockets"),
        (r" netstat | udp | tcp ", "network", "protocol"),
        (r" network | arp | softnet | wifi | bonding ", "network", "interface"),
    ),
    *_rules(
        ("process_",),
        (r" cpu ", "process", "cpu"),
        (r" memory ", "process", "memory"),
        (r" fds | file descriptors ", "process", "file_descriptors"),
        (r" ", "process", "lifecycle"),
    ),
    *_rules(
        ("go_", "jvm_", "python_"),
        (r" gc | garbage ", "runtime", "garbage_collection"),
        (r" goroutines | threads | sched | gomaxprocs ", "runtime", "concurrency"),
        (r" info | version | build ", "runtime", "build"),
        (r" ", "runtime", "memory_allocator"),
    ),
    *_rules(
        ("prometheus_", "promhttp_"),
        (r" build ", "service", "build_info"),
        (r" config ", "service", "configuration"),
        (r" ready ", "service", "health"),
        (r" tsdb ", "monitoring", "tsdb"),
        (r" remote ", "monitoring", "remote_storage"),
        (r" sd | treecache ", "monitoring", "service_discovery"),
        (r" engine | query | queries ", "monitoring", "query"),
        (r" rule | template ", "monitoring", "rules"),
        (r" notifications ", "monitoring", "notifications"),
        (r" target | scrape | scrapes ", "monitoring", "scrape"),
        (r" http | web | api ", "http", "server"),
        (r" promhttp ", "monitoring", "exporter"),
    ),
    *_rules(
        ("alertmanager_",),
        (r" build ", "service", "build_info"),
        (r" config ", "service", "configuration"),
        (r" cluster | gossip | peer | peers | oversize ", "alerting", "cluster"),
        (r" silences | silence | inhibit | inhibitions ", "alerting", "silences"),
        (r" notification | notifications | nflog | integrations | receivers ", "alerting", "notifications"),
        (r" http ", "http", "server"),
        (r" ", "alerting", "alerts"),
    ),
    *_rules(
        ("probe_", "blackbox_"),
        (r" build ", "service", "build_info"),
        (r" config ", "service", "configuration"),
        (r" ssl | tls | cert ", "probing", "tls"),
        (r" dns ", "probing", "dns"),
        (r" http ", "probing", "http"),
        (r" ", "probing", "probe"),
    ),
    *_rules(
        ("push_", "pushgateway_"),
        (r" build ", "service", "build_info"),
        (r" ", "batch", "push"),
    ),
    *_rules(
        ("redis_", "mysql_", "pg_", "mongodb_", "memcached_"),
        (r" build | version | instance info ", "service", "build_info"),
        (r" exporter | scrape ", "monitoring", "exporter"),
        (r" up | uptime | start ", "service", "health"),
        (r" cpu ", "process", "cpu"),
        (r" pubsub ", "messaging", "pubsub"),
        (
            r" repl | replica | replicas | slave | slaves | master | replication | resync | resyncs ",
            "database",
            "replication",
        ),
        (r" rdb | aof | fork | cow | dump | save | bgsave | loading | checkpoint ", "database", "persistence"),
        (r" clients | client | connections | connected | blocked | tracking clients ", "database", "connections"),
        (r" mem | memory | allocator | defrag | frag | fragmentation | lazyfree | maxmemory ", "database", "memory"),
        (r" keys | keyspace | expired | evicted | expires | db | tracking ", "database", "keyspace"),
        (r" net | network ", "network", "interface"),
        (r" ", "database", "commands"),
    ),
    *_rules(("net_conntrack_",), (r" ", "network", "sockets")),
    *_rules(("kube_",), (r" ", "service", "health")),
    *_rules(
        (),
        (r" build | version ", "service", "build_info"),
        (r" config | configuration | reload ", "service", "configuration"),
        (r" up | ready | health | healthy | uptime ", "service", "health"),
        (r" exporter | scrape | collector ", "monitoring", "exporter"),
        (r" probe ", "probing", "probe"),
        (r" http | https ", "http", "server"),
        (r" dns ", "network", "dns"),
        (r" gc | garbage ", "runtime", "garbage_collection"),
        (r" goroutines | threads ", "runtime", "concurrency"),
        (r" heap ", "runtime", "memory_allocator"),
        (r" cpu ", "compute", "cpu"),
        (r" swap ", "memory", "swap"),
        (r" memory | mem | rss ", "memory", "usage"),
        (r" filesystem | fs | inodes ", "storage", "filesystem"),
        (r" disk | block | volume ", "storage", "disk_io"),
        (r" wal | snapshot | snapshots | compaction | compactions ", "storage", "persistence"),
        (r" tcp | udp | icmp ", "network", "protocol"),
        (r" socket | sockets | conntrack ", "network", "sockets"),
        (r" network | net | packets | rx | tx ", "network", "interface"),
        (r" queue | queued | enqueued | dequeued | backlog ", "messaging", "queue"),
        (r" publish | published | subscribers | subscriptions | topic | topics ", "messaging", "pubsub"),
        (r" db | database | sql | query | queries | cache ", "database", "commands"),
        (r" job | jobs | batch | cron ", "batch", "jobs"),
        (r" fds | file descriptors ", "process", "file_descriptors"),
        (r" alerts | alert ", "alerting", "alerts"),
    ),
)

_GENERIC_DEFAULT = ("other", "general")


@dataclass(frozen=True)
class SignalRule:
    """A golden signal when the words match and (if given) the meter type is one of `meters`."""

    signal: str
    pattern: str
    why: str
    meters: tuple[str, ...] = ()
    source: str = "name"  # "name": metric words; "help": help text words; "unit": base unit


# Categories whose metrics never serve a golden signal, whatever their words say (a clock's "error"
# is an estimate, not a failure).
NO_SIGNAL_CATEGORIES = {("system", "time"), ("service", "build_info"), ("runtime", "build")}

_ERRORS = (
    r" errors? | errs | fail | failed | failure | failures | invalid | rejected | rejections | corruptions?"
    r" | drop | drops | dropped | timeouts? | refused | denied | exceeded | overflows? | retrans | unknown | panics?"
    r" | oom | killed "
)
SIGNAL_RULES: tuple[SignalRule, ...] = (
    SignalRule("none", r" info | build ", "identity and build information, not a measure of service health"),
    SignalRule("errors", _ERRORS, "counts or flags work that failed; compare its rate with the total traffic"),
    SignalRule(
        "errors",
        r" failed | failures? | errors? | rejected | dropped | corruption ",
        "its help text describes failed or rejected work",
        source="help",
    ),
    SignalRule(
        "latency",
        r" duration | durations | latency | latencies | rtt | lag | response time | timings ",
        "measures how long work takes; watch high percentiles or the average",
    ),
    SignalRule(
        "latency",
        r" seconds ",
        "a distribution of durations: use histogram_quantile() or _sum/_count for latency",
        meters=("histogram", "summary"),
        source="unit",
    ),
    SignalRule(
        "latency",
        r" (read|reads|write|writes|discard|flush|request|requests|query|operation) time ",
        "time spent on operations; its rate divided by the operation rate is the average latency",
    ),
    SignalRule(
        "none",
        r" timestamp | unixtime | epoch | since 1970 ",
        "a point in time, not a measure of load or health",
        source="help",
    ),
    SignalRule(
        "none",
        r" timestamp | start | boot | last | config | enabled | status | hash | id | version | flags | mode | carrier"
        r" | dormant | type | in progress | scheduled | successful | success | uptime | up | ready | info ",
        "a state, timestamp or configuration value rather than a measure of load or health",
    ),
    SignalRule(
        "saturation",
        r" cpu | pressure | waiting | stalled | io time | weighted ",
        "time a resource was busy or contended: how close it is to being saturated",
        meters=("counter", "unknown"),
    ),
    SignalRule(
        "saturation",
        r" usage | used | utilisation | utilization | in use | inuse | available | avail | free | limit | max"
        r" | maximum | capacity | size | queue | length | pending | load | pressure | blocked | connected"
        r" | connections | clients | goroutines | threads | fds | allocated | entries | memory | heap | bytes"
        r" | fragmentation | ratio | percent | percentage | in flight | concurrent | backlog | swap | cached"
        r" | buffers | dirty | keys | series | chunks | objects | items | running | active | sockets | count | total"
        r" | current ",
        "how much of a finite resource is in use or queued: a saturation measure",
        meters=("gauge", "unknown"),
    ),
    SignalRule(
        "traffic",
        r" ",
        "counts work done or data moved; its rate is the throughput",
        meters=("counter", "histogram", "summary", "unknown"),
    ),
)
_NONE_DEFAULT = "a value that describes state rather than load, errors, latency or saturation"


# Series suffixes that say the meter type when the exporter did not declare one.
METER_SUFFIXES: dict[str, str] = {
    "_total": "counter",
    "_count": "counter",
    "_sum": "counter",
    "_created": "counter",
    "_bucket": "histogram",
    "_info": "info",
}

# Help texts that only restate the name ("connected_clients metric", "Statistic TcpInErrs.") carry no
# information; these words are ignored when checking that.
HELP_FILLER = {
    "a", "an", "the", "of", "for", "metric", "metrics", "statistic", "statistics", "information", "info", "field",
    "device", "property", "value", "proc", "sys", "class", "net", "vmstat", "number", "total", "current",
}  # fmt: skip
_HELP_WORD = re.compile(r"[a-z0-9]+")

METER_PHRASES = {
    "counter": "running total since start",
    "gauge": "current value",
    "histogram": "distribution",
    "summary": "distribution with quantiles",
    "info": "labels carry the information",
    "stateset": "one series per state",
    "unknown": "untyped",
}


@lru_cache(maxsize=1)
def _compiled_category_rules() -> dict[str, list[tuple[re.Pattern[str], str, str]]]:
    by_prefix: dict[str, list[tuple[re.Pattern[str], str, str]]] = {}
    for rule in CATEGORY_RULES:
        for prefix in rule.prefixes or ("",):
            by_prefix.setdefault(prefix, []).append((re.compile(rule.pattern), rule.category, rule.subcategory))
    return by_prefix


@lru_cache(maxsize=1)
def _compiled_signal_rules() -> list[tuple[re.Pattern[str], SignalRule]]:
    return [(re.compile(rule.pattern), rule) for rule in SIGNAL_RULES]


def meter_type(name: str, prometheus_type: str) -> str:
    """The declared type, sharpened by naming conventions: `*_info` gauges are info metrics, and an
    untyped metric's suffix says what it is."""
    declared = (prometheus_type or "unknown").lower()
    if declared == "gaugehistogram":
        return "histogram"
    if declared in ("gauge", "unknown") and name.endswith("_info"):
        return "info"
    if declared in METER_TYPES and declared != "unknown":
        return declared
    return next((meter for suffix, meter in METER_SUFFIXES.items() if name.endswith(suffix)), "unknown")


def categorise(name: str, words: str) -> tuple[str, str]:
    """Category and subcategory from the first matching rule for the name's prefix, then the generic ones."""
    rules = _compiled_category_rules()
    lowered = name.lower()
    prefixes = sorted((p for p in rules if p and lowered.startswith(p)), key=len, reverse=True)
    for prefix in (*prefixes, ""):
        for pattern, category, subcategory in rules[prefix]:
            if pattern.search(words):
                return category, subcategory
    return _GENERIC_DEFAULT


def golden_signal(words: str, help_words: str, unit: str, meter: str, category: tuple[str, str]) -> tuple[str, str]:
    """The golden signal and a sentence saying why."""
    if category in NO_SIGNAL_CATEGORIES:
        return "none", f"{GOLDEN_SIGNALS['none']} ({category[0]}/{category[1]})"
    texts = {"name": words, "help": help_words, "unit": f" {unit} "}
    for pattern, rule in _compiled_signal_rules():
        if rule.meters and meter not in rule.meters:
            continue
        match = pattern.search(texts[rule.source])
        if match:
            clue = match.group(0).strip()
            because = f" ('{clue}' in the {rule.source})" if clue else f" (a {meter})"
            return rule.signal, f"{rule.signal.capitalize()}: {rule.why}{because}."
    return "none", f"None: {_NONE_DEFAULT}."


def _subject(name: str) -> Subject:
    lowered = name.lower()
    return next((s for s in SUBJECTS if lowered.startswith(s.prefix)), Subject("", ""))


def help_is_informative(name: str, help_text: str) -> bool:
    """False when every word of the help text is filler or already part of the name."""
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    words = [w for w in _HELP_WORD.findall(help_text.lower()) if w not in HELP_FILLER]
    return any(w not in squashed for w in words)


def describe(metric: RawMetric, meter: str, unit: str) -> str:
    """The help text as a sentence when it says something, else a sentence built from the name's words."""
    help_text = " ".join(metric.help.split())
    if help_text and help_is_informative(metric.metric_name, help_text):
        sentence = help_text[0].upper() + help_text[1:]
        return sentence if sentence.endswith((".", "!", "?")) else sentence + "."
    subject = _subject(metric.metric_name)
    words: list[str] = []
    # The split puts the protocol names at odd places, the name parts around them at even places.
    for i, piece in enumerate(_PROTOCOL_PART.split(_base_name(metric.metric_name).removeprefix(subject.prefix))):
        words += [PROTOCOL_NAMES[piece]] if i % 2 else readable_words(piece)
    phrase = " ".join(words) or metric.metric_name.replace("_", " ")
    unit_phrase = f", in {unit}" if unit else ""
    lead = f"{subject.label}: " if subject.label else ""
    return f"{lead}{phrase}{unit_phrase} ({METER_PHRASES[meter]})."


def _base_name(name: str) -> str:
    """The name without meter and unit suffixes: what is measured."""
    base = without_series_suffix(name)
    for suffix in UNIT_SUFFIXES:
        if base.endswith(suffix.suffix) and len(base) > len(suffix.suffix):
            return base.removesuffix(suffix.suffix).removesuffix("_in")
    return base


def enrich_metric(metric: RawMetric) -> EnrichedFields:
    """Enrich one metric from its name, help text, type and unit alone."""
    name = metric.metric_name
    words = f" {' '.join(metric_words(name))} "
    meter = meter_type(name, metric.type)
    unit = unit_of(name, metric.unit, metric.help)
    category = categorise(name, words)
    help_words = f" {' '.join(_HELP_WORD.findall(metric.help.lower()))} "
    signal, why = golden_signal(words, help_words, unit, meter, category)
    return EnrichedFields(
        metric_name=name,
        description=describe(metric, meter, unit)[:600],
        category=category[0],
        subcategory=category[1],
        golden_signal_type=signal,
        golden_signal_description=why[:400],
        meter_type=meter,
        unit=unit,
    )


class RulesEnricher(Enricher):
    """Enrichment from naming conventions alone: free, instant, deterministic."""

    name = "rules"

    @property
    def fingerprint(self) -> str:
        return f"rules/{VERSION}"

    def enrich(self, metrics: Sequence[RawMetric], progress: ProgressCallback | None = None) -> EnrichmentOutcome:
        outcome = EnrichmentOutcome()
        for metric in metrics:
            try:
                outcome.enriched[metric.metric_name] = enrich_metric(metric)
            except ValidationError as error:
                outcome.failures[metric.metric_name] = f"rules could not enrich: {error.errors()[0]['msg']}"
        if progress:
            progress(len(metrics))
        return outcome
