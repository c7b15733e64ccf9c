"""Hybrid search over a real embedded Chroma holding two snapshot namespaces enriched by rules."""

from __future__ import annotations

import json
from collections.abc import Iterator

import bm25s
import chromadb
import numpy as np
import pandas as pd
import pytest

from metrics_index.embeddings import get_embedder
from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.enrichment.vocabulary import METRIC_KINDS
from metrics_index.kinds import KIND_RULES, metric_kind
from metrics_index.namespaces import load_registry
from metrics_index.search import (
    DEPTH,
    NamespaceCorpus,
    RankingParams,
    bm25_index,
    direction_traits,
    metric_traits,
    query_text,
    question_cues,
    rank,
    results_to_json,
    retrieval_text,
    search,
    signals,
    term_documents,
    with_glued_directions,
)
from metrics_index.sources import RawMetric
from metrics_index.sources.prometheus import fetch_raw_metadata
from metrics_index.stores.semantic_index import SemanticIndex
from metrics_index.text import help_vocabulary, search_terms

NODE = "demo:node"
REDIS = "demo:redis"


def enriched(namespace: str) -> pd.DataFrame:
    raw = fetch_raw_metadata(load_registry().sources[namespace])
    frame, _report = enrich_catalog(RawMetric.from_frame(raw), RulesEnricher(), RulesEnricher())
    return frame


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SemanticIndex]:
    client = chromadb.PersistentClient(path=str(tmp_path_factory.mktemp("chroma")))
    semantic_index = SemanticIndex(client, get_embedder(), "search-tests")
    for namespace in (NODE, REDIS):
        semantic_index.sync(namespace, enriched(namespace))
    yield semantic_index


def names(results: list) -> list[str]:
    return [r.metric_name for r in results]


def test_words_that_are_not_the_name_find_the_metric(index: SemanticIndex) -> None:
    assert "node_network_transmit_bytes_total" in names(search(index, NODE, "bytes transmitted over the network", k=5))
    assert "redis_connected_clients" in names(search(index, REDIS, "how many clients are connected", k=5))


def test_an_exact_name_ranks_first_even_inside_a_sentence(index: SemanticIndex) -> None:
    assert names(search(index, NODE, "node_load5"))[0] == "node_load5"
    assert names(search(index, NODE, "rate of node_intr_total per second"))[0] == "node_intr_total"


def test_a_name_prefix_ranks_its_metrics_first(index: SemanticIndex) -> None:
    results = names(search(index, NODE, "node_network_transmit", k=8))
    assert all(name.startswith("node_network_transmit") for name in results)


def test_search_never_leaves_the_namespace(index: SemanticIndex) -> None:
    assert not [n for n in names(search(index, REDIS, "node cpu seconds", k=20)) if n.startswith("node_")]
    assert names(search(index, NODE, "redis_connected_clients"))[0] != "redis_connected_clients"
    assert search(index, "demo:nothing-here", "cpu") == []
    assert search(index, NODE, "   ") == []


def test_explain_says_which_fields_matched(index: SemanticIndex) -> None:
    plain, explained = search(index, NODE, "node_load5")[0], search(index, NODE, "node_load5", explain=True)[0]
    assert plain.matched == []
    assert explained.matched[0] == "exact name"
    reasons = search(index, NODE, "bytes received on the network", k=3, explain=True)[0].matched
    # The question's own words are shown, not the stems matching works on.
    assert "name: bytes network received" in reasons
    assert any(reason.startswith("description: ") for reason in reasons)


def test_results_carry_type_unit_and_description(index: SemanticIndex) -> None:
    top = search(index, NODE, "node_filesystem_avail_bytes")[0]
    assert (top.type, top.unit) == ("gauge", "bytes")
    assert "available" in top.description.lower()
    assert 0 < top.score <= 1


def test_json_for_llm_callers_is_compact(index: SemanticIndex) -> None:
    results = search(index, NODE, "network errors on an interface", k=10, explain=True)
    text = results_to_json(results)
    items = json.loads(text)
    assert [item["metric"] for item in items] == names(results)
    assert {"metric", "type", "score", "description"} <= items[0].keys()
    # About 3 characters per token for JSON-heavy text: a conservative bound for 1,500 tokens.
    assert len(text) < 1500 * 3


