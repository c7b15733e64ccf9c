"""The processes of the concurrency drills (metrics_index.testing.concurrency_drill): the stores checker and the
search loop, run as a script (`python -P drill_worker.py check|search ...`) with whatever `metrics_index` is first
on PYTHONPATH, so the bench can drill another checkout. It imports nothing of this package at module level.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

STOP_FILE = "stop-searching"  # in the home; holds the variant ("a" or "b") the search loop may stop at
QUESTIONS = ("free disk space", "cpu time by mode", "network bytes received", "memory available", "boot time")


def check(namespaces: list[str]) -> dict:
    """Per namespace: names in Redis but not in the raw catalog (and the reverse), ids in Chroma but not in the
    enriched catalog (and the reverse), metrics raw but not enriched; plus the variant the data is from."""
    import pandas as pd

    from metrics_index.settings import metrics_home, resources_from_env
    from metrics_index.stores.name_set import all_names, promql_names

    resources = resources_from_env()
    client, index = resources["redis"].client(), resources["chroma"].index()
    catalog = metrics_home() / "catalog"
    report = {}
    for namespace in namespaces:
        tenant, service = namespace.split(":")
        raw = pd.read_parquet(catalog / "raw_metric_metadata" / tenant / f"{service}.parquet")
        enriched = pd.read_parquet(catalog / "enriched_metric_metadata" / tenant / f"{service}.parquet")
        names = all_names(client, namespace)
        documents = index.documents(namespace)
        chroma = set(documents["metric_name"])
        expected = promql_names(raw)
        report[namespace] = {
            "redis_not_raw": len(names - expected),
            "raw_not_redis": len(expected - names),
            "chroma_not_enriched": len(chroma - set(enriched["metric_name"])),
            "enriched_not_chroma": len(set(enriched["metric_name"]) - chroma),
            "raw_not_enriched": len(set(raw["metric_name"]) ^ set(enriched["metric_name"])),
            "duplicate_ids": int(documents["id"].duplicated().sum()),
            "documents": len(documents),
            "revised": int(documents["document"].str.contains("(revised)", regex=False).sum()),
        }
    return report


def search(namespace: str, searches: int, stop_file: Path) -> dict:
    """Warm up, say so on stdout, then search until `searches` are done, or until `stop_file` exists and the
    answers come from the variant it names. Counts errors, empty answers and switches between variants."""
    from metrics_index import api

    api.search_metrics(namespace, QUESTIONS[0])
    print("warm", flush=True)
    errors: dict[str, int] = {}
    done = empty = switches = 0
    variant = None
    while done < searches:
        done += 1
        try:
            results = api.search_metrics(namespace, QUESTIONS[done % len(QUESTIONS)], k=5)
        except Exception as error:
            key = f"{type(error).__name__}: {str(error)[:80]}"
            errors[key] = errors.get(key, 0) + 1
            continue
        if not results:
            empty += 1
            continue
        seen = "b" if any("(revised)" in result.description for result in results) else "a"
        switches += variant is not None and seen != variant
        variant = seen
        if stop_file.exists() and stop_file.read_text() == variant:
            break
    return {"searches": done, "errors": sum(errors.values()), "empty": empty, "switches": switches, "kinds": errors}


def _main(argv: list[str]) -> None:
    command, *rest = argv
    if command == "check":
        print(json.dumps(check(rest)))
    elif command == "search":
        started = time.perf_counter()
        result = search(rest[0], int(rest[1]), Path(STOP_FILE))
        print(json.dumps({**result, "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    _main(sys.argv[1:])
