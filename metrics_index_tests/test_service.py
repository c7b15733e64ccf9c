"""`metrics-index serve`: the HTTP API, its errors, the bearer token, re-index pick-up, feedback and /metrics,
over namespaces indexed by the real assets into a real Redis and an embedded Chroma."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from dagster import AssetSelection, materialize
from fastapi.testclient import TestClient

from metrics_index import lookup, search_snapshot
from metrics_index.api import materialization_metadata
from metrics_index.assets import metric_semantic_index
from metrics_index.checks import GOLDEN_RECALL
from metrics_index.embeddings import get_embedder
from metrics_index.golden import golden_queries
from metrics_index.search import answer, load_corpus, retrieval_text
from metrics_index.service.app import create_app
from metrics_index.service.catalog import BatchedEmbedder, WarmCatalog
from metrics_index.service.client import ServiceClient, ServiceError
from metrics_index.service.core import CatalogService
from metrics_index.settings import resources_from_env
from metrics_index.stores import revision
from metrics_index.stores.connections import StoreSettings
from metrics_index.testing.servers import LOOPBACK, http_get, wait_until
from metrics_index_tests.platform import LabelledPrometheus, run_namespace
from metrics_index_tests.project import Project, target_entry
from metrics_index_tests.served import NODE, PAYMENT_METRICS, PAYMENTS, SHOP, ServedApp, client, indexed, service

__all__ = ["client", "indexed", "service"]  # the module-scoped fixtures of served.py

# `metrics-index ARGS...` in a new process, which then prints the heavy packages it loaded.
PROBE = (
    "import sys\n"
    "from metrics_index import cli\n"
    "status = cli.main(sys.argv[1:])\n"
    "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'anthropic', 'chromadb', 'pandas'})\n"
    "print('loaded:', heavy)\n"
    "sys.exit(status)\n"
)


def search(client: TestClient, question: str, namespace: str = SHOP, **extra: object) -> dict:
    answer = client.post("/v1/search", json={"namespace": namespace, "question": question, **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_search_validate_card_and_namespaces(client: TestClient) -> None:
    found = search(client, "p99 latency of http requests", k=3, explain=True)
    assert found["results"][0]["metric_name"] == "http_server_request_duration_seconds"
    assert len(found["results"]) == 3 and found["results"][0]["matched"]
    assert {"metric_name", "score", "type", "unit", "description"} <= set(found["results"][0])
    assert found["results"][0]["promql"].startswith("histogram_quantile("), "the query hint the CLI prints too"

    checked = client.post(
        "/v1/validate",
        json={"namespace": SHOP, "names": ["http_server_request_duration_seconds_bucket", "checkout_order_total"]},
    ).json()
    assert checked["all_known"] is False
    assert [n["known"] for n in checked["names"]] == [True, False]
    assert "checkout_orders_total" in checked["names"][1]["suggestions"]

    card = client.get(f"/v1/namespaces/{SHOP}/metrics/checkout_orders_total").json()
    assert (card["type"], card["meter_type"], card["provenance"]["enricher"]) == ("counter", "counter", "rules")
    assert card["golden_signal_type"] and card["category"] and card["provenance"]["input_hash"]

    listed = {item["namespace"]: item for item in client.get("/v1/namespaces").json()["namespaces"]}
    assert listed[SHOP]["names"] == 8  # five metrics, plus _bucket/_sum/_count of the histogram
    assert listed[SHOP]["warm"] is True and listed[SHOP]["documents"] == 5

    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["checks"] == {"redis": "ok", "chroma": "ok", "embedder": "ok"}
    assert "/v1/search" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"namespace": SHOP, "question": ""}, 400, "the question is empty"),
        ({"namespace": SHOP, "question": "   "}, 400, "the question is empty"),
        ({"namespace": SHOP, "question": "x" * 10_240}, 400, "at most 1000 are accepted"),
        ({"namespace": SHOP, "question": "latency", "k": 0}, 400, "k must be between 1 and 100, got 0"),
        ({"namespace": SHOP, "question": "latency", "k": 10**6}, 400, "k must be between 1 and 100, got 1000000"),
        (
            {"namespace": "shop:nothing", "question": "latency"},
            404,
            "'shop:nothing' is not indexed: `metrics-index index shop:nothing` would refuse it too",
        ),
        ({"namespace": SHOP[:-1], "question": "latency"}, 404, f"is not indexed: did you mean {SHOP}?"),
        ({"namespace": "Shop::checkout", "question": "latency"}, 400, "a namespace is 'tenant:service'"),
        ({"namespace": SHOP}, 422, "question: Field required"),
        ({"namespace": SHOP, "question": "latency", "k": "ten"}, 422, "k: Input should be a valid integer"),
    ],
)
def test_bad_input_gets_a_clear_4xx_as_json(client: TestClient, body: dict, status: int, message: str) -> None:
    answer = client.post("/v1/search", json=body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["status"] == status and message in error["message"]
    assert error.get("suggestions") == ([SHOP] if "did you mean" in message else None)  # a typo's close namespaces
    assert "Traceback" not in answer.text


def test_other_endpoints_refuse_bad_input_too(client: TestClient) -> None:
    assert client.post("/v1/validate", json={"namespace": SHOP, "names": []}).status_code == 400
    assert client.post("/v1/validate", json={"namespace": "shop:nothing", "names": ["up"]}).status_code == 404
    missing = client.get(f"/v1/namespaces/{SHOP}/metrics/no_such_metric")
    assert missing.status_code == 404 and "no_such_metric" in missing.json()["error"]["message"]
    assert (
        client.post("/v1/search", content=b"not json", headers={"content-type": "application/json"}).status_code == 422
    )
    assert client.get("/v2/search").json()["error"]["status"] == 404


def test_bearer_token_guards_the_api_not_the_probes(service: CatalogService, indexed: Project) -> None:
    token = "test-token-not-a-secret"
    with TestClient(create_app(service, {**indexed.env, "METRICS_INDEX_TOKEN": token})) as guarded:
        body = {"namespace": SHOP, "question": "orders"}
        refused = guarded.post("/v1/search", json=body)
        assert refused.status_code == 401 and "bearer token" in refused.json()["error"]["message"]
        assert guarded.post("/v1/search", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert guarded.post("/v1/search", json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert guarded.post("/mcp", json={}).status_code == 401
        assert guarded.get("/healthz").status_code == 200


def test_a_reindexed_namespace_is_seen_at_its_next_query_without_restart(client: TestClient, indexed: Project) -> None:
    before = search(client, "refunds issued to customers", PAYMENTS)["results"]
    assert "payments_refunded_total" not in [r["metric_name"] for r in before]

    entries = [*PAYMENT_METRICS, target_entry("payments_refunded_total", "counter", "Refunds issued.", job="payments")]
    indexed.register(PAYMENTS, snapshot=indexed.write_snapshot("payments.json", entries))
    assert indexed.materialize(PAYMENTS).success

    seen: list[list[str]] = []

    def refreshed() -> bool:
        seen.append([r["metric_name"] for r in search(client, "refunds issued to customers", PAYMENTS)["results"]])
        return seen[-1][0] == "payments_refunded_total"

    wait_until(refreshed, "the service to answer from the re-indexed namespace", timeout=30)
    assert all(seen), "a search answered nothing while the namespace was being reloaded"


def test_a_reload_reads_only_changed_documents_and_equals_a_full_read(
    service: CatalogService, indexed: Project
) -> None:
    """One metric's help changed, one added, one removed: the incremental reload holds exactly what a full read
    holds, and takes the unchanged documents from the copy it held."""
    refunded = target_entry("payments_refunded_total", "counter", "Refunds issued.", job="payments")
    indexed.register(PAYMENTS, snapshot=indexed.write_snapshot("payments.json", [*PAYMENT_METRICS, refunded]))
    assert indexed.materialize(PAYMENTS).success
    index = service.catalog.index
    held = load_corpus(index, PAYMENTS)
    wait_until(lambda: service.catalog.get(PAYMENTS).corpus.names == held.names, "the service to hold it", timeout=30)
    assert held is not None and held.names == [
        "payments_authorized_total",
        "payments_declined_total",
        refunded["metric"],
    ]

    changed = {**PAYMENT_METRICS[1], "help": "Card payments the issuing bank refused."}
    added = target_entry(
        "payments_chargebacks_total", "counter", "Chargebacks disputed by cardholders.", job="payments"
    )
    indexed.register(PAYMENTS, snapshot=indexed.write_snapshot("payments.json", [changed, added, refunded]))
    assert indexed.materialize(PAYMENTS).success

    reloaded = load_corpus(index, PAYMENTS, held)
    full = load_corpus(index, PAYMENTS)
    assert reloaded is not None and full is not None
    expected = ["payments_chargebacks_total", "payments_declined_total", "payments_refunded_total"]
    assert reloaded.names == full.names == expected
    assert reloaded.rows == full.rows and reloaded.parts.hashes == full.parts.hashes
    assert reloaded.parts.hashes[1] != held.parts.hashes[1] and reloaded.rows[1] is not held.rows[1]
    assert reloaded.rows[2] is held.rows[2], "the unchanged document was read again"
    np.testing.assert_allclose(reloaded.vectors, full.vectors, rtol=1e-6)
    for terms in (["refus"], ["chargeback", "card"], ["refund"], ["payment"]):
        assert (reloaded.text_index.get_scores(terms) == full.text_index.get_scores(terms)).all()
        assert (reloaded.name_index.get_scores(terms) == full.name_index.get_scores(terms)).all()
    assert {t: m.tolist() for t, m in reloaded.traits.items()} == {t: m.tolist() for t, m in full.traits.items()}

    # the service's warm copy goes through the same reload
    wait_until(lambda: service.catalog.get(PAYMENTS).corpus.names == expected, "the service to reload", timeout=30)
    assert service.catalog.get(PAYMENTS).corpus.rows == full.rows


def test_feedback_is_kept_across_a_restart(client: TestClient, indexed: Project) -> None:
    vote = {"namespace": SHOP, "question": "orders per minute", "metric": "checkout_orders_total", "good": True}
    stored = client.post("/v1/feedback", json=vote)
    assert stored.status_code == 201, stored.text
    unknown = client.post("/v1/feedback", json={**vote, "metric": "no_such_metric"})
    assert unknown.status_code == 404

    restarted = CatalogService(indexed.env)  # a new process reads the same home folder
    assert [{k: r[k] for k in vote} for r in restarted.feedback.records()] == [vote]

    search(client, "orders per minute")
    logged = [json.loads(line) for line in (indexed.home / "queries.jsonl").read_text().splitlines()]
    assert logged[-1]["question"] == "orders per minute" and logged[-1]["top"][0] == "checkout_orders_total"
    assert set(logged[-1]) == {"ts", "namespace", "question", "k", "results", "top", "took_ms"}


def test_service_metrics_are_scraped_by_a_real_prometheus(indexed: Project, tmp_path: Path) -> None:
    app = create_app(CatalogService(indexed.env), indexed.env)  # a new service: the first search loads SHOP
    with ServedApp(app) as served:
        remote = ServiceClient(served.url)
        assert remote.search(SHOP, "orders placed")["results"]
        with pytest.raises(ServiceError, match="the question is empty") as refused:
            remote.search(SHOP, "")
        assert refused.value.status == 400
        target = {"metrics-index": f"{LOOPBACK}:{served.port}"}
        prometheus = LabelledPrometheus.start(tmp_path, services=("metrics-index",), other_targets=target)
        try:
            query = f"{prometheus.url}/api/v1/query?query="

            def scraped(expr: str) -> list[dict]:
                status, body = http_get(query + expr)
                return json.loads(body)["data"]["result"] if status == 200 else []

            wait_until(lambda: bool(scraped("metrics_index_service_requests_total")), "Prometheus to scrape /metrics")
            requests = scraped('metrics_index_service_requests_total{endpoint="search"}')
            by_status = {r["metric"]["status"]: float(r["value"][1]) for r in requests}
            assert by_status["200"] >= 1 and by_status["400"] >= 1
            for name in (
                "metrics_index_service_request_duration_seconds_bucket",
                "metrics_index_service_search_results_total",
                "metrics_index_service_namespace_load_duration_seconds_count",
                "metrics_index_service_namespaces_held",
                "metrics_index_service_documents_held",
                "metrics_index_service_enrichment_last_run_fallbacks",
            ):
                assert scraped(name), name
        finally:
            prometheus.stop()


def test_concurrent_questions_are_embedded_together_each_getting_its_own_vector() -> None:
    embedder = get_embedder()
    batches = BatchedEmbedder(embedder)
    questions = [f"bytes received on interface {i}" for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        vectors = list(pool.map(batches.embed, questions))
    np.testing.assert_allclose(np.stack(vectors), embedder.embed(questions), atol=1e-5)
    with pytest.raises(TypeError):
        batches.embed(None)  # type: ignore[arg-type]  # the model's error reaches the caller; the thread goes on
    np.testing.assert_allclose(batches.embed(questions[0]), vectors[0], atol=1e-5)


def test_search_is_timed_in_the_answer(client: TestClient) -> None:
    started = time.perf_counter()
    answer = search(client, "memory")
    assert 0 < answer["took_ms"] <= (time.perf_counter() - started) * 1000


def test_confirmed_feedback_becomes_golden_queries_the_check_runs(client: TestClient, indexed: Project) -> None:
    votes = [
        ("how many orders were placed", "checkout_orders_total", True),
        ("how many orders were placed", "checkout_orders_total", True),
        ("How many orders  were placed", "checkout_cart_items", False),
        ("items waiting in carts", "checkout_cart_items", True),
        ("items waiting in carts", "checkout_orders_total", True),
        ("items waiting in carts", "checkout_orders_total", False),  # one good, one bad: not confirmed
    ]
    for question, metric, good in votes:
        vote = {"namespace": SHOP, "question": question, "metric": metric, "good": good}
        assert client.post("/v1/feedback", json=vote).status_code == 201
    for _ in range(3):
        search(client, "items waiting in carts")

    resources = resources_from_env(indexed.env)
    materialized = materialize([golden_queries], partition_key=SHOP, instance=indexed.instance, resources=resources)
    golden = indexed.catalog("golden_queries", SHOP)
    confirmed = {row["question"]: list(row["expected"]) for row in golden.to_dict("records")}
    assert confirmed["how many orders were placed"] == ["checkout_orders_total"]
    assert confirmed["items waiting in carts"] == ["checkout_cart_items"]
    metadata = materialization_metadata(materialized)["golden_queries"]
    assert "| items waiting in carts | 3 |" in metadata["most_frequent_questions"]

    checked = run_namespace(indexed, SHOP, AssetSelection.checks_for_assets(metric_semantic_index))
    evaluation = {e.check_name: e for e in checked.get_asset_check_evaluations()}[GOLDEN_RECALL]
    assert evaluation.passed
    assert any(f"over {len(confirmed)} golden queries" in str(v.value) for v in evaluation.metadata.values())


def test_cli_asks_the_service_when_its_url_is_set_and_loads_no_dagster(
    service: CatalogService, indexed: Project
) -> None:
    with ServedApp(create_app(service, indexed.env)) as served:
        env = {**indexed.env, "METRICS_INDEX_URL": served.url, "PATH": os.environ["PATH"]}

        def cli(*argv: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, capture_output=True, text=True)

        found = cli("search", SHOP, "orders placed", "-k", "2", "--json")
        assert found.returncode == 0, found.stderr
        results = json.loads(found.stdout.splitlines()[0])
        assert results[0]["metric"] == "checkout_orders_total" and len(results) == 2
        assert found.stdout.splitlines()[-1] == "loaded: []"

        checked = cli("validate", SHOP, "checkout_orders_total", "checkout_order_total")
        assert (
            checked.returncode == 1
            and "UNKNOWN checkout_order_total (did you mean: checkout_orders_total" in checked.stdout
        )
        assert checked.stdout.splitlines()[-1] == "loaded: []"

        typo = cli("search", SHOP[:-1], "orders placed", "--json")
        error = json.loads(typo.stdout.splitlines()[0])["error"]
        assert (typo.returncode, error["code"], error["suggestions"]) == (3, "not_indexed", [SHOP]), typo.stderr
        nowhere = cli("search", "shop:nothing", "orders placed", "--json")
        error = json.loads(nowhere.stdout.splitlines()[0])["error"]
        assert (nowhere.returncode, error["code"], error["suggestions"]) == (3, "not_indexed", []), nowhere.stderr

        refused = cli("search", SHOP, "x" * 2000)
        assert refused.returncode == 2 and "at most 1000 are accepted" in refused.stderr

        voted = cli("feedback", SHOP, "orders placed", "checkout_orders_total", "--good")
        assert voted.returncode == 0, voted.stderr

    local = subprocess.run(
        [sys.executable, "-c", PROBE, "validate", SHOP, "checkout_orders_total"],
        env={**indexed.env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )
    assert local.returncode == 0, local.stderr
    assert "dagster" not in local.stdout and "anthropic" not in local.stdout


SNAPSHOT_QUESTIONS = (
    "orders placed",
    "how long do requests take",
    "http_server_requests_total",
    "http",
    "errors by status code per second",
    "free space on filesystems",
    "cpu time by mode",
)


def assert_snapshot_answers_as_the_store(settings: StoreSettings, namespace: str) -> None:
    """The namespace's snapshot is current and holds what Chroma holds: every question, with and without explain,
    gets the same answer from it as from the store."""
    snapshot = lookup.snapshot_corpus(settings, namespace)
    stored = load_corpus(lookup.semantic_index(settings), namespace)
    assert snapshot is not None and stored is not None
    assert snapshot.names == stored.names and snapshot.rows == stored.rows
    assert snapshot.parts.hashes == stored.parts.hashes and snapshot.parts.traits == stored.parts.traits
    np.testing.assert_array_equal(snapshot.vectors, stored.vectors)
    embedder = get_embedder()
    for question in SNAPSHOT_QUESTIONS:
        vector = embedder.embed([retrieval_text(question)])[0]
        for explain in (False, True):
            assert answer(snapshot, question, vector, 20, explain) == answer(stored, question, vector, 20, explain)


def test_a_one_shot_search_answers_from_the_snapshot_as_the_store_does(indexed: Project) -> None:
    settings = StoreSettings.from_env(indexed.env)
    for namespace in (SHOP, NODE):
        assert_snapshot_answers_as_the_store(settings, namespace)

    found = subprocess.run(
        [sys.executable, "-c", PROBE, "search", NODE, "free space on filesystems", "-k", "5", "--json"],
        env={**indexed.env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[-1] == "loaded: []", "the CLI's search opened Chroma or loaded pandas"
    stored = lookup.search_metrics(NODE, "free space on filesystems", k=5, env=indexed.env)
    assert [r["metric"] for r in json.loads(found.stdout.splitlines()[0])] == [r.metric_name for r in stored]


def test_a_stale_snapshot_is_never_used(indexed: Project, service: CatalogService) -> None:
    """A revision the snapshot was not written at (an indexer that writes none, a restored Redis) sends the search to
    the store; the next index run writes a current one, reading only the changed documents."""
    settings = StoreSettings.from_env(indexed.env)
    question = "payments the bank refused"
    before = lookup.search_metrics(PAYMENTS, question, env=indexed.env, one_shot=True)
    current = revision.read(service.redis, PAYMENTS)
    assert lookup.snapshot_corpus(settings, PAYMENTS, current) is not None
    assert lookup.snapshot_corpus(settings, PAYMENTS, current + 1) is None

    with pytest.MonkeyPatch.context() as patch:  # written by other code (an upgrade): its terms and traits may differ
        patch.setattr(search_snapshot, "code_fingerprint", lambda: "other code")
        assert lookup.snapshot_corpus(settings, PAYMENTS, current) is None

    revision.bump(service.redis, PAYMENTS)
    assert lookup.snapshot_corpus(settings, PAYMENTS) is None
    assert lookup.search_metrics(PAYMENTS, question, env=indexed.env, one_shot=True) == before

    refused = {**PAYMENT_METRICS[1], "help": "Card payments the issuing bank refused."}
    indexed.register(PAYMENTS, snapshot=indexed.write_snapshot("payments.json", [PAYMENT_METRICS[0], refused]))
    assert indexed.materialize(PAYMENTS).success
    assert_snapshot_answers_as_the_store(settings, PAYMENTS)
    assert lookup.search_metrics(PAYMENTS, question, env=indexed.env, one_shot=True)[0].description == refused["help"]


def test_an_index_run_sets_the_snapshot_aside_before_writing_to_chroma(
    service: CatalogService, indexed: Project
) -> None:
    """With the embedded Redis there is no revision to compare: a reader takes the snapshot it finds, so none may be
    there while Chroma is being written; one that cannot be written is a warning, and the store answers."""
    settings = StoreSettings.from_env(indexed.env)
    path = search_snapshot.snapshot_file(settings.snapshot_dir, NODE)
    current = revision.read(service.redis, NODE)
    notes: list[str] = []
    with search_snapshot.refreshing(settings.snapshot_dir, service.catalog.index, NODE, notes.append) as record:
        assert not path.exists()
    assert not path.exists(), "a sync that recorded no revision left a snapshot"

    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.mkdir()  # a folder where the file is written: the snapshot cannot be written
    with search_snapshot.refreshing(settings.snapshot_dir, service.catalog.index, NODE, notes.append) as record:
        record(current)
    assert len(notes) == 1 and f"the search snapshot of {NODE} was not written" in notes[0]
    assert not path.exists() and lookup.search_metrics(NODE, "load average", env=indexed.env, one_shot=True)
    partial.rmdir()

    with search_snapshot.refreshing(settings.snapshot_dir, service.catalog.index, NODE, notes.append) as record:
        record(current)
    assert len(notes) == 1
    assert_snapshot_answers_as_the_store(settings, NODE)


def test_the_service_loads_a_namespace_from_its_snapshot_only_when_current(indexed: Project) -> None:
    fresh = CatalogService(indexed.env)
    warm = fresh.catalog.get(NODE)
    stored = load_corpus(fresh.catalog.index, NODE)
    assert warm.source == "snapshot" and stored is not None
    assert warm.corpus.names == stored.names and warm.corpus.rows == stored.rows

    settings = StoreSettings.from_env(indexed.env)
    ahead = WarmCatalog(
        fresh.catalog.index,
        lambda namespace: revision.read(fresh.redis, namespace) + 1,  # a re-index the snapshot is not of yet
        snapshot=lambda namespace, current: lookup.snapshot_corpus(settings, namespace, current),
    )
    assert ahead.get(NODE).source == "store" and ahead.get(NODE).corpus.names == stored.names
