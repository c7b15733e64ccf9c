"""The Chroma collection: one document per metric, id `{namespace}/{metric}`, always filtered by namespace.

Embeddings are computed here with the offline embedder and passed to Chroma, so Chroma never loads (or
downloads) a model of its own. Each document's metadata keeps a hash of its text and the model: a re-sync
embeds only what changed and deletes what vanished from the namespace.

Embedded Chroma is not safe across processes, and a client keeps state in memory that goes stale when another
process writes (`InternalError: Error finding id`; a stale writer corrupts the store). So with an embedded store,
a sync holds the store's exclusive lock (stores/lock.py, a file in the Chroma directory) and every read its shared
lock, and each reopens its client when the lock's generation shows that another writer came by since. A Chroma
server needs neither: it is the only process touching its files.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from metrics_index.enrichment.vocabulary import ENRICHED_COLUMNS
from metrics_index.stores.connections import DEFAULT_COLLECTION
from metrics_index.stores.lock import DEFAULT_WAIT_SECONDS, Notify, StoreLock
from metrics_index.text import document_text, embedding_text

if TYPE_CHECKING:  # Chroma and the model are imported where a store is opened (stores/connections.py), so that what
    # only loads the project (Dagster's code server) does not import them (about 1 s of CPU)
    from chromadb.api import ClientAPI
    from chromadb.api.types import GetResult

    from metrics_index.embeddings import Embedder

PAGE_SIZE = 1000
METADATA_COLUMNS = (*ENRICHED_COLUMNS, "enricher", "promql_hint", "label_names", "label_values")
LOCK_FILE = "metrics-index.lock"
# Search ranks every vector of a namespace exactly, in memory (search.py): Chroma's HNSW graph is kept up to date
# but never queried by metrics-index, so a new collection builds it with a third of the default effort (100),
# which saves about 30% of the upsert's CPU time at 10,000 documents. Existing collections keep their setting.
HNSW_CONSTRUCTION_EF = 32
_REOPEN = threading.Lock()


class CollectionMismatchError(RuntimeError):
    """The collection cannot be used as asked (e.g. it was built with another embedding model)."""


@dataclass(frozen=True)
class SyncReport:
    total: int
    indexed: int
    unchanged: int
    removed: int


class SemanticIndex:
    def __init__(
        self,
        client: ClientAPI,
        embedder: Embedder,
        collection_name: str = DEFAULT_COLLECTION,
        lock_wait_seconds: float = DEFAULT_WAIT_SECONDS,
    ) -> None:
        self.client = client
        self.embedder = embedder
        self.collection_name = collection_name
        settings = client.get_settings()
        self.path = settings.persist_directory if settings.is_persistent else ""
        self.lock = (
            StoreLock(Path(self.path) / LOCK_FILE, f"the Chroma store at {self.path}", lock_wait_seconds)
            if self.path
            else None
        )
        self._generation: str | None = None  # unknown: the client may come from a system cached long ago
        self.collection = self._collection(client)

    def _collection(self, client: ClientAPI) -> Any:
        from chromadb.errors import NotFoundError

        try:
            return client.get_collection(self.collection_name)
        except NotFoundError:
            with self.writing():
                return self._get_or_create(self.client)

    def _get_or_create(self, client: ClientAPI) -> Any:
        return client.get_or_create_collection(
            self.collection_name,
            embedding_function=None,
            metadata={
                "hnsw:space": "cosine",
                "hnsw:construction_ef": HNSW_CONSTRUCTION_EF,
                "embedding_model": self.embedder.model_id,
            },
        )

    def writing(self, notify: Notify | None = None) -> AbstractContextManager[None]:
        """Hold the store for writing (embedded: its exclusive lock), with a client that sees the latest state."""
        return self._fresh(exclusive=True, notify=notify, wait_seconds=None)

    def reading(self, wait_seconds: float | None = None) -> AbstractContextManager[None]:
        """Hold the store for reading (embedded: its shared lock, waiting for a writer up to `wait_seconds`, by
        default the lock's), with a client that sees the latest state."""
        return self._fresh(exclusive=False, notify=None, wait_seconds=wait_seconds)

    def generation(self) -> str | None:
        """Changes each time a writer takes an embedded store (an O(1) file read); None for a Chroma server."""
        return self.lock.generation() if self.lock else None

    @contextmanager
    def _fresh(self, exclusive: bool, notify: Notify | None, wait_seconds: float | None) -> Iterator[None]:
        if self.lock is None:
            yield
            return
        with self.lock.exclusive(notify) if exclusive else self.lock.shared(notify, wait_seconds) as seen:
            if seen != self._generation:
                self._reopen()
            self._generation = self.lock.generation()  # a writer's own token: its nested reads need no reopen
            yield

    def _reopen(self) -> None:
        """A new client with nothing cached: Chroma shares one system per directory in a process, and keeps it
        however stale; forgetting it makes the next client read the store afresh. Clients made before keep
        their own (stale) system until they are dropped."""
        import chromadb
        from chromadb.api.shared_system_client import SharedSystemClient

        with _REOPEN:
            SharedSystemClient._identifier_to_system.pop(self.path, None)
            SharedSystemClient._identifier_to_refcount.pop(self.path, None)
            self.client = chromadb.PersistentClient(path=self.path)
        self.collection = self._get_or_create(self.client)

    def sync(
        self,
        namespace: str,
        enriched: pd.DataFrame,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
        notify: Notify | None = None,
    ) -> SyncReport:
        """Make the namespace's documents exactly the enriched rows: upsert new or changed ones in batches,
        delete those whose metric is gone. Holds the store for writing throughout."""
        with self.writing(notify):
            return self._sync(namespace, enriched, batch_size, progress)

    def _sync(
        self, namespace: str, enriched: pd.DataFrame, batch_size: int, progress: Callable[[int], None] | None
    ) -> SyncReport:
        batch_size = min(batch_size, self.client.get_max_batch_size())
        if self.built_with() != self.embedder.model_id:
            self._reembed_everything()
        stored_hashes = {
            doc_id: (metadata or {}).get("doc_hash")
            for page in self.pages(namespace, ["metadatas"])
            for doc_id, metadata in zip(page["ids"], page["metadatas"], strict=True)
        }

        ids, texts, metadatas = [], [], []
        for row in enriched.to_dict("records"):
            text = document_text(row)
            metadata = self._metadata(namespace, row, text)
            doc_id = document_id(namespace, row["metric_name"])
            if stored_hashes.get(doc_id) != metadata["doc_hash"]:
                ids.append(doc_id)
                texts.append(text)
                metadatas.append(metadata)
        if progress:
            progress(len(enriched) - len(ids))
        for start in range(0, len(ids), batch_size):
            end = start + batch_size
            self.collection.upsert(
                ids=ids[start:end],
                documents=texts[start:end],
                embeddings=self._embed(texts[start:end], metadatas[start:end]),
                metadatas=metadatas[start:end],
            )
            if progress:
                progress(len(ids[start:end]))

        wanted = {document_id(namespace, name) for name in enriched["metric_name"]}
        stale = sorted(set(stored_hashes) - wanted)
        for start in range(0, len(stale), batch_size):
            self.collection.delete(ids=stale[start : start + batch_size])
        return SyncReport(total=len(enriched), indexed=len(ids), unchanged=len(enriched) - len(ids), removed=len(stale))

    def _embed(self, documents: Sequence[str], metadatas: Sequence[Mapping[str, Any]]) -> list:
        """The vectors of documents, each embedded with its label values (text.embedding_text)."""
        return self.embedder.embed(
            [embedding_text(d, m.get("label_values", "")) for d, m in zip(documents, metadatas, strict=True)]
        )

    def _metadata(self, namespace: str, row: Mapping[str, Any], text: str) -> dict[str, str]:
        metadata = {column: _text(row.get(column)) for column in METADATA_COLUMNS}
        return {**metadata, "namespace": namespace, "doc_hash": self._doc_hash(text, metadata)}

    def _doc_hash(self, text: str, metadata: Mapping[str, Any]) -> str:
        stored = sorted((column, _text(metadata.get(column))) for column in METADATA_COLUMNS)
        return hashlib.sha256(f"{self.embedder.model_id}\x1f{text}\x1f{stored}".encode()).hexdigest()[:32]

    def ids(self, namespace: str) -> list[str]:
        with self.reading():
            self._same_model()
            return self.collection.get(where={"namespace": namespace}, include=[])["ids"]

    def built_with(self) -> str | None:
        return (self.collection.metadata or {}).get("embedding_model")

    def _same_model(self) -> None:
        """Vectors of two models are never compared: a read of a collection another model built is an error until a
        sync re-embeds it (the collection object is fetched again first, in case another process just did)."""
        if self.built_with() != self.embedder.model_id:
            self.collection = self.client.get_collection(self.collection_name)
        if self.built_with() != self.embedder.model_id:
            raise CollectionMismatchError(
                f"collection {self.collection_name!r} was built with embedding model {self.built_with()!r}, not "
                f"{self.embedder.model_id!r}: index again (a sync re-embeds every document with the new model), "
                "use that model, or another collection name"
            )

    def _reembed_everything(self) -> None:
        """Every document of the collection, of every namespace, embedded again with this index's model from its
        stored text, its hash made with the model; then the collection says it was built with the model. Run by the
        first sync after the model changed (e.g. the float32 default of earlier versions), with the store held for
        writing; if it stops half-way, the collection still names the old model and the next sync does it again."""
        every = self.collection.get(include=[])["ids"]
        for start in range(0, len(every), PAGE_SIZE):
            page = self.collection.get(ids=every[start : start + PAGE_SIZE], include=["documents", "metadatas"])
            metadatas = [
                {**(metadata or {}), "doc_hash": self._doc_hash(text or "", metadata or {})}
                for text, metadata in zip(page["documents"], page["metadatas"], strict=True)
            ]
            texts = [text or "" for text in page["documents"]]
            self.collection.upsert(
                ids=page["ids"], documents=texts, embeddings=self._embed(texts, metadatas), metadatas=metadatas
            )
        kept = {key: value for key, value in (self.collection.metadata or {}).items() if not key.startswith("hnsw:")}
        self.collection.modify(metadata={**kept, "embedding_model": self.embedder.model_id})  # hnsw: fixed at creation

    def count(self, namespace: str) -> int:
        return len(self.ids(namespace))

    def pages(
        self, namespace: str, include: list[str], page_size: int = PAGE_SIZE, ids: Sequence[str] | None = None
    ) -> Iterator[GetResult]:
        """The namespace's documents (or those of `ids`) in pages, read by id: one unpaged read with metadata fails
        above about 32,000 documents (SQLite's variable limit), and offset paging re-scans the filter for every
        page. The store is held for reading until the last page is read, so the pages are of one version."""
        with self.reading():
            self._same_model()
            ids = self.ids(namespace) if ids is None else ids
            for start in range(0, len(ids), page_size):
                yield self.collection.get(ids=ids[start : start + page_size], include=include)

    def documents(self, namespace: str) -> pd.DataFrame:
        """Every document of the namespace with its metadata, one row each (for checks and inspection)."""
        rows = [
            {"id": doc_id, "document": document, **(metadata or {})}
            for page in self.pages(namespace, ["documents", "metadatas"])
            for doc_id, document, metadata in zip(page["ids"], page["documents"], page["metadatas"], strict=True)
        ]
        columns = ["id", "document", *METADATA_COLUMNS, "namespace", "doc_hash"]
        return pd.DataFrame(rows, columns=columns).sort_values("id", ignore_index=True)


def document_id(namespace: str, metric_name: str) -> str:
    return f"{namespace}/{metric_name}"


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)
