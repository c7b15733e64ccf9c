"""Claude through the Message Batches API inside the Dagster pipeline: a first indexing of many metrics is indexed
by the rules at once and submitted as one batch; the message batch sensor materializes the namespace again once the
batch has ended, and the answers replace the rules' rows. Real `anthropic` client, the local Messages API (with its
batch endpoints), real Redis and Chroma, and Dagster's own helpers (`materialize`, `build_sensor_context`,
`instance_for_test`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context, instance_for_test

from metrics_index.api import materialization_metadata
from metrics_index.definitions import defs
from metrics_index.enrichment.claude.models import BATCH_PRICE_FACTOR, DEFAULT_PRICES
from metrics_index.settings import resources_from_env
from metrics_index.testing.messages_api import MessagesAPIServer
from metrics_index_tests.project import Project, step_failures, target_entry

NAMESPACE = "shop:checkout"
SECRET = "fake-anthropic-key-batches-0123456789"
METRICS = [
    target_entry("http_server_request_duration_seconds", "histogram", "Duration of HTTP requests.", job="checkout"),
    target_entry("http_server_requests_total", "counter", "HTTP requests served.", job="checkout"),
    target_entry("checkout_payment_failures_total", "counter", "Payments that failed.", job="checkout"),
    target_entry("checkout_cart_items", "gauge", "Items in open carts.", job="checkout"),
    target_entry("checkout_orders_total", "counter", "Orders placed.", job="checkout"),
    target_entry("checkout_build_info", "gauge", "Build information.", job="checkout"),
]


@pytest.fixture
def batch_project(project: Project, messages_api: MessagesAPIServer, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    project.extra_env.update(
        {
            "METRICS_INDEX_ENRICHER": "claude",
            "ANTHROPIC_BASE_URL": messages_api.url,
            "METRICS_INDEX_LLM_BATCH_SIZE": "2",
            "METRICS_INDEX_LLM_BATCH_API_THRESHOLD": "3",
        }
    )
    project.register(NAMESPACE, snapshot=project.write_snapshot("checkout.json", METRICS), selector='{job="checkout"}')
    return project


def sensor_tick(project: Project, instance: DagsterInstance) -> SensorResult:
    """One evaluation of the registered message batch sensor, with the project's resources."""
    context = build_sensor_context(
        instance=instance, resources={"enricher": resources_from_env(project.env)["enricher"]}
    )
    result = defs.resolve_sensor_def("message_batch_sensor")(context)
    assert isinstance(result, SensorResult)
    return result


def enrichment(project: Project) -> dict:
    assert project.instance is not None
    result = project.materialize(NAMESPACE)
    assert result.success, step_failures(result)
    return materialization_metadata(result)["enriched_metric_metadata"]


def batch_posts(server: MessagesAPIServer) -> int:
    return sum(r.path == "/v1/messages/batches" for r in server.requests)


def test_a_first_indexing_is_searchable_at_once_and_takes_the_batch_answers_in_when_it_ends(
    batch_project: Project, messages_api: MessagesAPIServer
) -> None:
    first = enrichment(batch_project)
    (batch_id,) = first["message_batches"]
    assert (first["awaiting_batch"], first["llm_requests"], batch_posts(messages_api)) == (6, 0, 1)
    catalog = batch_project.catalog("enriched_metric_metadata", NAMESPACE)
    assert (catalog["enricher"] == "rules").all()
    assert catalog["error"].str.startswith(f"awaiting batch {batch_id}, request r").all()
    assert batch_project.index().count(NAMESPACE) == 6, "searchable with the rules' answers meanwhile"

    assert sensor_tick(batch_project, batch_project.instance).run_requests == []
    messages_api.end_batches()
    (run,) = sensor_tick(batch_project, batch_project.instance).run_requests
    assert (run.partition_key, run.run_key) == (NAMESPACE, f"collect-{batch_id}")

    second = enrichment(batch_project)
    assert (second["message_batches"], second["awaiting_batch"], second["enriched"]) == ([], 0, 6)
    assert second["llm_requests"] == 0 and not messages_api.message_requests()
    price = DEFAULT_PRICES["claude-haiku-4-5"]
    full = price.cost(
        second["llm_input_tokens"],
        second["llm_output_tokens"],
        second["llm_cache_write_tokens"],
        second["llm_cache_read_tokens"],
    )
    assert second["llm_cost_usd"] == pytest.approx(full * BATCH_PRICE_FACTOR) and full > 0
    catalog = batch_project.catalog("enriched_metric_metadata", NAMESPACE).set_index("metric_name")
    assert (catalog["enricher"] == "claude").all() and catalog["error"].isna().all()
    assert catalog.loc["checkout_build_info", "meter_type"] == "info"
    skipped = sensor_tick(batch_project, batch_project.instance).skip_reason
    assert skipped is not None and skipped.skip_message == "no namespace waits on a Message Batch"


def test_an_expired_batch_loses_nothing_and_its_metrics_are_asked_again(
    batch_project: Project, messages_api: MessagesAPIServer
) -> None:
    (expired,) = enrichment(batch_project)["message_batches"]
    messages_api.expire_batches()
    assert len(sensor_tick(batch_project, batch_project.instance).run_requests) == 1

    retried = enrichment(batch_project)
    (again,) = retried["message_batches"]
    assert again != expired and retried["awaiting_batch"] == 6 and batch_posts(messages_api) == 2
    catalog = batch_project.catalog("enriched_metric_metadata", NAMESPACE)
    assert (catalog["enricher"] == "rules").all() and len(catalog) == 6

    messages_api.end_batches()
    collected = enrichment(batch_project)
    assert (collected["message_batches"], collected["enriched"]) == ([], 6)


def test_a_batch_pending_across_a_restart_is_still_collected(
    batch_project: Project, messages_api: MessagesAPIServer, tmp_path: Path
) -> None:
    storage = tmp_path / "dagster"  # one instance's storage on disk, opened by two processes in turn
    storage.mkdir()
    (storage / "dagster.yaml").write_text("")
    with instance_for_test(temp_dir=str(storage)) as before_restart:
        batch_project.instance = before_restart
        (batch_id,) = enrichment(batch_project)["message_batches"]

    messages_api.end_batches()  # while no process is running
    with instance_for_test(temp_dir=str(storage)) as after_restart:
        batch_project.instance = after_restart
        (run,) = sensor_tick(batch_project, after_restart).run_requests
        assert run.run_key == f"collect-{batch_id}"
        collected = enrichment(batch_project)
    assert (collected["message_batches"], collected["enriched"]) == ([], 6)
