"""The controlled vocabularies every enricher must answer in, defined once, and the validated record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

GOLDEN_SIGNALS: dict[str, str] = {
    "latency": "How long work takes: request, query, probe or operation durations.",
    "traffic": "How much demand the system serves: requests, operations, bytes or packets per second.",
    "errors": "How often work fails: failed requests, errors, rejections, timeouts.",
    "saturation": "How full a resource is: utilisation, queue depth, memory, disk, connections in use.",
    "none": "Not one of the four golden signals: build information, configuration, state or bookkeeping.",
}

METER_TYPES: dict[str, str] = {
    "counter": "A cumulative value that only goes up (resets on restart); query it with rate() or increase().",
    "gauge": "A value that can go up and down, read as it is or with avg/max over time.",
    "histogram": "Observations counted in buckets (_bucket, _sum, _count); percentiles via histogram_quantile().",
    "summary": "Observations with client-side quantiles plus _sum and _count.",
    "info": "A constant 1 whose labels carry information (versions, build, configuration).",
    "stateset": "A set of boolean series, one per possible state, exactly one of which is 1.",
    "unknown": "A metric whose type the exporter did not declare.",
}


METRIC_KINDS: dict[str, str] = {
    "activity": "Measures what the service does or holds: work, traffic, errors, latency, resource use.",
    "configuration": "A setting or limit the service was configured with (a maximum, a size, a variable).",
    "info": "Identity information: version and build labels, usually a constant 1.",
    "self_monitoring": "The exporter or collector monitoring itself: scrape durations, collector errors.",
}


@dataclass(frozen=True)
class Category:
    description: str
    subcategories: dict[str, str]


CATEGORIES: dict[str, Category] = {
    "compute": Category(
        "CPU time, load and scheduling of a host or container.",
        {
            "cpu": "CPU time by mode, CPU frequency and throttling.",
            "load": "Load averages and run-queue length.",
            "scheduler": "Context switches, interrupts, forks and scheduler statistics.",
            "pressure": "Pressure stall information: time tasks waited for CPU, memory or I/O.",
        },
    ),
    "memory": Category(
        "Physical and virtual memory of a host.",
        {
            "usage": "Memory used, free, available, cached and buffered.",
            "swap": "Swap space and paging in and out.",
            "virtual_memory": "Virtual memory statistics: page faults, huge pages, slab, NUMA.",
        },
    ),
    "storage": Category(
        "Disks, filesystems and the data files a service keeps on them.",
        {
            "filesystem": "Filesystem size, free space, inodes and mount state.",
            "disk_io": "Block-device reads, writes, I/O time and queue.",
            "persistence": "Snapshots, write-ahead logs, compaction and on-disk data of a service.",
        },
    ),
    "network": Category(
        "Network interfaces, sockets and protocols.",
        {
            "interface": "Bytes, packets, errors and drops per network interface.",
            "sockets": "Socket and connection-tracking counts.",
            "protocol": "TCP, UDP, IP and ICMP protocol statistics.",
            "dns": "Name resolution: lookups, failures, latency.",
        },
    ),
    "process": Category(
        "An operating-system process: its CPU, memory, file descriptors and lifetime.",
        {
            "cpu": "CPU time used by the process.",
            "memory": "Resident and virtual memory of the process.",
            "file_descriptors": "Open and maximum file descriptors.",
            "lifecycle": "Start time, uptime and restarts.",
        },
    ),
    "runtime": Category(
        "The language runtime inside a process (Go, JVM, Python...).",
        {
            "garbage_collection": "Garbage-collection cycles, pauses and targets.",
            "memory_allocator": "Heap, stack and allocator statistics.",
            "concurrency": "Threads, goroutines and scheduler latencies of the runtime.",
            "build": "Runtime version and build information.",
        },
    ),
    "http": Category(
        "HTTP servers and clients: requests, latencies, sizes and status codes.",
        {
            "server": "Requests handled by an HTTP server.",
            "client": "Requests made by an HTTP client.",
        },
    ),
    "database": Category(
        "Databases and caches (Redis, SQL...): connections, commands, keys, replication.",
        {
            "connections": "Client connections: connected, blocked, rejected.",
            "commands": "Commands or queries executed, their duration and failures.",
            "keyspace": "Keys, expirations, evictions, hits and misses.",
            "replication": "Replicas, replication offsets and lag.",
            "memory": "Memory used by the database and its allocator.",
            "persistence": "Snapshots (RDB), append-only files and fork costs.",
        },
    ),
    "messaging": Category(
        "Queues, streams and pub/sub.",
        {
            "queue": "Queue depth, enqueued and dequeued items.",
            "pubsub": "Channels, subscribers and published messages.",
        },
    ),
    "monitoring": Category(
        "The monitoring stack itself: Prometheus, exporters, scraping, storage and rules.",
        {
            "scrape": "Targets, scrapes, samples scraped and their failures.",
            "tsdb": "The time-series database: head block, chunks, compactions, WAL.",
            "query": "The query engine: query durations, concurrency and samples loaded.",
            "rules": "Recording and alerting rule evaluation.",
            "service_discovery": "Service-discovery mechanisms and the targets they found.",
            "remote_storage": "Remote write and remote read.",
            "exporter": "An exporter's own health: scrape duration, errors, collector success.",
            "notifications": "Notifications sent from Prometheus to Alertmanager.",
        },
    ),
    "alerting": Category(
        "Alert handling: alerts, silences, notifications, inhibition and clustering (Alertmanager).",
        {
            "alerts": "Alerts received, active and resolved.",
            "notifications": "Notifications sent to receivers, their failures and latency.",
            "silences": "Silences and inhibitions.",
            "cluster": "Alertmanager cluster membership and gossip.",
        },
    ),
    "probing": Category(
        "Synthetic probes of endpoints (blackbox): success, duration, TLS and DNS.",
        {
            "probe": "Probe success and duration.",
            "tls": "TLS handshakes and certificate expiry.",
            "dns": "DNS probes.",
            "http": "HTTP probes: status code, redirects, content length.",
        },
    ),
    "batch": Category(
        "Batch jobs and pushed metrics (Pushgateway).",
        {
            "push": "Pushes received and their timestamps.",
            "jobs": "Job runs, their success and last completion.",
        },
    ),
    "system": Category(
        "The host as a whole: hardware, kernel, time, entropy and OS information.",
        {
            "hardware": "Temperatures, power, hardware sensors and devices.",
            "time": "System clock, time synchronisation and boot time.",
            "kernel": "Kernel statistics, entropy, limits and OS information.",
        },
    ),
    "service": Category(
        "A service's own health and identity: up, build and configuration information.",
        {
            "build_info": "Version, revision and build details.",
            "configuration": "Configuration reloads and their success.",
            "health": "Readiness, liveness and uptime of the service.",
        },
    ),
    "other": Category(
        "Metrics that fit no other category.",
        {"general": "Anything else."},
    ),
}


def category_description(category: str) -> str:
    return CATEGORIES[category].description


VOCABULARY_FIELDS: dict[str, Mapping[str, object]] = {
    "category": CATEGORIES,
    "golden_signal_type": GOLDEN_SIGNALS,
    "meter_type": METER_TYPES,
}
"""The fields whose value must be a key of a controlled vocabulary."""


class EnrichedFields(BaseModel):
    """What an enricher says about one metric, checked against the vocabularies above.

    Used as the validation model for every enricher's answer (untrusted, in the LLM's case).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    metric_name: str = Field(min_length=1, max_length=300)
    description: str = Field(min_length=1, max_length=600)
    category: str
    subcategory: str
    golden_signal_type: str
    golden_signal_description: str = Field(min_length=1, max_length=400)
    meter_type: str
    unit: str = Field(default="", max_length=60)
    """Spelled out as metrics_index.units stores it ("" when none); resolved from the metric, see units.unit_of."""

    @field_validator(*VOCABULARY_FIELDS)
    @classmethod
    def _in_vocabulary(cls, value: str, info: ValidationInfo) -> str:
        allowed = VOCABULARY_FIELDS[info.field_name]
        if value not in allowed:
            raise ValueError(f"unknown {info.field_name} {value!r}; expected one of {sorted(allowed)}")
        return value

    @model_validator(mode="after")
    def _subcategory_belongs_to_category(self) -> EnrichedFields:
        allowed = CATEGORIES[self.category].subcategories
        if self.subcategory not in allowed:
            raise ValueError(
                f"subcategory {self.subcategory!r} is not in category {self.category!r}; "
                f"expected one of {sorted(allowed)}"
            )
        return self


ENRICHED_COLUMNS = (
    "metric_name",
    "type",
    "description",
    "unit",
    "category",
    "subcategory",
    "category_description",
    "golden_signal_type",
    "golden_signal_description",
    "meter_type",
    "meter_type_description",
)
PROVENANCE_COLUMNS = ("enricher", "enriched_at", "input_hash", "error")
