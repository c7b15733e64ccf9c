"""Metric names as words, and the document text the semantic and lexical indexes are built from.

Prometheus names are snake_case with CamelCase parts copied from kernel or library field names
(`node_memory_MemFree_bytes`, `node_netstat_Tcp_InErrs`) and dense with abbreviations. A user asks in
words ("free memory", "tcp input errors"), so both indexes see the name split into words with the
abbreviations spelled out next to the original token (the token stays: people type `wal` and `gc` too).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

# Words that Prometheus exporters abbreviate, spelled out. General to Linux, Go, Prometheus and common
# exporters; a token maps to one or more words that are appended after it.
ABBREVIATIONS: dict[str, str] = {
    "alloc": "allocated",
    "anon": "anonymous",
    "aof": "append only file",
    "avail": "available",
    "avg": "average",
    "buf": "buffer",
    "bgsave": "background save",
    "bgrewrite": "background rewrite",
    "cnt": "count",
    "colls": "collisions",
    "config": "configuration",
    "conn": "connection",
    "conns": "connections",
    "conntrack": "connection tracking",
    "cow": "copy on write",
    "cpu": "processor",
    "cpus": "processors",
    "ctx": "context",
    "curr": "current",
    "db": "database",
    "defrag": "defragmentation",
    "dev": "device",
    "dir": "directory",
    "dns": "name resolution",
    "doh": "https",
    "dot": "tls",
    "err": "error",
    "errs": "errors",
    "estab": "established",
    "fd": "file descriptor",
    "fds": "file descriptors",
    "filefd": "file descriptors",
    "frag": "fragmentation",
    "freq": "frequency",
    "fs": "filesystem",
    "gc": "garbage collection",
    "hz": "hertz",
    "iface": "interface",
    "info": "information",
    "inodes": "file nodes",
    "intr": "interrupts",
    "io": "input output",
    "ios": "input output operations",
    "ip": "internet protocol",
    "ip6": "internet protocol ipv6",
    "kb": "kilobytes",
    "lat": "latency",
    "max": "maximum",
    "mem": "memory",
    "min": "minimum",
    "misc": "miscellaneous",
    "ms": "milliseconds",
    "msg": "message",
    "msgs": "messages",
    "mtu": "maximum transmission unit",
    "net": "network",
    "netstat": "network statistics",
    "nf": "netfilter",
    "ns": "nanoseconds",
    "num": "number",
    "oom": "out of memory",
    "op": "operation",
    "ops": "operations",
    "pct": "percent",
    "pgfault": "page faults",
    "pgmajfault": "major page faults",
    "pgpgin": "pages paged in",
    "pgpgout": "pages paged out",
    "pkts": "packets",
    "proc": "process",
    "procs": "processes",
    "pswpin": "pages swapped in",
    "pswpout": "pages swapped out",
    "rcode": "response code",
    "rcodes": "response codes",
    "rcv": "receive",
    "rcvbuf": "receive buffer",
    "rdb": "redis database snapshot",
    "recv": "received",
    "recvbuf": "receive buffer",
    "repl": "replication",
    "req": "request",
    "reqs": "requests",
    "resp": "response",
    "retrans": "retransmissions",
    "rsts": "resets",
    "rss": "resident memory",
    "rsvd": "reserved",
    "rtt": "round trip time",
    "rx": "receive",
    "sd": "service discovery",
    "sec": "seconds",
    "secs": "seconds",
    "segs": "segments",
    "servfail": "server failure",
    "shmem": "shared memory",
    "slave": "replica",
    "slaves": "replicas",
    "snd": "send",
    "sndbuf": "send buffer",
    "sockstat": "socket statistics",
    "stat": "statistics",
    "stats": "statistics",
    "surp": "surplus",
    "sys": "system",
    "systime": "system cpu time",
    "tcp": "transmission control protocol",
    "temp": "temperature",
    "thp": "transparent huge pages",
    "tls": "certificate",
    "ssl": "certificate",
    "tsdb": "time series database",
    "tw": "time wait",
    "tx": "transmit",
    "udp": "datagram",
    "usec": "microseconds",
    "usertime": "user cpu time",
    "util": "utilisation",
    "vm": "virtual machine",  # a guest, a JVM, the Erlang VM; process_virtual_memory_bytes spells its own words
    "vmalloc": "virtual memory allocation",
    "vmstat": "virtual memory statistics",
    "wal": "write ahead log",
}

_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
_IO = re.compile(r"\bI/Os?\b", re.IGNORECASE)  # "I/O" in help texts is "io" in names
# Glued quantity prefixes as in `maxmemory`, `maxclients`, `numkeys`.
_GLUED = re.compile(r"^(max|min|num)([a-z]{4,})$")
_NOT_GLUED = {"maximum", "minimum", "minute", "minutes", "number", "numbers", "minor"}


def split_name(name: str) -> list[str]:
    """The lower-case parts of a name: snake_case, CamelCase and digit runs split apart.

    `node_memory_MemFree_bytes` -> node memory mem free bytes; `TCPSynRetrans` -> tcp syn retrans.
    Words that are one token in kernel field names are kept whole when the whole part is a known
    abbreviation (`pgmajfault`, `rcvbuf`).
    """
    return [word for part in _SEPARATORS.split(name) if part for word in _split_part(part)]


@lru_cache(maxsize=65536)
def _split_part(part: str) -> tuple[str, ...]:
    if part.lower() in ABBREVIATIONS:
        return (part.lower(),)
    words: list[str] = []
    for piece in _PART.findall(part):
        piece = piece.lower()
        glued = _GLUED.match(piece)
        words.extend(glued.groups() if glued and piece not in _NOT_GLUED else (piece,))
    return tuple(words)


def metric_words(name: str) -> list[str]:
    """Name parts with abbreviations spelled out after them, each word once, in order."""
    seen: dict[str, None] = {}
    for word in split_name(name):
        seen.setdefault(word, None)
        for expanded in ABBREVIATIONS.get(word, "").split():
            seen.setdefault(expanded, None)
    return list(seen)


# Acronyms a reader knows better than their expansion: kept (upper-cased) in readable text.
KNOWN_ACRONYMS = {"cpu", "tcp", "udp", "ip", "ip6", "dns", "tls", "ssl", "io", "mtu", "http", "rss", "icmp", "tlb"}

# Kernel field names (/proc/meminfo) whose CamelCase parts are not words on their own: `SReclaimable` is slab
# memory, `SecPageTables` secondary page tables, not seconds. Only sentences use these; search keeps the parts.
FIELD_NAME_WORDS: dict[str, str] = {
    "Committed_AS": "committed address space",
    "Hugepagesize": "huge page size",
    "Hugetlb": "huge TLB pages",
    "KReclaimable": "kernel reclaimable",
    "Mlocked": "memory locked",
    "NFS_Unstable": "NFS unstable",
    "Percpu": "per CPU",
    "SReclaimable": "slab reclaimable",
    "SUnreclaim": "slab unreclaimable",
    "SecPageTables": "secondary page tables",
    "WritebackTmp": "writeback temporary",
}
# A page or block size glued to its unit letter (`DirectMap4k`, `DirectMap2M`), kept as one word.
_SIZE = re.compile(r"(?<=[a-z])([0-9]+[kKmMgG])$")
# An IP version glued to its protocol (`Icmp6`, `UDP6`).
_VERSIONED = re.compile(r"^([A-Za-z]+)(6)$")


def readable_words(name: str) -> list[str]:
    """Name parts with abbreviations replaced by what they stand for, for sentences a person reads: no letters
    left alone (`direct map 4k`, `slab reclaimable`, `UDP6`)."""
    words: list[str] = []
    for word in _readable_parts(name):
        spelled = ABBREVIATIONS.get(word, word)
        for expanded in spelled.split():
            if not words or words[-1] != expanded:
                words.append(expanded)
    return words


def _readable_parts(name: str) -> list[str]:
    parts = [part for part in _SEPARATORS.split(name) if part]
    words: list[str] = []
    index = 0
    while index < len(parts):
        pair = "_".join(parts[index : index + 2])
        if pair in FIELD_NAME_WORDS:
            words += FIELD_NAME_WORDS[pair].split()
            index += 2
            continue
        part = parts[index]
        index += 1
        versioned = _VERSIONED.match(part)
        if part in FIELD_NAME_WORDS:
            words += FIELD_NAME_WORDS[part].split()
        elif versioned and versioned.group(1).lower() in KNOWN_ACRONYMS:
            words.append(part.upper())
        else:
            size = _SIZE.search(part)
            head = part[: size.start()] if size else part
            words += [w.upper() if w in KNOWN_ACRONYMS else w for w in _split_part(head)]
            words += [size.group(1)] if size else []
    return words


STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "been", "being", "by", "can", "did", "do", "does", "for", "from",
    "has", "have", "how", "i", "in", "is", "it", "its", "many", "me", "much", "my", "of", "on", "or", "per", "show",
    "so", "than", "that", "the", "their", "there", "these", "this", "to", "was", "were", "what", "when", "where",
    "which", "who", "why", "with",
})  # fmt: skip


# Everyday words and the words metrics use for the same thing, in groups of one meaning (the English of operations,
# not any exporter's names). A question word that no metric of the namespace uses (in its name, help or enrichment),
# or only one (RARE_WORD_DOCUMENTS), is looked up here, and the words of its group that the namespace does use are
# searched for too (`synonym_words`).
RARE_WORD_DOCUMENTS = 1
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("answer", "response", "reply"),
    ("peer", "neighbor", "neighbour"),
    ("invalidate", "purge"),
    ("crash", "panic", "died"),
    ("login", "authentication", "auth"),
    ("program", "application", "process"),
    ("free", "available", "unused"),
    ("peak", "maximum", "highest"),
    ("threshold", "limit", "watermark"),
    ("latency", "duration", "delay"),
    ("scratch", "workspace"),
    ("evict", "eviction", "lru"),
    ("waiting", "pending", "queued", "outstanding"),
    ("connect", "connection"),
)


def stem(word: str) -> str:
    """A light, deterministic suffix stripper so that `received`, `receives` and `receive` meet."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed", "e"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def search_terms(text: str) -> list[str]:
    """Terms for lexical matching, from free text or metric names alike: words split and spelled out as in
    `metric_words`, stop words dropped, stemmed. Repeats are kept (term frequency counts)."""
    text = _IO.sub("io", text)
    return [term for part in _SEPARATORS.split(text) if part for term in _part_terms(part)]


