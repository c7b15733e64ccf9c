"""Golden queries from users: the `golden_queries` asset turns confirmed feedback into questions the golden-query
check runs beside the registry's, and shows what people ask (most frequent and zero-result questions)."""

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from metrics_index.assets import GROUP
from metrics_index.feedback import confirmed_golden_queries, question_stats
from metrics_index.io import PARQUET_IO
from metrics_index.namespaces import NAMESPACE_PARTITIONS, GoldenQuery
from metrics_index.resources import FeedbackResource

GOLDEN_ASSET = "golden_queries"
COLUMNS = ["question", "expected", "votes"]


@asset(partitions_def=NAMESPACE_PARTITIONS, group_name=GROUP, io_manager_key=PARQUET_IO)
def golden_queries(context: AssetExecutionContext, feedback: FeedbackResource) -> Output[pd.DataFrame]:
    """Questions whose answer users confirmed (more good than bad votes for a metric), one row per question with
    the confirmed metrics as its expected answers; the golden-query check of the index runs them."""
    namespace = context.partition_key
    votes = [record for record in feedback.feedback_records() if record.get("namespace") == namespace]
    confirmed = confirmed_golden_queries(votes, namespace, feedback.min_votes)
    frequent, zero_result = question_stats(feedback.query_records(), namespace)
    frame = pd.DataFrame([[c.question, list(c.expected), c.votes] for c in confirmed], columns=COLUMNS)
    return Output(
        frame,
        metadata={
            "golden_queries": len(frame),
            "feedback_votes": len(votes),
            "most_frequent_questions": MetadataValue.md(_table(frequent, "searches")),
            "zero_result_questions": MetadataValue.md(_table(zero_result, "searches with no result")),
        },
    )


def golden_from_frame(frame: pd.DataFrame | None) -> list[GoldenQuery]:
    """The rows of a `golden_queries` output as the check's golden queries (none before its first run)."""
    if frame is None:
        return []
    return [GoldenQuery(row["question"], tuple(row["expected"])) for row in frame.to_dict("records")]


def _table(rows: list[list], counted: str) -> str:
    if not rows:
        return "(none)"
    lines = [f"| question | {counted} |", "|---|---:|"]
    lines += [f"| {question.replace('|', '/')} | {count} |" for question, count in rows]
    return "\n".join(lines)