def test_a_resync_is_seen_by_the_next_search(index: SemanticIndex) -> None:
    frame = enriched(REDIS)
    assert "redis_uptime_in_seconds" in names(search(index, REDIS, "seconds since the server started", k=5))
    renamed = frame.assign(
        metric_name=frame["metric_name"].replace("redis_uptime_in_seconds", "redis_server_age_seconds")
    )
    index.sync(REDIS, renamed)
    try:
        found = names(search(index, REDIS, "seconds since the server started", k=5))
        assert "redis_server_age_seconds" in found and "redis_uptime_in_seconds" not in found
    finally:
        index.sync(REDIS, frame)


def corpus(names_: list[str], documents: list[str], vectors: np.ndarray) -> NamespaceCorpus:
    rows = [
        {"metric_name": n, "type": "gauge", "unit": "", "description": d}
        for n, d in zip(names_, documents, strict=True)
    ]
    return NamespaceCorpus.build(names_, documents, rows, vectors)


def test_fusion_prefers_a_metric_both_rankers_like_to_one_only_a_single_ranker_likes() -> None:
    # Lexical: a (all three words) before c (two words); b shares no word. Dense: b before c; a is orthogonal.
    vectors = np.array([[0.0, 1.0], [1.0, 0.0], [0.8, 0.6]], dtype=np.float32)
    docs = ["disk read bytes", "something else", "disk read"]
    built = corpus(["a_metric", "b_metric", "c_metric"], docs, vectors)
    equal = RankingParams(weights=(("name", 0.0), ("text", 1.0), ("dense", 1.0)), fusion="rrf")
    found = rank(built, "disk read bytes", np.array([1.0, 0.0]), params=equal)
    assert names(found)[0] == "c_metric"
    assert set(names(found)) == {"a_metric", "b_metric", "c_metric"}


def test_ranking_is_deterministic_on_ties() -> None:
    vectors = np.ones((3, 2), dtype=np.float32)
    built = corpus(["m_b", "m_a", "m_c"], ["same words"] * 3, vectors)
    first = names(rank(built, "same words", np.array([1.0, 1.0])))
    assert first == names(rank(built, "same words", np.array([1.0, 1.0]))) == ["m_a", "m_b", "m_c"]


