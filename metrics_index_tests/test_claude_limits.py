"""The Claude enricher on an account with limits: shared rate limits, 429 storms, answers cut at max_tokens or
refused, a rejected first request, and prompt caching that does or does not engage. Real `anthropic` client
against the local Messages API, which models the real API's limits (see metrics_index/testing/messages_api.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metrics_index.enrichment.claude import ClaudeEnricher, ClaudeOptions
from metrics_index.enrichment.claude.enricher import RunRejected
from metrics_index.enrichment.claude.limits import RateLimiter, limiter_for
from metrics_index.enrichment.claude.models import cache_minimum_tokens
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.sources import RawMetric
from metrics_index.sources.prometheus import merge_entries, read_snapshot
from metrics_index.testing.messages_api import (
    MessagesAPIServer,
    RateLimits,
    for_metric,
    invalid_request,
    rate_limited,
    refusal,
    verbose,
)

SNAPSHOT = Path(__file__).parents[1] / "metrics_index" / "data" / "demo-targets-metadata.json"


@pytest.fixture(scope="module")
def metrics() -> list[RawMetric]:
    return RawMetric.from_frame(merge_entries(read_snapshot(SNAPSHOT, "{}")))[::7][:60]


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "fake-anthropic-key-limits-test")


def claude(server: MessagesAPIServer, limiter: RateLimiter | None = None, **options: object) -> ClaudeEnricher:
    settings: dict[str, object] = {"base_url": server.url, "timeout_seconds": 10.0, "max_retries": 3, **options}
    return ClaudeEnricher(ClaudeOptions(**settings), limiter or RateLimiter())  # type: ignore[arg-type]


def test_a_429_pauses_every_worker_until_its_retry_after(metrics: list[RawMetric]) -> None:
    pause = 2.0
    with MessagesAPIServer(latency=0.3) as server:
        enricher = claude(server, batch_size=6, concurrency=4)
        # The first request of the concurrent wave (the second batch) is told to wait.
        server.script(*for_metric(metrics[6].metric_name, rate_limited(retry_after=pause)))
        outcome = enricher.enrich(metrics)

    assert outcome.failures == {} and len(outcome.enriched) == len(metrics)
    assert outcome.usage.rate_limited == 1 and enricher.limiter.stats.pauses == 1
    limited = next(r for r in server.message_requests() if r.status == 429)
    # Requests already on their way when the 429 came back may land just after it (up to half a second on a loaded
    # 2-core machine, where a worker past the limiter can wait that long for a core); nothing else is sent (by any
    # worker) until its retry-after has passed. Without the pause, four workers would send a request every 0.3 s.
    in_flight = 0.5
    during_pause = [
        r for r in server.message_requests() if limited.started + in_flight < r.started < limited.started + pause - 0.05
    ]
    assert during_pause == []
    assert any(r.started >= limited.started + pause for r in server.message_requests())


def test_the_shared_limiter_learns_the_limits_and_keeps_under_them(metrics: list[RawMetric]) -> None:
    limits = RateLimits(requests_per_minute=40, input_tokens_per_minute=200_000, output_tokens_per_minute=6_000)
    with MessagesAPIServer(limits=limits, minute_seconds=1.0) as server:
        enricher = claude(server, batch_size=10, concurrency=4)
        outcome = enricher.enrich(metrics)

    assert outcome.failures == {} and len(outcome.enriched) == len(metrics)
    assert enricher.limiter.limits() == {"requests": 40, "input-tokens": 200_000, "output-tokens": 6_000}
    # Only the first request runs before the limits are known; after that nothing exceeds them.
    assert server.rate_limited <= 1 and outcome.usage.rate_limited == server.rate_limited


def test_max_tokens_is_sized_from_the_measured_answers(metrics: list[RawMetric]) -> None:
    with MessagesAPIServer() as server:
        claude(server, batch_size=20, concurrency=2).enrich(metrics)

    first, *later = server.message_requests()
    assert all(r.body["max_tokens"] < first.body["max_tokens"] for r in later)
    per_metric_output = max(
        r.body["max_tokens"] / len(r.metric_names) for r in later
    )  # what was reserved per metric after measuring
    assert per_metric_output < 0.6 * (256 + 300)  # the old fixed size: 256 + 300 per metric


def test_one_process_shares_one_limiter_per_api_and_model_family() -> None:
    url = "http://127.0.0.1:9"
    assert limiter_for(url, "claude-haiku-4-5") is limiter_for(url + "/", "claude-haiku-4-5-20251001")
    assert limiter_for(url, "claude-haiku-4-5") is not limiter_for(url, "claude-sonnet-4-5")
    first = ClaudeEnricher(ClaudeOptions(base_url=url))
    assert first.limiter is ClaudeEnricher(ClaudeOptions(base_url=url, batch_size=3)).limiter


def test_a_cut_answer_is_asked_again_in_halves_and_every_metric_ends_enriched(
    messages_api: MessagesAPIServer, metrics: list[RawMetric]
) -> None:
    messages_api.script(verbose())  # one answer far longer than measured: cut at max_tokens
    outcome = claude(messages_api, batch_size=20, concurrency=1).enrich(metrics)

    assert outcome.failures == {} and len(outcome.enriched) == len(metrics)
    cut, *others = messages_api.message_requests()
    assert cut.stop_reason == "max_tokens" and len(cut.metric_names) == 20
    halves = [r for r in others if len(r.metric_names) < 20]
    assert len(halves) == 2 and all(r.stop_reason == "tool_use" for r in others)
    asked_again = sorted(name for r in halves for name in r.metric_names)
    assert (
        set(asked_again) < set(cut.metric_names) and abs(len(halves[0].metric_names) - len(halves[1].metric_names)) <= 1
    )


def test_a_refused_metric_is_isolated_by_halving_and_falls_back_with_the_reason(
    messages_api: MessagesAPIServer, metrics: list[RawMetric]
) -> None:
    victim = metrics[3].metric_name
    messages_api.script(*[refusal(victim)] * 6)
    frame, report = enrich_catalog(metrics[:10], claude(messages_api, batch_size=10), RulesEnricher())

    assert list(report.failures) == [victim]
    assert report.failures[victim].startswith("Claude declined to describe this metric (stop_reason=refusal")
    assert "request_id req_" in report.failures[victim]
    by_name = frame.set_index("metric_name")
    assert by_name.loc[victim, "enricher"] == "fallback"
    assert (by_name.drop(victim)["enricher"] == "claude").all()
    assert [victim] in [r.metric_names for r in messages_api.message_requests()]


@pytest.mark.parametrize(
    ("setup", "status"),
    [
        pytest.param(lambda server, options: server.script(invalid_request()), 400, id="400-invalid-request"),
        pytest.param(lambda server, options: options.update(model="claude-nope", prices=PRICE), 404, id="404-model"),
    ],
)
def test_a_rejected_first_request_stops_the_run_before_anything_is_written(
    messages_api: MessagesAPIServer, metrics: list[RawMetric], setup: object, status: int
) -> None:
    options: dict[str, object] = {"batch_size": 10}
    setup(messages_api, options)  # type: ignore[operator]
    with pytest.raises(RunRejected, match=f"HTTP {status}") as stopped:
        enrich_catalog(metrics, claude(messages_api, **options), RulesEnricher())

    assert len(messages_api.message_requests()) == 1
    assert "Nothing was written" in str(stopped.value) and "request_id req_" in str(stopped.value)


PRICE = {"claude-nope": {"input": 1, "output": 5, "cache_write": 1.25, "cache_read": 0.1}}


def test_caching_engages_above_the_minimum_and_the_first_request_writes_it_alone(
    messages_api: MessagesAPIServer, metrics: list[RawMetric]
) -> None:
    messages_api.latency = 0.2
    enricher = claude(messages_api, batch_size=10, concurrency=4)
    outcome = enricher.enrich(metrics)

    usage = outcome.usage
    assert usage.caching == "engaged" and usage.answers_without_cache == 0
    assert usage.cache_prefix_tokens >= cache_minimum_tokens("claude-haiku-4-5") * 1.2
    first, second, *_ = messages_api.message_requests()
    assert second.started >= first.started + 0.2  # the others waited for the answer that wrote the cache
    assert 0 < usage.cache_write_tokens <= usage.cache_prefix_tokens
    assert usage.cache_read_tokens == usage.cache_write_tokens * (len(messages_api.message_requests()) - 1)


def test_a_prefix_below_the_cache_minimum_is_reported_as_caching_not_engaged(metrics: list[RawMetric]) -> None:
    with MessagesAPIServer(cache_minimums={"claude-haiku-4-5": 100_000}) as server:
        outcome = claude(server, batch_size=20).enrich(metrics)

    assert outcome.failures == {}
    usage = outcome.usage
    assert (usage.cache_write_tokens, usage.cache_read_tokens) == (0, 0)
    assert usage.answers_without_cache == 3
    assert usage.caching.startswith("not engaged: 3 answers reported neither a cache write nor a cache read")
