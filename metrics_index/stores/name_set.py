"""The namespace's metric names in a Redis set, and their label schemas in a hash beside it, for validation.

Key scheme: `metrics-index:{namespace}:names` holds every name a PromQL query may use in the namespace:
each metric family plus, for histograms and summaries, its `_bucket`/`_sum`/`_count` series (`_gcount`/`_gsum` for
an OpenMetrics gauge histogram).
`metrics-index:{namespace}:labels` maps each of those names that had series to its label schema (JSON, see
sources/labels.py). A replacement fills temporary keys (`…:tmp:{id}`) and then RENAMEs both over the live
keys inside one MULTI/EXEC, so a reader sees the old names and labels or the new ones, never a mix, an empty
or a half-written one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from rapidfuzz import fuzz, process

if TYPE_CHECKING:
    import pandas as pd

KEY_PREFIX = "metrics-index"
SERIES_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("_sum", "_count"),
}
# OpenMetrics names a counter's samples `<family>_total` and an info metric's `<family>_info`, while Prometheus's
# metadata keeps the family's name: the series say which of the two a query must use (sources/labels.py).
OPENMETRICS_SAMPLE_SUFFIXES = {"counter": "_total", "info": "_info"}
RAW_CATALOG_FOLDER = "raw_metric_metadata"  # the raw asset's folder in the Parquet catalog (io.py)
_CHUNK = 10_000
_TMP_TTL_SECONDS = 3600


def names_key(namespace: str) -> str:
    return f"{KEY_PREFIX}:{namespace}:names"


def labels_key(namespace: str) -> str:
    return f"{KEY_PREFIX}:{namespace}:labels"


def promql_names(raw: pd.DataFrame) -> set[str]:
    """Every name a query may use: the families, the series a histogram or summary exposes, and every series name
    the namespace's series showed for a family (an OpenMetrics family's `x_created`)."""
    from metrics_index.sources.labels import seen_series_names  # sources/labels.py imports this module

    names = set(raw["metric_name"]) | seen_series_names(raw)
    for name, metric_type in zip(raw["metric_name"], raw["type"], strict=True):
        names.update(name + suffix for suffix in SERIES_SUFFIXES.get(metric_type, ()))
    return names


def replace_names(
    client: redis.Redis, namespace: str, names: Iterable[str], labels: Mapping[str, str] | None = None
) -> int:
    """Atomically make the live set exactly `names` and the live label hash exactly `labels` (name → schema
    JSON; names outside `names` are dropped); returns the set's size. The temporary keys expire by themselves
    if the process dies half-way, and the live keys are untouched until the final RENAMEs."""
    suffix = f":tmp:{uuid.uuid4().hex}"
    unique = set(names)
    ordered = sorted(unique)
    schemas = sorted((name, schema) for name, schema in (labels or {}).items() if name in unique)
    live = {names_key(namespace): bool(ordered), labels_key(namespace): bool(schemas)}
    with client.pipeline(transaction=False) as fill:
        for start in range(0, len(ordered), _CHUNK):
            fill.sadd(names_key(namespace) + suffix, *ordered[start : start + _CHUNK])
        for start in range(0, len(schemas), _CHUNK):
            fill.hset(labels_key(namespace) + suffix, mapping=dict(schemas[start : start + _CHUNK]))
        for key, filled in live.items():
            if filled:
                fill.expire(key + suffix, _TMP_TTL_SECONDS)
        fill.execute()
    with client.pipeline(transaction=True) as swap:
        for key, filled in live.items():
            if filled:
                swap.rename(key + suffix, key)
                swap.persist(key)
            else:
                swap.delete(key)
        swap.execute()
    return len(ordered)


def rebuild_from_catalog(client: redis.Redis, catalog_dir: Path) -> int:
    """Every namespace's name set and label hash from its last raw metadata in the Parquet catalog, for a Redis
    that lost its data (embedded_redis.py), each with a revision no reader has seen; returns how many namespaces
    were rebuilt."""
    import pandas as pd  # not at the top: validating names never needs it

    from metrics_index.sources.labels import name_set_labels  # sources/labels.py imports this module
    from metrics_index.stores import revision  # stores/revision.py imports this module

    rebuilt = 0
    for path in sorted((catalog_dir / RAW_CATALOG_FOLDER).glob("*/*.parquet")):
        try:
            frame = pd.read_parquet(path)
        except Exception:  # pyarrow raises several types; an unreadable file is rebuilt by the namespace's next run
            continue
        namespace = f"{path.parent.name}:{path.stem}"
        replace_names(client, namespace, promql_names(frame), name_set_labels(frame))
        revision.restart(client, namespace)
        rebuilt += 1
    return rebuilt


def known_metrics(client: redis.Redis, namespace: str, names: Sequence[str]) -> dict[str, bool]:
    """For each name, whether it exists in the namespace: exact, case-sensitive, one round trip."""
    if not names:
        return {}
    answers = client.smismember(names_key(namespace), list(names))
    return {name: bool(answer) for name, answer in zip(names, answers, strict=True)}


def is_known_metric(client: redis.Redis, namespace: str, name: str) -> bool:
    return known_metrics(client, namespace, [name])[name]


def label_schemas(client: redis.Redis, namespace: str, names: Sequence[str]) -> dict[str, str | None]:
    """Each name's label schema JSON (None when unknown), one round trip."""
    if not names:
        return {}
    answers = client.hmget(labels_key(namespace), list(names))
    return {
        name: answer.decode() if isinstance(answer, bytes) else answer
        for name, answer in zip(names, answers, strict=True)
    }


def all_names(client: redis.Redis, namespace: str) -> set[str]:
    return {name.decode() if isinstance(name, bytes) else name for name in client.smembers(names_key(namespace))}


def indexed_namespaces(client: redis.Redis) -> list[str]:
    """Every namespace with a name set (indexed at least once), sorted."""
    prefix, suffix = names_key("*").split("*")
    keys = (key.decode() if isinstance(key, bytes) else key for key in client.scan_iter(names_key("*"), count=1000))
    return sorted(key.removeprefix(prefix).removesuffix(suffix) for key in keys)


def close_matches(candidates: Iterable[str], name: str, limit: int = 3, score_cutoff: int = 80) -> list[str]:
    """Names that look like a mistyped `name`, best first, for 'did you mean' answers."""
    matches = process.extract(name, list(candidates), scorer=fuzz.ratio, limit=limit, score_cutoff=score_cutoff)
    return [match for match, _score, _index in matches]


@dataclass(frozen=True)
class NameSetCatalog:
    """One namespace's names and label schemas in Redis, as PromQL validation asks for them."""

    client: redis.Redis
    namespace: str

    def known(self, names: Sequence[str]) -> dict[str, bool]:
        return known_metrics(self.client, self.namespace, names)

    def schemas(self, names: Sequence[str]) -> dict[str, str | None]:
        return label_schemas(self.client, self.namespace, names)

    def all_names(self) -> set[str]:
        return all_names(self.client, self.namespace)
