"""The revision of each namespace's semantic index: a counter in Redis, bumped after every successful sync.

Key: `metrics-index:{namespace}:revision`, an integer (absent = 0, never indexed). The index asset bumps it once its
Chroma sync has finished, so a reader that sees a newer revision knows a complete new version of the namespace is in
Chroma and reopens what it holds (the search corpus, an embedded Chroma client). Reading it is one GET (or one MGET
for many namespaces), whichever Chroma is used: embedded or a server. Redis is the store every writer and reader of
a deployment already shares (the name set lives there).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from metrics_index.stores.name_set import KEY_PREFIX


def revision_key(namespace: str) -> str:
    return f"{KEY_PREFIX}:{namespace}:revision"


def read(client: redis.Redis, namespace: str) -> int:
    """The namespace's current revision: 0 before its first index, then 1, 2, ... one per completed sync (after a
    restart, on from the restart's value)."""
    return int(client.get(revision_key(namespace)) or 0)


def read_many(client: redis.Redis, namespaces: Sequence[str]) -> dict[str, int]:
    """The revisions of many namespaces in one round trip."""
    if not namespaces:
        return {}
    values = client.mget([revision_key(namespace) for namespace in namespaces])
    return {namespace: int(value or 0) for namespace, value in zip(namespaces, values, strict=True)}


def bump(client: redis.Redis, namespace: str) -> int:
    """Record a completed sync of the namespace; returns the new revision."""
    return int(client.incr(revision_key(namespace)))


def restart(client: redis.Redis, namespace: str) -> int:
    """For a Redis that lost its data and was rebuilt: a revision no reader can have seen (the time in
    milliseconds, above any counter), so a warm reader reloads the namespace and never takes answers it cached
    under an old number for current ones. Returns it."""
    value = time.time_ns() // 1_000_000
    client.set(revision_key(namespace), value)
    return value
