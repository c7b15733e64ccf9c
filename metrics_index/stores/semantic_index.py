"""The Chroma collection: one document per metric, id `{namespace}/{metric}`, always filtered by namespace.

Embeddings are computed here with the offline embedder and passed to Chroma, so Chroma never loads (or
downloads) a model of its own. Each document's metadata keeps a hash of its text and the model: a re-sync
embeds only what changed and deletes what vanished from the namespace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from chromadb.api import ClientAPI
from chromadb.api.types import GetResult

from metrics_index.embeddings import Embedder
from metrics_index.enrichment.vocabulary import ENRICHED_COLUMNS
from metrics_index.text import document_text

DEFAULT_COLLECTION = "metrics_index"
PAGE_SIZE = 1000
METADATA_COLUMNS = (*ENRICHED_COLUMNS, "enricher", "promql_hint", "label_names")


class CollectionMismatchError(RuntimeError):
    """The collection cannot be used as asked (e.g. it was built with another embedding model)."""


@dataclass(frozen=True)
class SyncReport:
    total: int
    indexed: int
    unchanged: int
    removed: int


class SemanticIndex:
    def __init__(self, client: ClientAPI, embedder: Embedder, collection_name: str = DEFAULT_COLLECTION) -> None:
        self.client = client
        self.embedder = embedder
        self.collection = client.get_or_create_collection(
            collection_name,
            embedding_function=None,
            metadata={"hnsw:space": "cosine", "embedding_model": embedder.model_id},
        )
        built_with = (self.collection.metadata or {}).get("embedding_model")
        if built_with != embedder.model_id:
            raise CollectionMismatchError(
                f"collection {collection_name!r} was built with embedding model {built_with!r}, "
                f"not {embedder.model_id!r}: use that model, or another collection name"
            )

    def sync(
        self,
        namespace: str,
        enriched: pd.DataFrame,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
    ) -> SyncReport:
        """Make the namespace's documents exactly the enriched rows: upsert new or changed ones in batches,
        delete those whose metric is gone."""
        batch_size = min(batch_size, self.client.get_max_batch_size())
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
                embeddings=self.embedder.embed(texts[start:end]),
                metadatas=metadatas[start:end],
            )
            if progress:
                progress(len(ids[start:end]))

        wanted = {document_id(namespace, name) for name in enriched["metric_name"]}
        stale = sorted(set(stored_hashes) - wanted)
        for start in range(0, len(stale), batch_size):
            self.collection.delete(ids=stale[start : start + batch_size])
        return SyncReport(total=len(enriched), indexed=len(ids), unchanged=len(enriched) - len(ids), removed=len(stale))

    def _metadata(self, namespace: str, row: Mapping[str, Any], text: str) -> dict[str, str]:
        metadata = {column: _text(row.get(column)) for column in METADATA_COLUMNS}
        digest = hashlib.sha256(f"{self.embedder.model_id}\x1f{text}\x1f{sorted(metadata.items())}".encode())
        return {**metadata, "namespace": namespace, "doc_hash": digest.hexdigest()[:32]}

    def ids(self, namespace: str) -> list[str]:
        return self.collection.get(where={"namespace": namespace}, include=[])["ids"]

    def count(self, namespace: str) -> int:
        return len(self.ids(namespace))

    def pages(self, namespace: str, include: list[str], page_size: int = PAGE_SIZE) -> Iterator[GetResult]:
        """The namespace's documents in pages, read by id: one unpaged read with metadata fails above about
        32,000 documents (SQLite's variable limit), and offset paging re-scans the filter for every page."""
        ids = self.ids(namespace)
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