def term_words(text: str) -> dict[str, str]:
    """Each search term of `text` mapped back to the word it came from, to show people matches they wrote."""
    words = (w for word in split_name(_IO.sub("io", text)) for w in (word, *ABBREVIATIONS.get(word, "").split()))
    return {stem(w): w for w in words if w not in STOPWORDS}


@lru_cache(maxsize=65536)
def _part_terms(part: str) -> tuple[str, ...]:
    return tuple(
        stem(term)
        for word in _split_part(part)
        for term in (word, *ABBREVIATIONS.get(word, "").split())
        if term not in STOPWORDS
    )


def document_text(row: Mapping[str, Any]) -> str:
    """What the indexes see for one enriched metric: name words first, then what the metric means.

    The category, signal and meter type are written as words (not ids) so that a question such as
    "request latency" or "memory saturation" finds them.
    """
    name = str(row["metric_name"])
    parts = [
        " ".join(metric_words(name)),
        _text(row.get("description")),
        _words(row.get("category")),
        _words(row.get("subcategory")),
        _text(row.get("unit")),
    ]
    signal = _text(row.get("golden_signal_type"))
    if signal and signal != "none":
        parts.append(signal)
    meter = _text(row.get("meter_type"))
    if meter and meter != "unknown":
        parts.append(meter)
    return ". ".join(p.rstrip(".") for p in parts if p)


