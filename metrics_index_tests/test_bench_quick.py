"""Both benches, run small exactly as the README runs them, so they cannot rot. Correctness only: never timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANKERS = {"bm25 (name+help)", "fuzzy name", "dense (help only)", "ours", "ours: bm25 only", "ours: dense only"}


def run_bench(script: str, *arguments: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments], cwd=ROOT, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_search_quality_bench_scores_every_ranker(tmp_path: Path) -> None:
    names = {"demo:node": ["node_load5", "node_cpu_seconds_total"], "demo:redis": ["redis_connected_clients"]}
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "\n".join(
            json.dumps({"namespace": ns, "query": name, "relevant": [name]})
            for ns, items in names.items()
            for name in items
        )
    )
    out = tmp_path / "figures.json"
    run_bench("search_quality.py", str(queries), "--json-out", str(out))

    figures = json.loads(out.read_text())[str(queries)]
    assert set(figures) == RANKERS
    for by_namespace in figures.values():
        assert set(by_namespace) == {"demo:node", "demo:redis", "overall"}
        for values in by_namespace.values():
            assert 0 <= values["recall@1"] <= values["recall@5"] <= values["recall@10"] <= 1
            assert values["recall@1"] <= values["mrr"] <= 1
    # Every query is a metric's exact name: exact names must rank first.
    assert figures["ours"]["overall"]["recall@1"] == 1.0


def test_scale_bench_indexes_everything_once_then_nothing(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run_bench("scale.py", "--sizes", "300", "--redis-names", "1000", "--json-out", str(out))

    answer = json.loads(out.read_text())
    (run,) = answer["runs"]
    first, second = run["first_counts"], run["second_counts"]
    assert run["second_error"] is None
    assert first["metrics"] == first["enriched"] == first["embedded"] == 300
    assert run["stored_names"] == first["names"] >= 300
    assert (second["enriched"], second["reused"], second["embedded"], second["unchanged"]) == (0, 300, 0, 300)
    assert run["search"]["results"] == 10
    assert run["search"]["top"]["node_load5"] == "node_load5"
    assert answer["redis_only"]["stored"] == 1000
