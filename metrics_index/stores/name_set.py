"""The namespace's metric names in a Redis set, for exact-match validation.

Key scheme: `metrics-index:{namespace}:names` holds every name a PromQL query may use in the namespace:
each metric family plus, for histograms and summaries, its `_bucket`/`_sum`/`_count` series. A
replacement fills `metrics-index:{namespace}:names:tmp:{id}` and then RENAMEs it over the live key inside
one MULTI/EXEC, so a reader sees the old set or the new one, never an empty or half-written one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import pandas as pd
import redis
from rapidfuzz import fuzz, process

KEY_PREFIX = "metrics-index"
SERIES_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
_CHUNK = 10_000
_TMP_TTL_SECONDS = 3600


def names_key(namespace: str) -> str:
    return f"{KEY_PREFIX}:{namespace}:names"


def promql_names(raw: pd.DataFrame) -> set[str]:
    """Every name a query may use: the families, and the series a histogram or summary exposes."""
    names = set(raw["metric_name"])
    for name, metric_type in zip(raw["metric_name"], raw["type"], strict=True):
        names.update(name + suffix for suffix in SERIES_SUFFIXES.get(metric_type, ()))
    return names


def replace_names(client: redis.Redis, namespace: str, names: Iterable[str]) -> int:
    """Atomically make the live set exactly `names`; returns its size. The temporary key expires by
    itself if the process dies half-way, and the live set is untouched until the final RENAME."""
    live = names_key(namespace)
    temporary = f"{live}:tmp:{uuid.uuid4().hex}"
    ordered = sorted(set(names))
    with client.pipeline(transaction=False) as fill:
        for start in range(0, len(ordered), _CHUNK):
            fill.sadd(temporary, *ordered[start : start + _CHUNK])
        fill.expire(temporary, _TMP_TTL_SECONDS)
        fill.execute()
    with client.pipeline(transaction=True) as swap:
        if ordered:
            swap.rename(temporary, live)
            swap.persist(live)
        else:
            swap.delete(live)
        swap.execute()
    return len(ordered)


def known_metrics(client: redis.Redis, namespace: str, names: Sequence[str]) -> dict[str, bool]:
    """For each name, whether it exists in the namespace: exact, case-sensitive, one round trip."""
    if not names:
        return {}
    answers = client.smismember(names_key(namespace), list(names))
    return {name: bool(answer) for name, answer in zip(names, answers, strict=True)}


def is_known_metric(client: redis.Redis, namespace: str, name: str) -> bool:
    return known_metrics(client, namespace, [name])[name]


def all_names(client: redis.Redis, namespace: str) -> set[str]:
    return {name.decode() if isinstance(name, bytes) else name for name in client.smembers(names_key(namespace))}


def close_matches(candidates: Iterable[str], name: str, limit: int = 3) -> list[str]:
    """Names that look like a mistyped `name`, best first, for 'did you mean' answers."""
    matches = process.extract(name, list(candidates), scorer=fuzz.ratio, limit=limit, score_cutoff=80)
    return [match for match, _score, _index in matches]