def embedding_text(document: str, label_values: str) -> str:
    """What a metric's vector is made of: its document, then its labels' values (label_preference.label_values_text).
    The lexical rankers read the document alone: a value such as "success" or "total" is in too many metrics' labels
    to tell them apart by word, but it shifts a vector towards what the metric counts."""
    return f"{document}. {label_values}" if label_values else document


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value).strip()


def _words(value: Any) -> str:
    return _text(value).replace("_", " ")


# A glued name word is split only into pieces of at least this many letters, each a word the namespace's own help
# texts use on its own (`queuelength` -> queue length when a help text says "queue" and "length").
GLUED_PIECE = 3
_WORD = re.compile(r"[a-z]+")


def help_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """The lower-case words of a namespace's help texts (or descriptions), the vocabulary glued names split into."""
    return frozenset(w for text in texts for w in _WORD.findall(text.lower()) if len(w) >= GLUED_PIECE)


def unglue(word: str, vocabulary: frozenset[str]) -> tuple[str, ...]:
    """`word` as two or more vocabulary words glued together, fewest pieces first (() when it is not): the pieces
    a question spells apart. A word the vocabulary has whole is not split."""
    if len(word) < 2 * GLUED_PIECE or word in vocabulary or not word.isalpha():
        return ()
    best: list[tuple[str, ...] | None] = [()] + [None] * len(word)  # best[i]: fewest pieces covering word[:i]
    for end in range(GLUED_PIECE, len(word) + 1):
        for start in range(0, end - GLUED_PIECE + 1):
            head = best[start]
            if head is not None and word[start:end] in vocabulary:
                candidate = (*head, word[start:end])
                if best[end] is None or len(candidate) < len(best[end]):
                    best[end] = candidate
    pieces = best[len(word)]
    return pieces if pieces and len(pieces) > 1 else ()


@lru_cache(maxsize=32)
def _synonym_table(groups: tuple[tuple[str, ...], ...]) -> dict[str, tuple[str, ...]]:
    """Each word's term -> the other words of its groups (as written)."""
    table: dict[str, dict[str, None]] = {}
    for group in groups:
        for word in group:
            table.setdefault(stem(word), {}).update(dict.fromkeys(w for w in group if stem(w) != stem(word)))
    return {term: tuple(words) for term, words in table.items()}


def synonym_words(
    terms: Iterable[str], documents: Callable[[str], int], groups: tuple[tuple[str, ...], ...] = SYNONYM_GROUPS
) -> list[str]:
    """For each search term that at most one document of a namespace uses (`documents(term)`: how many do), the
    words of its synonym group that some document uses: "crashes" finds `panic`, "threshold" a `limit` or
    `watermark` where no metric says crash or threshold; "invalidated" a `purge` where one metric says invalidate."""
    table = _synonym_table(groups)
    rare = [t for t in dict.fromkeys(terms) if documents(t) <= RARE_WORD_DOCUMENTS]
    return list(dict.fromkeys(w for t in rare for w in table.get(t, ()) if documents(stem(w))))
