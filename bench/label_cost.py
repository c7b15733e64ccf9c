"""What the label schema costs: Prometheus time and requests, and Redis memory, beside the metadata it extends.

    python bench/label_cost.py              # the dev corpus's largest namespace (mysqld) and the demo's (node)

For each namespace, a real Prometheus (Debian, 127.0.0.1, free port) scrapes one target that serves the
namespace's real series (bench/corpora/<service>.series.json.gz, saved by `bench/corpora/make.sh` from the
Prometheus that made the corpus; the demo's from metrics_index/data/) with HELP and TYPE lines from its metadata
snapshot, `honor_labels` keeping their job and instance. Then, each timed over
several runs (median), through the functions the raw asset calls:
- baseline: the metadata read the raw asset already does (`/api/v1/targets/metadata`);
- labels: the label read as the asset does it (one `/api/v1/series` request with a limit and a byte cap);
- labels, cut: the same with the namespace-wide answer forced over its limit, so each metric is read on its own
  (the path a namespace with more series than NAMESPACE_SERIES_LIMIT takes);
and on a real redis-server the memory (`MEMORY USAGE … SAMPLES 0`) and replace time of the name set alone
(the baseline) and of the name set with its label hash.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from metrics_index.namespaces import DEFAULT_REGISTRY_PATH, Namespace, NamespaceSource
from metrics_index.sources.labels import (
    LabelFetch,
    family_names,
    fetch_label_schemas,
    read_series_snapshot,
    series_name_schemas,
    with_labels,
)
from metrics_index.sources.prometheus import PrometheusApi, fetch_raw_metadata, merge_entries, read_snapshot
from metrics_index.stores.name_set import labels_key, names_key, promql_names, replace_names
from metrics_index.testing.servers import (
    LOOPBACK,
    RedisServer,
    ScriptedHTTPServer,
    free_port,
    http_get,
    prometheus_process,
    wait_until,
)

HERE = Path(__file__).resolve().parent
DATA = DEFAULT_REGISTRY_PATH.parent
NAMESPACES = {
    "corpus:mysqld": (HERE / "corpora" / "mysqld.json", HERE / "corpora" / "mysqld.series.json.gz", "mysqld"),
    "demo:node": (DATA / "demo-targets-metadata.json", DATA / "demo-series.json.gz", "node"),
}
REPEATS = 5


def exposition(raw: pd.DataFrame, series: list[dict[str, str]]) -> str:
    """The series as a Prometheus text exposition, grouped by family under their HELP and TYPE lines."""
    families = family_names(raw)
    described = raw.set_index("metric_name")
    by_family: dict[str, list[dict[str, str]]] = {}
    for labels in series:
        by_family.setdefault(families.get(labels["__name__"], labels["__name__"]), []).append(labels)
    lines = []
    for family, members in sorted(by_family.items()):
        if family in described.index:
            help_text = described.loc[family, "help"].replace("\\", "\\\\").replace("\n", "\\n")
            kind = described.loc[family, "type"]
            kind = kind if kind in {"counter", "gauge", "histogram", "summary"} else "untyped"
            lines += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}"]
        for labels in sorted(members, key=lambda item: sorted(item.items())):
            pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()) if k != "__name__")
            lines.append(f"{labels['__name__']}{{{pairs}}} 1")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def median_run(action: Callable[[], LabelFetch | pd.DataFrame]) -> tuple[float, LabelFetch | pd.DataFrame]:
    times, result = [], None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def measure(namespace: str, metadata: Path, series_path: Path, job: str, work: Path) -> list[str]:
    selector = f'{{job="{job}"}}'
    raw = merge_entries(read_snapshot(metadata, selector))
    series = read_series_snapshot(series_path, selector)
    with ScriptedHTTPServer() as target:
        target.answer("/metrics", body=exposition(raw, series), content_type="text/plain; version=0.0.4")
        port = free_port()
        target_address = target.url.removeprefix("http://")
        scrape = {"job_name": job, "honor_labels": True, "static_configs": [{"targets": [target_address]}]}
        prometheus = prometheus_process(work, port, [scrape], interval="2s", name=f"prometheus-{job}")
        url = f"http://{LOOPBACK}:{port}"
        prometheus.start()
        try:
            wait_until(lambda: _series_count(url, selector) >= len(series), f"{len(series)} series", 60, prometheus)
            api = PrometheusApi(url)
            source = NamespaceSource(Namespace.parse(namespace), selector, prometheus_url=url)
            base_seconds, fetched_raw = median_run(lambda: fetch_raw_metadata(source))
            label_seconds, labels = median_run(lambda: fetch_label_schemas(api, selector, raw))
            cut_seconds, cut = median_run(lambda: fetch_label_schemas(api, selector, raw, namespace_limit=1))
        finally:
            prometheus.stop()
    assert isinstance(labels, LabelFetch) and isinstance(cut, LabelFetch) and isinstance(fetched_raw, pd.DataFrame)
    names = promql_names(raw)
    schemas = {name: schema.to_json() for name, schema in series_name_schemas(with_labels(raw, labels.schemas)).items()}
    server = RedisServer(work / f"redis-{job}").start()
    try:
        with server.client() as client:
            names_only, _ = median_run(lambda: replace_names(client, namespace, names))
            names_bytes = client.memory_usage(names_key(namespace), samples=0)
            with_hash, _ = median_run(lambda: replace_names(client, namespace, names, schemas))
            names_bytes_after = client.memory_usage(names_key(namespace), samples=0)
            hash_bytes = client.memory_usage(labels_key(namespace), samples=0)
            fields = client.hlen(labels_key(namespace))
    finally:
        server.stop()
    coverage = f"{len(labels.schemas)}/{len(raw)}"
    return [
        f"### {namespace}: {len(raw)} metrics, {len(series)} series, label schemas for {coverage} metrics",
        "",
        "| what | median time (s) | Prometheus requests | series read |",
        "|---|---:|---:|---:|",
        f"| baseline: metadata (`/api/v1/targets/metadata`) | {base_seconds:.3f} | 1 | - |",
        f"| labels: one `/api/v1/series` request | {label_seconds:.3f} | {labels.requests} | {labels.series} |",
        f"| labels, answer cut: metric by metric | {cut_seconds:.3f} | {cut.requests} | - |",
        "",
        "| Redis | bytes | replace time, median (s) |",
        "|---|---:|---:|",
        f"| baseline: name set ({len(names)} names) | {names_bytes:,} | {names_only:.4f} |",
        f"| label hash ({fields} names with labels) | {hash_bytes:,} | - |",
        f"| name set + label hash | {names_bytes_after + hash_bytes:,} | {with_hash:.4f} |",
        "",
    ]


def _series_count(url: str, selector: str) -> int:
    status, body = http_get(f"{url}/api/v1/query?query=count({selector})")
    result = json.loads(body)["data"]["result"] if status == 200 else []
    return int(float(result[0]["value"][1])) if result else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("namespaces", nargs="*", default=list(NAMESPACES), help=f"of {', '.join(NAMESPACES)}")
    args = parser.parse_args(argv)
    unknown = set(args.namespaces) - set(NAMESPACES)
    if unknown:
        parser.error(f"unknown namespaces {sorted(unknown)}: choose from {list(NAMESPACES)}")
    with tempfile.TemporaryDirectory() as work:
        for namespace in args.namespaces:
            metadata, series, job = NAMESPACES[namespace]
            print("\n".join(measure(namespace, metadata, series, job, Path(work))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
