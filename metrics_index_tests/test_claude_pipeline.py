"""The Claude enricher inside the Dagster pipeline: real anthropic client, the local Messages API, real
Redis and Chroma. What the materialization reports, what falls back, and that an unchanged rerun is free."""

from __future__ import annotations

import pytest

from metrics_index.api import materialization_metadata
from metrics_index.testing.messages_api import MessagesAPIServer, replace_fields
from metrics_index_tests.project import Project, step_failures, target_entry

NAMESPACE = "shop:checkout"
SECRET = "fake-anthropic-key-0123456789abcdef"
METRICS = [
    target_entry("http_server_request_duration_seconds", "histogram", "Duration of HTTP requests.", job="checkout"),
    target_entry("http_server_requests_total", "counter", "HTTP requests served.", job="checkout"),
    target_entry("checkout_payment_failures_total", "counter", "Payments that failed.", job="checkout"),
    target_entry("checkout_cart_items", "gauge", "Items in open carts.", job="checkout"),
]


@pytest.fixture
def claude_project(project: Project, messages_api: MessagesAPIServer, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    project.extra_env.update(
        {
            "METRICS_INDEX_ENRICHER": "claude",
            "ANTHROPIC_BASE_URL": messages_api.url,
            "METRICS_INDEX_LLM_BATCH_SIZE": "2",
        }
    )
    project.register(NAMESPACE, snapshot=project.write_snapshot("checkout.json", METRICS), selector='{job="checkout"}')
    return project


def test_claude_enrichment_is_accounted_validated_and_reused(
    claude_project: Project, messages_api: MessagesAPIServer
) -> None:
    messages_api.script(replace_fields("checkout_cart_items", category="shopping"))
    messages_api.script(replace_fields("checkout_cart_items", category="shopping"))

    first = claude_project.materialize(NAMESPACE)
    assert first.success, step_failures(first)
    enriched = materialization_metadata(first)["enriched_metric_metadata"]
    assert enriched["enricher"] == "claude"
    assert (enriched["metrics"], enriched["enriched"], enriched["failed"]) == (4, 3, 1)
    assert enriched["llm_requests"] == len(messages_api.message_requests()) >= 2
    assert enriched["llm_input_tokens"] > 0 and enriched["llm_output_tokens"] > 0
    assert enriched["llm_cost_usd"] > 0
    assert "checkout_cart_items" in enriched["failures"]
    assert "shopping" in enriched["failures"]["checkout_cart_items"]

    catalog = claude_project.catalog("enriched_metric_metadata", NAMESPACE).set_index("metric_name")
    assert catalog.loc["checkout_cart_items", "enricher"] == "fallback"
    assert catalog.loc["http_server_requests_total", "enricher"] == "claude"
    index = claude_project.index()
    assert index.count(NAMESPACE) == 4, "a failed metric is still indexed"

    # Nothing changed: only the earlier fallback is asked again, and now it succeeds.
    asked_before = len(messages_api.message_requests())
    second = claude_project.materialize(NAMESPACE)
    assert second.success, step_failures(second)
    again = materialization_metadata(second)["enriched_metric_metadata"]
    assert (again["reused"], again["enriched"], again["failed"]) == (3, 1, 0)
    assert [r.metric_names for r in messages_api.message_requests()[asked_before:]] == [["checkout_cart_items"]]

    # And a third run over an unchanged namespace makes no call at all.
    asked_before = len(messages_api.message_requests())
    third = claude_project.materialize(NAMESPACE)
    assert materialization_metadata(third)["enriched_metric_metadata"]["llm_requests"] == 0
    assert len(messages_api.message_requests()) == asked_before


def test_the_api_key_reaches_neither_metadata_nor_logs(claude_project: Project) -> None:
    result = claude_project.materialize(NAMESPACE)
    assert result.success, step_failures(result)
    assert SECRET not in repr(materialization_metadata(result))
    records = claude_project.instance.all_logs(result.run_id)
    assert records and all(SECRET not in (record.message or "") for record in records)