def test_each_ranker_reads_its_best_documents_by_score_then_name_and_results_carry_their_cosine() -> None:
    # More documents than DEPTH, every one scored by every ranker: pairs of equal dense scores, and BM25 scores
    # of three levels (so ties inside each ranker's list), none at the list's last place.
    count = DEPTH + 40
    angles = np.repeat(np.linspace(0.0, 1.4, count // 2), 2)
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    docs = [["disk read bytes", "disk read", "disk"][i % 3] for i in range(count)]
    built = corpus([f"m_{i:03d}" for i in range(count)], docs, vectors)
    query = np.array([2.0, 0.0])  # not unit length: the cosine is still in [-1, 1]

    found = signals(built, "disk read bytes", query)
    dense = vectors[:, 0] * 2.0
    assert found.order["dense"] == sorted(range(count), key=lambda i: (-dense[i], i))[:DEPTH]
    lexical = built.text_index.get_scores(search_terms("disk read bytes"))
    assert len(set(lexical.tolist())) == 3 and min(lexical) > 0
    assert found.order["text"] == sorted(range(count), key=lambda i: (-lexical[i], i))[:DEPTH]
    for result in rank(built, "disk read bytes", query, k=20):
        assert result.similarity == round(float(vectors[built.position[result.metric_name], 0]), 4)


def test_a_question_word_the_namespace_never_uses_is_searched_as_its_synonyms() -> None:
    # No metric says "crash": its synonym "panic" finds the child's panics; equal otherwise (name order decides).
    built = corpus(["a_child_exits", "b_child_panics"], ["child exits", "child panics"], np.ones((2, 2)))
    assert names(rank(built, "child crashes", np.ones(2)))[0] == "b_child_panics"
    assert signals(built, "child crashes", np.ones(2), synonyms=()).order["text"][0] == built.position["a_child_exits"]
    # The question's embedding is made of the same words (the rate phrase dropped, the synonyms added), and an
    # explanation names the synonym that matched.
    assert query_text(built, "child crashes per second") == "child crashes panic"
    assert "name: child panic" in rank(built, "child crashes", np.ones(2), explain=True)[0].matched
    counts = {term: term_documents(built.text_index, term) for term in ("child", "panic", "crash", "")}
    assert counts == {"child": 2, "panic": 1, "crash": 0, "": 0}


def test_score_fusion_keeps_the_margin_a_ranker_is_sure_of() -> None:
    # Dense: z far ahead of b; lexical: b (three words) a little ahead of z (two). Both rankers put the two
    # first and second, so RRF ties them (name order: b first); score fusion sees the margins.
    vectors = np.array([[1.0, 0.0], [0.1, 0.995], [0.0, 1.0]], dtype=np.float32)
    built = corpus(["z_metric", "b_metric", "c_metric"], ["disk read", "disk read bytes", "disk"], vectors)
    weights = (("name", 0.0), ("text", 1.0), ("dense", 1.0))
    question, vector = "disk read bytes", np.array([1.0, 0.0])
    by_rank = RankingParams(weights=weights, fusion="rrf")
    assert names(rank(built, question, vector, params=by_rank))[0] == "b_metric"
    by_score = RankingParams(weights=weights, fusion="score")
    assert names(rank(built, question, vector, params=by_score))[0] == "z_metric"


def test_question_wording_says_what_kind_of_metric_is_wanted() -> None:
    assert "counter" in question_cues("requests handled per second")
    assert "duration" in question_cues("how long do queries take")
    assert "duration" in question_cues("time the workers spend in garbage collection")
    assert "duration" in question_cues("cpu time spent running each kind of task")
    assert "start" in question_cues("how long since the machine was last rebooted")
    assert "configuration" not in question_cues("how long does setting up a tunnel take")  # a verb, not a setting
    assert "availability" in question_cues("is the DHCP server still answering clients")
    assert "failure" in question_cues("which automation breaks most often")
    assert "availability" not in question_cues("is the CMOS battery running low")
    assert "availability" in question_cues("could the exporter read the cluster status")
    assert "availability" not in question_cues("nameservers we could not reach")  # a count of failures
    assert "self_monitoring" in question_cues("how long does collecting the cluster state take")
    assert "availability" in question_cues("is the database up")
    assert "start" in question_cues("when was it last restarted")
    assert "start" in question_cues("when did the daemon start")
    assert question_cues("average speed since the daemon started") == {"counter"}  # a running total, not a start
    assert "start" in question_cues("seconds since the server started")  # elapsed time: an uptime
    assert "configuration" in question_cues("the configured memory limit")
    assert question_cues("memory used by keys") == frozenset()
    # "Right now" asks for a gauge's value, even where the other words sound like a rate.
    assert question_cues("how many requests is it handling right now") == {"current"}
    assert question_cues("how many consumers are attached") == {"current"}
    assert question_cues("how many copies of a program are running") == {"current"}
    assert question_cues("how many queries per second are answered") == {"counter"}  # a rate phrase wins
    assert question_cues("how many requests does it process") == {"counter"}
    assert question_cues("how many processes does the manager run") == frozenset()  # processes counted, not a rate
    # How often something happens is a count of events: a counter, also where "is" follows ("each field is resolved").
    assert question_cues("how often are calls retried") == {"counter"}
    assert question_cues("how many times each field is resolved") == {"counter"}
    assert question_cues("can the exporter reach the server") == {"availability", "flag"}  # the service's, not ours
    assert "self_monitoring" in question_cues("scrape errors of each collector")
    assert "self_monitoring" not in question_cues("longest event loop stall since the last scrape")  # a window
    assert "self_monitoring" in question_cues("targets in each scrape job")
    # The rate is a cue, not words to match: "per second" would find metrics measured in seconds.
    assert retrieval_text("queries per second on the database") == "queries on the database"
    assert retrieval_text("per second") == "per second"


def test_availability_start_and_ratio_questions_are_told_apart() -> None:
    assert "availability" in question_cues("is the bind dns server up")
    assert "availability" in question_cues("has the load balancer marked an upstream resolver as down")
    assert "availability" in question_cues("can the exporter talk to the hypervisor")
    assert "availability" not in question_cues("is the broker running out of file descriptors")
    assert "availability" in question_cues("which apps under the process manager are stopped or errored")
    assert "availability" not in question_cues("how many copies of a program are running")  # a count
    assert question_cues("which version is running") == {"info"}
    assert "runtime" not in question_cues("is the mail daemon process alive")  # the service's process, not ours
    # "How fast does it answer" is a latency; "how fast" alone stays a rate.
    assert question_cues("how fast does each backend answer") == {"duration"}
    assert question_cues("how fast is the queue growing") == {"counter"}
    # A ratio of events is a pair of counters; a share of a capacity in use is a pair of gauges.
    assert question_cues("cache hit ratio") == {"counter"}
    assert question_cues("share of answers that are errors") == {"counter"}
    assert "counter" not in question_cues("percentage of worker slots in use")
    # A share of a whole ("how full", "in percent") may be exported as one percentage or ratio gauge.
    assert "proportion" in question_cues("how full is the resolver cache")
    assert "proportion" in question_cues("CPU usage per core in percent")
    assert "proportion" not in question_cues("cache hit ratio")  # a pair of counters
    # "Since boot" asks for a running total; "running since when" for a start time.
    assert question_cues("forks since boot") == {"counter"}
    assert question_cues("running since when") == {"start"}
    # "When" asks for a start time or an uptime; "how often" for a count of starts too.
    assert "start_count" not in question_cues("when was the daemon last restarted")
    assert "start_count" not in question_cues("how long has each app been running since it last started")
    assert {"start", "start_count"} <= question_cues("how often has the daemon restarted")


def test_a_direction_asked_is_a_cue_and_names_carry_theirs() -> None:
    assert "inbound" in question_cues("dns queries per second received by bind")
    assert "outbound" in question_cues("bandwidth sent to clients")
    assert "inbound" in question_cues("upload volume from clients")  # the service's view: uploads come in
    assert {"write"} <= question_cues("objects written to the disk cache")
    assert not question_cues("network traffic in and out of the database") & {"inbound", "outbound"}  # both
    assert not question_cues("errors in the cache") & {"inbound", "outbound"}  # a bare "in" is no direction
    assert direction_traits("squid_client_http_kbytes_out_kbytes_total") == {"outbound"}
    assert direction_traits("libvirt_domain_interface_stats_receive_bytes_total") == {"inbound"}
    assert direction_traits("x_block_stats_read_bytes_total") == {"read"}
    assert direction_traits("pdns_recursor_all_outqueries") == set()
    assert direction_traits("pdns_recursor_all_outqueries", help_vocabulary(["queries sent out"])) == {"outbound"}


def test_bandwidth_and_traffic_ask_for_amounts_of_data() -> None:
    assert "bytes" in question_cues("network bandwidth of each vm")
    assert "bytes" in question_cues("network traffic in and out of the database")
    assert "bytes" not in question_cues("traffic of the checkout service")  # the golden signal: requests
    assert "bytes" in question_cues("disk read throughput per vm")  # throughput of a disk or a link: bytes
    assert "bytes" not in question_cues("request throughput of the proxy")  # throughput of requests: a rate of them
    assert "bytes" in metric_traits("x_interface_receive_bytes_total", {"meter_type": "counter"})
    assert "bytes" in metric_traits("squid_client_http_kbytes_out_kbytes_total", {"meter_type": "counter"})
    assert "bytes" in metric_traits("x_if_in_octets", {"meter_type": "counter"})
    assert "bytes" in metric_traits("x_transferred", {"meter_type": "counter", "unit": "bytes"})
    assert "bytes" not in metric_traits("x_interface_receive_packets_total", {"meter_type": "counter"})
    # Packets and bytes say the same to every ranker here but for the name: "bandwidth" counts bytes.
    vectors = np.ones((2, 2), dtype=np.float32)
    built = corpus(["a_receive_packets_total", "b_receive_bytes_total"], ["received on the interface"] * 2, vectors)
    params = RankingParams(weights=(("name", 0.0), ("text", 1.0), ("dense", 1.0)), cue_boost=0.5)
    assert names(rank(built, "received on the interface", np.ones(2), params=params))[0] == "a_receive_packets_total"
    assert names(rank(built, "bandwidth received", np.ones(2), params=params))[0] == "b_receive_bytes_total"


def test_failure_words_ask_for_metrics_that_count_failures() -> None:
    assert "failure" in question_cues("queries dropped because the resolver is overloaded")
    assert "failure" in question_cues("upstream queries timing out")
    assert "failure" in question_cues("clients refused by the access list")
    assert "failure" not in question_cues("share of answers that are errors")  # the errors and the total
    assert "failure" not in question_cues("queries per second")
    assert "failure" in metric_traits("pdns_recursor_over_capacity_drops", {"meter_type": "counter"})
    assert "failure" in metric_traits("node_network_receive_errs_total", {"meter_type": "counter"})
    assert "failure" in metric_traits("x_outgoing_timeouts", {"meter_type": "counter"})
    assert "failure" not in metric_traits("pdns_recursor_noerror_answers", {"meter_type": "counter"})  # a success
    assert "failure" not in metric_traits("x_queries_total", {"meter_type": "counter"})
    # The failure cue has a boost of its own: the other cues' does not move it.
    built = corpus(["a_bug_reached_total", "b_requests_dropped_total"], ["internal faults"] * 2, np.ones((2, 2)))
    weights = (("name", 0.0), ("text", 1.0), ("dense", 1.0))
    for failure_boost, first in ((0.0, "a_bug_reached_total"), (0.35, "b_requests_dropped_total")):
        params = RankingParams(weights=weights, cue_boost=0.7, failure_boost=failure_boost)
        assert names(rank(built, "internal faults that failed", np.ones(2), params=params))[0] == first


def test_a_direction_cue_prefers_the_metric_of_the_asked_direction() -> None:
    # Both documents say the same to every ranker but for the direction word in their names.
    vectors = np.ones((2, 2), dtype=np.float32)
    docs = ["bytes transferred to clients", "bytes transferred to clients"]
    built = corpus(["x_bytes_in_total", "x_bytes_out_total"], docs, vectors)
    params = RankingParams(weights=(("name", 0.0), ("text", 1.0), ("dense", 1.0)), cue_boost=0.5)
    assert names(rank(built, "bytes transferred to clients", np.ones(2), params=params))[0] == "x_bytes_in_total"
    assert names(rank(built, "bytes sent to clients", np.ones(2), params=params))[0] == "x_bytes_out_total"


def test_metric_traits_come_from_meter_unit_and_name() -> None:
    assert {kind for kind, _source, _pattern in KIND_RULES} < METRIC_KINDS.keys()
    assert {"counter", "activity"} <= metric_traits("x_requests_total", {"meter_type": "counter"})
    assert "duration" in metric_traits("x_request_duration_seconds", {"meter_type": "histogram"})
    assert "duration" not in metric_traits("x_last_seen_timestamp_seconds", {"meter_type": "gauge"})
    assert "current" in metric_traits("x_requests_in_flight", {"meter_type": "gauge"})
    assert "current" not in metric_traits("x_requests_total", {"meter_type": "counter"})
    assert "availability" in metric_traits("x_up", {"meter_type": "gauge"})
    assert "availability" in metric_traits("x_domain_state_code", {"meter_type": "gauge"})
    assert "availability" not in metric_traits("x_global_status_uptime", {"meter_type": "gauge"})  # a status table
    assert "start" in metric_traits("x_global_status_uptime", {"meter_type": "gauge"})
    # A state after a plural noun counts things: threads running, messages ready, nodes up.
    assert "availability" not in metric_traits("x_global_status_threads_running", {"meter_type": "unknown"})
    assert "availability" not in metric_traits("x_queue_messages_ready", {"meter_type": "gauge"})
    assert "availability" in metric_traits("x_process_running", {"meter_type": "gauge"})
    assert "availability" in metric_traits("x_status_running", {"meter_type": "gauge"})
    # A counter of starts says how often it restarted, not when; an uptime counter still says since when.
    assert "start_count" in metric_traits("x_restart_count", {"meter_type": "counter"})
    assert "start" not in metric_traits("x_restart_count", {"meter_type": "counter"})
    assert "start" in metric_traits("x_uptime_seconds_total", {"meter_type": "counter"})
    assert "start_count" in metric_traits("x_restarts", {"meter_type": "gauge"})  # a count, whatever its type
    assert "start" not in metric_traits(
        "x_force_start_after_recovery", {"meter_type": "gauge", "metric_kind": "configuration"}
    )
    assert "configuration" in metric_traits("x_config_maxmemory", {"meter_type": "gauge"})
    assert "configuration" in metric_traits("x_limit", {"meter_type": "gauge", "metric_kind": "configuration"})
    # A percentage or ratio gauge, by its name, unit or help text; a counter is no share of a whole.
    assert "proportion" in metric_traits("x_cache_usage_percent", {"meter_type": "gauge"})
    assert "proportion" in metric_traits("x_fan_speed", {"meter_type": "gauge", "unit": "ratio"})
    assert "proportion" in metric_traits(
        "x_battery_charge", {"meter_type": "gauge", "description": "Charge percentage"}
    )
    assert "proportion" not in metric_traits("x_cpu_percent_total", {"meter_type": "counter"})


def test_the_type_says_counter_or_gauge_and_an_untyped_metric_may_be_either() -> None:
    assert "counter" not in metric_traits("x_ram_cache_used_bytes_total", {"meter_type": "gauge"})  # a total size
    assert "current" in metric_traits("x_ram_cache_used_bytes_total", {"meter_type": "gauge"})
    assert {"counter", "current"} <= metric_traits("x_global_status_queries", {"meter_type": "unknown"})
    assert "current" not in metric_traits("x_queries_total", {"meter_type": "unknown"})
    assert "counter" in metric_traits("x_queries_total", {"meter_type": "unknown"})


def test_build_information_names_itself_last() -> None:
    assert metric_kind("x_exporter_build_info", "gauge") == "info"
    assert metric_kind("dnsdist_info", "gauge") == "info"
    assert metric_kind("varnish_version", "gauge") == "info"
    assert metric_kind("containerd_build_info_total", "counter") == "info"  # an info metric exported as a counter
    assert metric_kind("x_requests_total", "counter") == "activity"
    assert metric_kind("mysql_info_schema_processlist_threads", "gauge") == "activity"  # information_schema
    assert metric_kind("libvirt_domain_info_maximum_memory_bytes", "gauge") == "activity"
    assert metric_kind("x_doh_http_version_queries", "counter") == "activity"  # queries counted by HTTP version


def test_the_unit_is_read_as_enrichment_stored_it_never_inferred_at_query_time() -> None:
    assert "duration" in metric_traits("app_queue_wait", {"meter_type": "gauge", "unit": "milliseconds"})
    assert "duration" not in metric_traits("app_wait_seconds", {"meter_type": "gauge", "unit": ""})
    rows = [
        {"metric_name": "app_queue_wait", "type": "gauge", "unit": "milliseconds", "description": "queue wait"},
        {"metric_name": "app_wait_seconds", "type": "gauge", "unit": "", "description": "queue wait"},
    ]
    built = NamespaceCorpus.build([r["metric_name"] for r in rows], ["queue wait"] * 2, rows, np.ones((2, 2)))
    found = {r.metric_name: r.unit for r in rank(built, "queue wait", np.ones(2))}
    assert found == {"app_queue_wait": "milliseconds", "app_wait_seconds": ""}


def test_a_client_librarys_creation_timestamps_yield_to_their_family() -> None:
    # Python's client serves x_created beside x_total with the same help: same words and vectors here too.
    rows = [
        {"metric_name": "app_db_errors_created", "type": "gauge"},
        {"metric_name": "app_db_errors_total", "type": "counter"},
        {"metric_name": "app_threads_created", "type": "counter"},  # a count of creations
        {"metric_name": "app_threads", "type": "gauge"},
        {"metric_name": "app_query_seconds_created", "type": "gauge"},
        {"metric_name": "app_query_seconds", "type": "histogram"},
    ]
    built = NamespaceCorpus.build([r["metric_name"] for r in rows], ["database errors"] * 6, rows, np.ones((6, 2)))
    own = built.traits["exporter_runtime"]
    assert [built.names[i] for i in np.flatnonzero(own)] == ["app_db_errors_created", "app_query_seconds_created"]
    assert names(rank(built, "database errors", np.ones(2)))[:2] == ["app_db_errors_total", "app_query_seconds"]


def test_an_exporters_own_runtime_metrics_yield_unless_asked_for() -> None:
    # Same words and vectors: without weighting, name order puts process_ first.
    names_ = ["process_resident_memory_bytes", "x_cache_memory_bytes"]
    docs = ["memory bytes", "memory bytes"]
    rows = [{"meter_type": "gauge", "description": d} for d in docs]
    exporter = NamespaceCorpus.build(
        [*names_, "x_up"], [*docs, "up"], [*rows, {"meter_type": "gauge"}], np.ones((3, 2))
    )
    native = NamespaceCorpus.build(names_, docs, rows, np.ones((2, 2)))
    assert names(rank(exporter, "memory used", np.ones(2)))[0] == "x_cache_memory_bytes"
    assert names(rank(native, "memory used", np.ones(2)))[0] == "process_resident_memory_bytes"  # the service's own
    assert (
        names(rank(exporter, "memory used by the exporter process", np.ones(2)))[0] == "process_resident_memory_bytes"
    )
    # A process or a restart the question names is the service's: the exporter's own start time still yields.
    assert "runtime" not in question_cues("when was the database process last restarted")
    starts = NamespaceCorpus.build(
        ["process_start_time_seconds", "x_oldest_start_time_seconds", "x_up"],
        ["start time seconds", "start time seconds", "up"],
        [{"meter_type": "gauge"}] * 3,
        np.ones((3, 2)),
    )
    assert names(rank(starts, "when was the database process last restarted", np.ones(2)))[0] == (
        "x_oldest_start_time_seconds"
    )
    counted = NamespaceCorpus.build(
        ["x_background_process_start_count_total", "x_start_time_seconds"],
        ["background process start count", "start time seconds"],
        [{"meter_type": "counter"}, {"meter_type": "gauge"}],
        np.ones((2, 2)),
    )
    # As close in meaning, and the counter first in name order: "when" asks for the start time, "how often" counts.
    assert names(rank(counted, "when was the server last restarted", np.ones(2)))[0] == "x_start_time_seconds"
    assert names(rank(counted, "how often do background processes start", np.ones(2)))[0] == (
        "x_background_process_start_count_total"
    )
    unweighted = RankingParams(runtime_penalty=0.0)
    assert names(rank(exporter, "memory used", np.ones(2), params=unweighted))[0] == "process_resident_memory_bytes"


def test_the_monitorings_own_metrics_yield_in_any_namespace_unless_asked_for() -> None:
    # A native server (no `x_up`): its scrape duration still describes the scrape, not the work.
    names_ = ["a_scrape_duration_seconds", "b_transaction_time_seconds"]
    docs = ["duration seconds", "duration seconds"]
    rows = [{"meter_type": "histogram", "description": d} for d in docs]
    native = NamespaceCorpus.build(names_, docs, rows, np.ones((2, 2)))
    assert names(rank(native, "average latency per request", np.ones(2)))[0] == "b_transaction_time_seconds"
    assert names(rank(native, "how long do scrapes take", np.ones(2)))[0] == "a_scrape_duration_seconds"


def test_a_percentile_asks_for_a_distribution() -> None:
    assert "distribution" in question_cues("p99 latency of answers to clients")
    assert "distribution" in question_cues("95th percentile time to serve a cache miss")
    assert "distribution" not in question_cues("average latency per request")
    assert "distribution" in metric_traits("x_latency", {"meter_type": "histogram"})
    assert "distribution" in metric_traits(
        "x_all_50", {"meter_type": "gauge", "description": "Service time percentiles"}
    )
    assert "distribution" not in metric_traits("x_server_latency", {"meter_type": "gauge"})


def test_a_question_asking_for_bytes_asks_for_an_amount_of_data() -> None:
    assert "bytes" in question_cues("bytes sent to clients")
    assert "bytes" in metric_traits("varnish_main_s_resp_bodybytes", {"meter_type": "counter"})  # glued to its unit
    assert "bytes" not in metric_traits("x_responses_total", {"meter_type": "counter"})


def test_what_a_filter_counts_it_kept_out() -> None:
    assert "failure" in metric_traits("bird_protocol_prefix_filter_count", {"meter_type": "gauge"})
    assert "failure" not in metric_traits("bird_protocol_prefix_import_count", {"meter_type": "gauge"})


def test_a_glued_abbreviation_gives_its_direction() -> None:
    # `recvbuf` is recv + buf, both in the abbreviation table, though the help text spells neither.
    names_ = ["x_udp_recvbuf_errors", "x_udp_sndbuf_errors"]
    rows = [{"description": "From /proc/net/snmp RcvbufErrors"}, {"description": "From /proc/net/snmp SndbufErrors"}]
    found = with_glued_directions(names_, rows, [frozenset(), frozenset()])
    assert "inbound" in found[0]
    assert "inbound" not in found[1]
    # An abbreviation the table spells whole gives its expansion's direction without any vocabulary.
    assert direction_traits("x_udp_recvbuf_errors") == {"inbound"}
    assert direction_traits("x_udp_sndbuf_errors") == {"outbound"}


def test_the_size_of_a_response_goes_out_and_of_a_request_comes_in() -> None:
    assert "outbound" in metric_traits("caddy_http_response_size_bytes", {"meter_type": "histogram"})
    assert "inbound" in metric_traits("x_request_size_bytes_total", {"meter_type": "counter"})
    assert "inbound" not in metric_traits("x_requests_total", {"meter_type": "counter"})  # a count, not a size
    assert "outbound" in question_cues("bandwidth served to clients")
    assert "outbound" not in question_cues("requests per second served by apache")


def test_a_resource_allocated_to_something_asks_for_its_configured_maximum() -> None:
    assert "configuration" in question_cues("memory allocated to each vm")
    assert "configuration" in question_cues("cpus assigned to the guest")
    assert "configuration" not in question_cues("bytes allocated by the heap per second")


def test_a_time_setting_is_configuration_and_a_time_in_seconds_is_not() -> None:
    assert metric_kind("mysql_global_variables_long_query_time", "gauge") == "configuration"
    assert metric_kind("bind_config_time_seconds", "gauge") == "activity"  # when the configuration was loaded


def test_a_yes_or_no_question_asks_for_a_flag() -> None:
    assert "flag" in question_cues("is the broker blocking publishers because memory is too high")
    assert "flag" in question_cues("has the origin been marked sick")
    assert "flag" not in question_cues("memory used by the broker")
    alarm = {"meter_type": "unknown", "description": "Is 1 if the memory alarm is in effect."}
    assert "flag" in metric_traits("x_alarms_memory_used_watermark", alarm)
    assert "flag" in metric_traits("x_up", {"meter_type": "gauge"})
    assert "flag" in metric_traits("x_server_status", {"meter_type": "gauge", "description": "Whether it is up."})
    assert "flag" not in metric_traits("x_checks_total", {"meter_type": "counter", "description": "1 if checked"})
    # Same words and vectors: name order puts the memory in use first, unless the question is a yes or a no.
    docs = ["memory watermark", "memory watermark"]
    rows = [{"meter_type": "gauge", "description": "Memory in use."}, alarm]
    built = NamespaceCorpus.build(["a_memory_used", "b_memory_alarm"], docs, rows, np.ones((2, 2)))
    assert names(rank(built, "memory watermark", np.ones(2)))[0] == "a_memory_used"
    assert names(rank(built, "is the memory watermark reached", np.ones(2)))[0] == "b_memory_alarm"


def test_a_configuration_value_yields_unless_the_question_asks_for_a_limit() -> None:
    # Same words and vectors; only the kind differs. Without kind weighting the name order decides.
    vectors = np.ones((2, 2), dtype=np.float32)
    docs = ["connections", "connections"]
    built = NamespaceCorpus.build(
        ["a_connections_limit", "b_connections"],
        docs,
        [{"meter_type": "gauge", "description": d} for d in docs],
        vectors,
    )
    weighted = RankingParams(cue_boost=0.2, kind_penalty=0.2)
    unweighted = RankingParams(kind_penalty=0.0)
    assert names(rank(built, "connections", np.ones(2), params=unweighted))[0] == "a_connections_limit"
    assert names(rank(built, "connections", np.ones(2)))[0] == "b_connections"  # the default yields
    assert names(rank(built, "connections", np.ones(2), params=weighted))[0] == "b_connections"
    assert names(rank(built, "connections limit", np.ones(2), params=weighted))[0] == "a_connections_limit"


def test_the_bm25_index_scores_as_bm25s_indexes() -> None:
    """search.bm25_index builds bm25s's score matrix with whole-array operations: the scores must be bm25s's own, for
    repeated terms, an empty document, and terms the corpus does not have."""
    documents = ["disk free byte", "disk disk read byte total", "", "network receiv byte total", "cpu second total"]
    reference = bm25s.BM25()
    reference.index([doc.split() or [""] for doc in documents], show_progress=False)
    built = bm25_index(documents)
    for terms in (["disk"], ["byte", "total"], ["disk", "disk", "cpu"], ["nowhere"], ["network", "nowhere"]):
        assert built.get_scores(terms).tolist() == reference.get_scores(terms).tolist(), terms


def test_a_small_namespace_answers_k_even_where_a_listed_metric_scales_to_zero() -> None:
    # Three metrics, none sharing a word with the question: min-max scaling gives the dense list's last one 0, and it
    # is still listed, so asking for three answers three; a metric no ranker lists (a negative cosine) is not.
    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [-1.0, 0.0]], dtype=np.float32)
    docs = ["alpha", "beta", "gamma", "delta"]
    rows = [{"meter_type": "gauge", "description": d} for d in docs]
    built = NamespaceCorpus.build(["a_alpha", "b_beta", "c_gamma", "d_delta"], docs, rows, vectors)
    found = rank(built, "how busy is it", np.array([1.0, 0.0]), k=4)
    assert names(found) == ["a_alpha", "b_beta", "c_gamma"]
    assert found[-1].score == 0.0
