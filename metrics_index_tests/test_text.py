"""Metric names as words, and the document text both indexes are built from."""

from __future__ import annotations

from collections import Counter

from metrics_index.text import (
    document_text,
    help_vocabulary,
    metric_words,
    readable_words,
    search_terms,
    split_name,
    synonym_words,
    unglue,
)


def test_snake_and_camel_case_parts_are_split() -> None:
    assert split_name("node_memory_MemFree_bytes") == ["node", "memory", "mem", "free", "bytes"]
    assert split_name("node_netstat_TcpExt_TCPSynRetrans") == ["node", "netstat", "tcp", "ext", "tcp", "syn", "retrans"]
    assert split_name("node_load15") == ["node", "load", "15"]
    assert split_name("redis_config_maxmemory") == ["redis", "config", "max", "memory"]


def test_abbreviations_are_spelled_out_next_to_the_token() -> None:
    assert metric_words("node_memory_MemFree_bytes") == ["node", "memory", "mem", "free", "bytes"]
    words = metric_words("prometheus_tsdb_wal_fsync_duration_seconds")
    assert words[words.index("wal") + 1 : words.index("wal") + 4] == ["write", "ahead", "log"]
    assert {"garbage", "collection"} <= set(metric_words("go_gc_duration_seconds"))
    assert {"receive", "transmit"} <= set(metric_words("container_network_rx_tx_bytes"))
    assert {"out", "of", "memory"} <= set(metric_words("node_vmstat_oom_kill"))
    # "vm" is a virtual machine (a guest, the Erlang or Java VM), not the process's virtual memory.
    assert {"virtual", "machine"} <= set(metric_words("erlang_vm_process_count"))
    # DNS's response code field (RFC 1035), in any DNS server's metrics.
    assert {"response", "codes"} <= set(metric_words("bind_response_rcodes_total"))
    # DNS over HTTPS and over TLS (RFC 8484, 7858), a process's resident memory and its user and system CPU time.
    assert "https" in metric_words("dnsdist_frontend_doh_bad_requests")
    assert "tls" in metric_words("pdns_recursor_dot_outqueries")
    assert {"resident", "memory"} <= set(metric_words("redis_memory_used_rss_bytes"))
    assert {"user", "system", "cpu"} <= set(metric_words("worker_usertime") + metric_words("worker_systime"))


def test_readable_words_replace_abbreviations() -> None:
    assert readable_words("node_filesystem_avail_bytes") == ["node", "filesystem", "available", "bytes"]
    assert readable_words("redis_cpu_sys_seconds_total") == ["redis", "CPU", "system", "seconds", "total"]


def test_readable_words_keep_kernel_field_names_whole() -> None:
    assert readable_words("node_memory_SecPageTables_bytes")[2:5] == ["secondary", "page", "tables"]
    assert readable_words("node_memory_KReclaimable_bytes")[2:4] == ["kernel", "reclaimable"]
    assert readable_words("node_memory_Committed_AS_bytes")[2:5] == ["committed", "address", "space"]
    assert readable_words("node_memory_DirectMap2M_bytes")[2:5] == ["direct", "map", "2M"]
    assert readable_words("node_netstat_Udp6_InErrors")[3:5] == ["UDP6", "in"]
    assert readable_words("node_load15") == ["node", "load", "15"]


def test_document_text_has_name_words_and_enriched_fields() -> None:
    row = {
        "metric_name": "node_filesystem_avail_bytes",
        "description": "Filesystem space available to non-root users in bytes.",
        "category": "storage",
        "subcategory": "filesystem",
        "golden_signal_type": "saturation",
        "meter_type": "gauge",
        "unit": "",
    }
    text = document_text(row)
    assert text.startswith("node filesystem avail available bytes")
    assert "non-root users" in text and "saturation" in text and "gauge" in text


def test_document_text_skips_missing_and_uninformative_values() -> None:
    text = document_text(
        {"metric_name": "x_total", "description": None, "golden_signal_type": "none", "unit": float("nan")}
    )
    assert text == "x total"


def test_search_terms_meet_across_word_forms_and_notations() -> None:
    assert search_terms("bytes received") == search_terms("byte receives")
    assert "io" in search_terms("processes waiting for I/O") and "io" in search_terms("node_disk_io_now")
    assert "the" not in search_terms("the number of open fds")
    assert {"file", "descriptor"} <= set(search_terms("open fds"))
    assert search_terms("node_memory_MemFree_bytes") == search_terms("node memory mem free bytes")


def test_glued_name_words_split_into_words_of_the_namespaces_help_texts() -> None:
    vocabulary = help_vocabulary(["Number of queries sent out.", "The queue length right now."])
    assert unglue("queuelength", vocabulary) == ("queue", "length")
    assert unglue("outqueries", vocabulary) == ("out", "queries")
    assert unglue("queries", vocabulary) == ()  # a word the help texts use whole stays whole
    assert unglue("xyzlength", vocabulary) == ()  # every piece must be a word of the help texts


def test_a_question_word_no_metric_uses_is_searched_as_its_synonyms_the_namespace_uses() -> None:
    documents = Counter(search_terms("child panic. high watermark. a limit. restart setting. crash dump. crashes"))
    assert synonym_words(search_terms("worker threshold crashes"), documents.__getitem__) == ["limit", "watermark"]
    # A word one document uses is weak: its synonyms are searched too; a word of no group adds nothing.
    invalidate = Counter(search_terms("invalidate. purge"))
    assert synonym_words(search_terms("invalidated"), invalidate.__getitem__) == ["purge"]
    assert synonym_words(search_terms("frobnication"), documents.__getitem__) == []
