"""The search corpus as committed (bench/corpora): every service has its questions, every answer is a real metric."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "bench" / "corpora"
MIN_QUESTIONS = 15  # issue 8: at least 15 questions a service


def test_every_answer_is_a_metric_of_its_service_snapshot() -> None:
    questions = [json.loads(line) for line in (CORPUS / "questions.jsonl").read_text().splitlines() if line.strip()]
    snapshots = {
        f"corpus:{path.stem}": {row["metric"] for row in json.loads(path.read_text())["data"]}
        for path in CORPUS.glob("*.json")
    }
    asked = Counter(q["namespace"] for q in questions)
    assert set(asked) == set(snapshots)
    assert min(asked.values()) >= MIN_QUESTIONS
    unknown = [(q["namespace"], n) for q in questions for n in q["relevant"] if n not in snapshots[q["namespace"]]]
    assert not unknown
    assert all(q["relevant"] and q["query"].strip() for q in questions)
