"""Both benches, run small exactly as the README runs them, so they cannot rot. Correctness only: never timings."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from metrics_index.enrichment.incremental import enrich_catalog
from metrics_index.enrichment.rules import RulesEnricher
from metrics_index.enrichment.vocabulary import EnrichedFields
from metrics_index.namespaces import Namespace, NamespaceSource
from metrics_index.sources import RawMetric
from metrics_index.sources.prometheus import fetch_raw_metadata

ROOT = Path(__file__).resolve().parents[1]
RANKERS = {
    "bm25 (name+help)",
    "dense (name+help)",
    "fuzzy name",
    "ours: before (fixed RRF)",
    "ours: fusion weights",
    "ours: + question cues",
    "ours: without the kind penalty",
    "ours",
}
SNAPSHOT = ROOT / "metrics_index" / "data" / "demo-targets-metadata.json"
SERIES = ROOT / "metrics_index" / "data" / "demo-series.json.gz"
SERVICES = ("alertmanager", "pushgateway", "blackbox")


def run_bench(script: str, *arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments], cwd=ROOT, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def small_corpus(folder: Path) -> Path:
    """Three services cut from the demo snapshot and its series, each with two questions that are exact metric
    names."""
    entries = json.loads(SNAPSHOT.read_text())["data"]
    series = json.loads(gzip.decompress(SERIES.read_bytes()))["data"]
    questions = []
    for service in SERVICES:
        mine = [e for e in entries if e["target"]["job"] == service]
        (folder / f"{service}.json").write_text(json.dumps({"status": "success", "data": mine}))
        theirs = {"status": "success", "data": [s for s in series if s["job"] == service]}
        (folder / f"{service}.series.json.gz").write_bytes(gzip.compress(json.dumps(theirs).encode()))
        for entry in mine[:2]:
            questions.append(
                {"namespace": f"corpus:{service}", "query": entry["metric"], "relevant": [entry["metric"]]}
            )
    (folder / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in questions))
    return folder


def quality(folder: Path, out: Path, *arguments: str) -> dict:
    run_bench("search_quality.py", "--quick", "--quick-services", "3", "--corpus", str(folder), "--extra",
              "--json-out", str(out), *arguments)  # fmt: skip
    return json.loads(out.read_text())


def test_search_quality_bench_scores_every_ranker_leaving_each_service_out(tmp_path: Path) -> None:
    folder = small_corpus(tmp_path)
    report = quality(folder, tmp_path / "rules.json")

    loso = report["loso"]
    assert set(loso) == RANKERS
    for by_service in loso.values():
        assert set(by_service) == {f"corpus:{s}" for s in SERVICES} | {"mean"}
        for values in by_service.values():
            assert 0 <= values["recall@1"] <= values["recall@5"] <= values["recall@10"] <= 1
            assert values["recall@1"] <= values["mrr"] <= 1
    # Every question is a metric's exact name: exact names rank first whatever the setting.
    assert all(loso[r]["mean"]["recall@1"] == 1.0 for r in RANKERS if r.startswith("ours"))
    # Each question-cue family kept or dropped per fold; exact names still rank first with the fold's families.
    families = report["cue_families"]
    assert all(0 <= kept <= len(SERVICES) for kept in families["kept_on_folds"].values())
    assert families["held_out"] == {"mrr": 1.0, "recall@5": 1.0}
    assert set(families["dropped_on_fold"]) == {f"corpus:{s}" for s in SERVICES}
    # The label values (alertmanager's states and integrations) and the late abbreviations kept or dropped per fold,
    # the corpora indexed again without them; then all the tables each fold kept at once: exact names still first.
    tables = report["corpus_tables"]
    assert "label values in the vectors" in tables["kept_on_folds"] and len(tables["kept_on_folds"]) == 5
    assert tables["questions"]["label values in the vectors"] == 2 * len(SERVICES)  # every service has some
    assert set(tables["dropped_on_fold"]) == {f"corpus:{s}" for s in SERVICES}
    assert tables["held_out"] == {"mrr": 1.0, "recall@5": 1.0}
    assert set(report["synonym_groups"]["dropped_on_fold"]) == {f"corpus:{s}" for s in SERVICES}
    assert report["word_tables"] == {"mrr": 1.0, "recall@5": 1.0}
    # One setting chosen per left-out service, and one on all of them.
    assert set(report["choices"]["ours"]) == {f"corpus:{s}" for s in SERVICES} | {"(all services)"}

    # The same labels read from a file (as the Claude enricher would store them) rank the same.
    records = {}
    for service in SERVICES:
        source = NamespaceSource(Namespace.parse(f"corpus:{service}"), "{}", snapshot=folder / f"{service}.json")
        raw = fetch_raw_metadata(source)
        frame, _report = enrich_catalog(RawMetric.from_frame(raw), RulesEnricher(), RulesEnricher())
        records[f"corpus:{service}"] = frame[list(EnrichedFields.model_fields)].to_dict("records")
    enrichments = tmp_path / "enrichments.json"
    enrichments.write_text(json.dumps(records))
    from_file = quality(folder, tmp_path / "file.json", "--enricher", "claude", "--enrichments", str(enrichments))
    assert from_file["loso"] == loso
    assert from_file["fallbacks"] == {f"corpus:{s}": 0 for s in SERVICES}


def test_scale_bench_indexes_everything_once_then_nothing(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run_bench("scale.py", "--sizes", "300", "--redis-names", "1000", "--json-out", str(out))

    answer = json.loads(out.read_text())
    (run,) = answer["runs"]
    first, second = run["first_counts"], run["second_counts"]
    assert run["second_error"] is None
    assert first["metrics"] == first["enriched"] == first["embedded"] == 300
    assert first["index_cpu_s"] > 0
    assert run["stored_names"] == first["names"] >= 300
    assert (second["enriched"], second["reused"], second["embedded"], second["unchanged"]) == (0, 300, 0, 300)
    assert run["search"]["results"] == 10
    assert run["search"]["top"]["node_load5"] == "node_load5"
    assert answer["redis_only"]["stored"] == 1000


def test_scale_bench_searches_a_kept_index_with_each_tree_without_indexing_it_again(tmp_path: Path) -> None:
    kept, out = tmp_path / "kept", tmp_path / "scale.json"
    run_bench("scale.py", "--sizes", "300", "--keep", str(kept), "--json-out", str(out))
    built = (kept / "300" / "complete.json").stat().st_mtime_ns
    (build,) = json.loads(out.read_text())["builds"]
    assert build["first_counts"]["embedded"] == 300
    run_bench("scale.py", "--sizes", "300", "--keep", str(kept), "--baseline", "HEAD", "--json-out", str(out))

    assert (kept / "300" / "complete.json").stat().st_mtime_ns == built
    answer = json.loads(out.read_text())
    runs = answer["runs"]
    assert [b["label"] for b in answer["builds"]] == ["HEAD"], "the baseline searches an index of its own model"
    assert [run["label"] for run in runs] == ["HEAD", "this tree"]
    for run in runs:
        assert run["search"]["results"] == 10
        assert run["search"]["top"]["node_load5"] == "node_load5"


def test_weak_match_bench_never_alarms_on_a_question_that_names_its_metric(tmp_path: Path) -> None:
    out = run_bench("weak_match.py", "--quick", "--corpus", str(small_corpus(tmp_path)))
    chosen = next(line for line in out.splitlines() if line.startswith("chosen on the corpus questions"))
    assert 0.05 <= float(chosen.rsplit(" ", 1)[1]) <= 0.70, out
    # Every corpus question is an exact metric name: named results are never weak, whatever the threshold.
    assert "  corpus            false alarms 0/4 (0.0%)" in out, out
    assert "nonsense          missed (no alarm)" in out, out


def test_same_rankings_bench_lists_every_question_and_finds_a_moved_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "top.json"
    run_bench("same_rankings.py", "--corpus", str(small_corpus(tmp_path)), "--extra", "--json-out", str(out))
    lists = json.loads(out.read_text())
    assert len(lists) == 2 * len(SERVICES)
    for key, ranked in lists.items():
        assert ranked[0][0] == key.split(" | ")[1]  # each question is an exact name

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from same_rankings import differences

    key, ranked = next(iter(lists.items()))
    nudged = {**lists, key: [[name, score + 0.0001] for name, score in ranked]}
    changed, drift = differences(lists, nudged)
    assert changed == [] and drift == pytest.approx(0.0001)
    swapped = {**lists, key: [ranked[1], ranked[0], *ranked[2:]]}
    assert len(differences(lists, swapped)[0]) == 1


def test_the_grid_choice_is_the_setting_that_ranks_best_on_the_typical_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import numpy as np
    from search_quality import choose, mean_rank

    # Three settings (rows), one question per service (columns). Service a swings most and alone prefers setting 0,
    # which would win by mean MRR (0.67 against 0.6); b and c both prefer setting 1, so it ranks best on the
    # typical service.
    rr = np.array([[1.0, 0.5, 0.5], [0.2, 1.0, 0.6], [0.1, 0.25, 0.25]])
    by_question = ["a", "b", "c"]
    assert choose(rr, np.array([True, True, True]), by_question, ["a", "b", "c"]) == 1
    assert choose(rr, np.array([True, False, True]), by_question, ["a", "b", "c"]) == 0
    assert choose(rr, np.array([True, True, True]), by_question, ["a"]) == 0
    # Tied settings share their mean rank: 0 and 1 tie for first and second (1.5 each).
    assert mean_rank(np.array([[0.5], [0.5], [0.25]])) == pytest.approx([1.5, 1.5, 3.0])
    assert mean_rank(rr) == pytest.approx([5 / 3, 4 / 3, 3.0])
