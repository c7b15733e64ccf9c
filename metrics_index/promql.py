"""Check a PromQL expression against a namespace: syntax, metric names, label names and `=` values.

The expression is parsed by `promql-parser` (the Rust parser of GreptimeDB, used by several query engines), which
knows PromQL's grammar, functions and types but gives no positions. Positions come from a small scan of the text
that finds each vector selector and its matchers; each selector the parser found is paired with the one of the same
name and matchers in the text, in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd
import promql_parser

from metrics_index.label_preference import LABEL_SYNONYMS
from metrics_index.sources.labels import LabelSchema
from metrics_index.sources.prometheus import SCRAPE_SERIES
from metrics_index.stores.name_set import close_matches

_NOT_SELECTORS = {
    "and", "or", "unless", "atan2", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
    "bool", "inf", "nan", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_TOKEN = re.compile(
    r"""(?P<space>\s+|\#[^\n]*)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z0-9]*)
    |(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@])""",
    re.VERBOSE,
)


class MetricCatalog(Protocol):
    """What validation needs to know about a namespace: stores/name_set.py's NameSetCatalog answers from Redis."""

    def known(self, names: Sequence[str]) -> dict[str, bool]: ...

    def schemas(self, names: Sequence[str]) -> dict[str, str | None]: ...

    def all_names(self) -> set[str]: ...


@dataclass(frozen=True)
class Problem:
    kind: str  # syntax, unknown_metric, unknown_label, unknown_value
    message: str
    offset: int | None = None  # 0-based character offset in the expression
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueryValidation:
    expression: str
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems

    def position(self, offset: int) -> tuple[int, int]:
        """1-based line and column of an offset."""
        before = self.expression[:offset]
        return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1

    def as_dict(self) -> dict:
        problems = []
        for problem in self.problems:
            item: dict = {"kind": problem.kind, "message": problem.message}
            if problem.offset is not None:
                line, column = self.position(problem.offset)
                item["position"] = {"offset": problem.offset, "line": line, "column": column}
            if problem.suggestions:
                item["suggestions"] = list(problem.suggestions)
            problems.append(item)
        return {"expression": self.expression, "valid": self.valid, "problems": problems, "notes": list(self.notes)}


@dataclass
class _Matcher:
    label: str
    op: str
    value: str
    label_offset: int | None = None
    value_offset: int | None = None


@dataclass
class _Selector:
    name: str | None
    offset: int | None = None
    matchers: list[_Matcher] = field(default_factory=list)


def syntax_error(expression: str) -> str | None:
    """The parser's complaint about the expression, or None when it parses."""
    try:
        promql_parser.parse(expression)
    except ValueError as error:
        return str(error) or "invalid PromQL"
    return None


def validate_query(expression: str, catalog: MetricCatalog, namespace: str) -> QueryValidation:
    """Every problem of the expression in this namespace, each with its position and close matches."""
    try:
        tree = promql_parser.parse(expression)
    except ValueError as error:
        return QueryValidation(expression, (Problem("syntax", f"syntax error: {error}", _unbalanced(expression)),))
    selectors = _place(list(_parsed_selectors(tree)), _scanned_selectors(expression))
    names = list(dict.fromkeys(s.name for s in selectors if s.name))
    known = catalog.known(names) if names else {}
    known |= {name: True for name in names if name in SCRAPE_SERIES}
    stored = catalog.schemas([n for n in names if known.get(n)]) if names else {}
    schemas = {name: LabelSchema.from_json(text) for name, text in stored.items()}
    problems: list[Problem] = []
    notes: list[str] = []
    all_names: set[str] | None = None
    for selector in selectors:
        if selector.name is None:
            continue
        if not known.get(selector.name):
            all_names = all_names if all_names is not None else catalog.all_names()
            suggestions = _close(selector.name, all_names)
            problems.append(
                Problem(
                    "unknown_metric",
                    f"`{selector.name}` is not a metric of {namespace}{_did_you_mean(suggestions)}",
                    selector.offset,
                    suggestions,
                )
            )
            continue
        schema = schemas.get(selector.name)
        if schema is None:
            note = f"labels of `{selector.name}` are not known (no series when indexed): its matchers were not checked"
            notes.append(note)
            continue
        problems.extend(_matcher_problems(selector, schema))
    return QueryValidation(expression, tuple(problems), tuple(dict.fromkeys(notes)), tuple(names))


def _matcher_problems(selector: _Selector, schema: LabelSchema) -> Iterator[Problem]:
    for matcher in selector.matchers:
        if matcher.label == "__name__":
            continue
        summary = schema.labels.get(matcher.label)
        if summary is None:
            if matcher.op == "=" and matcher.value == "":
                continue  # `label=""` asks for series without the label: always meaningful
            suggestions = _label_suggestions(matcher.label, schema.labels)
            ending = _did_you_mean(suggestions) or f"; its labels: {', '.join(f'`{n}`' for n in sorted(schema.labels))}"
            yield Problem(
                "unknown_label",
                f"`{matcher.label}` is not a label of `{selector.name}`{ending}",
                matcher.label_offset,
                suggestions,
            )
        elif matcher.op == "=" and summary.complete and matcher.value not in summary.values:
            suggestions = _close(matcher.value, summary.values, cutoff=50)
            ending = _did_you_mean(suggestions) or f"; its values: {', '.join(f'`{v}`' for v in summary.values)}"
            yield Problem(
                "unknown_value",
                f"`{matcher.value}` is not a value of `{matcher.label}` on `{selector.name}`{ending}",
                matcher.value_offset,
                suggestions,
            )


def _label_suggestions(label: str, labels: Sequence[str]) -> tuple[str, ...]:
    synonyms = [name for name in LABEL_SYNONYMS.get(label.lower(), ()) if name in labels]
    return tuple(dict.fromkeys([*synonyms, *_close(label, labels, cutoff=70)]))[:3]


def _close(text: str, candidates: Sequence[str] | set[str], cutoff: int = 80) -> tuple[str, ...]:
    return tuple(close_matches(candidates, text, score_cutoff=cutoff))


def _did_you_mean(suggestions: Sequence[str]) -> str:
    if not suggestions:
        return ""
    return "; did you mean " + " or ".join(f"`{s}`" for s in suggestions) + "?"


def _parsed_selectors(node: object) -> Iterator[_Selector]:
    """The vector selectors of a parsed expression, in the order they are written."""
    if isinstance(node, promql_parser.VectorSelector):
        matchers = [*node.matchers.matchers, *(m for group in node.matchers.or_matchers for m in group)]
        name = node.name
        for matcher in matchers:
            if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
                name = matcher.value
        yield _Selector(name, matchers=[_Matcher(m.name, _OPS[str(m.op)], m.value) for m in matchers])
    elif isinstance(node, promql_parser.MatrixSelector):
        yield from _parsed_selectors(node.vector_selector)
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from _parsed_selectors(node.lhs)
        yield from _parsed_selectors(node.rhs)
    elif isinstance(node, promql_parser.AggregateExpr):
        if node.param is not None:
            yield from _parsed_selectors(node.param)
        yield from _parsed_selectors(node.expr)
    elif isinstance(node, promql_parser.Call):
        for argument in node.args:
            yield from _parsed_selectors(argument)
    elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
        yield from _parsed_selectors(node.expr)


# promql_parser.MatchOp is not hashable: keyed by its name
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, offset) of each token; comments and spaces left out, anything unknown as `other`."""
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            tokens.append(("other", text[position], position))
            position += 1
            continue
        if match.lastgroup != "space":
            tokens.append((match.lastgroup or "other", match.group(), position))
        position = match.end()
    return tokens


def _scanned_selectors(text: str) -> list[_Selector]:
    """Each vector selector as written, with the offsets of its name, its label names and its values."""
    tokens = _tokens(text)
    selectors: list[_Selector] = []
    i = 0
    while i < len(tokens):
        kind, value, offset = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and value.lower() in _LABEL_LISTS and following == "(":
            i = _skip_group(tokens, i + 1, "(", ")")
        elif value == "[":
            i = _skip_group(tokens, i, "[", "]")
        elif kind == "ident" and following == "{":
            selector = _Selector(value, offset)
            i = _read_matchers(tokens, i + 1, selector)
            selectors.append(selector)
        elif value == "{":
            selector = _Selector(None, offset)
            i = _read_matchers(tokens, i, selector)
            selectors.append(selector)
        elif kind == "ident" and following != "(" and value.lower() not in _NOT_SELECTORS:
            selectors.append(_Selector(value, offset))
            i += 1
        else:
            i += 1
    return selectors


def _skip_group(tokens: list[tuple[str, str, int]], start: int, opening: str, closing: str) -> int:
    depth = 0
    for i in range(start, len(tokens)):
        depth += {opening: 1, closing: -1}.get(tokens[i][1], 0)
        if depth == 0:
            return i + 1
    return len(tokens)


def _read_matchers(tokens: list[tuple[str, str, int]], start: int, selector: _Selector) -> int:
    """Read `{label op "value", …}` from the `{` at `start`; returns the index after the `}`."""
    i = start + 1
    while i < len(tokens) and tokens[i][1] != "}":
        if tokens[i][0] in {"ident", "string"} and i + 2 < len(tokens) and tokens[i + 1][1] in {"=", "!=", "=~", "!~"}:
            label = tokens[i][1] if tokens[i][0] == "ident" else tokens[i][1][1:-1]
            selector.matchers.append(_Matcher(label, tokens[i + 1][1], "", tokens[i][2], tokens[i + 2][2]))
            i += 3
        else:
            i += 1
    for matcher in selector.matchers:
        if selector.name is None and matcher.label == "__name__" and matcher.op == "=":
            selector.offset = matcher.value_offset  # `{__name__="x"}`: a wrong name is pointed at "x"
    return i + 1


def _place(parsed: list[_Selector], scanned: list[_Selector]) -> list[_Selector]:
    """Give each parsed selector the offsets of the written one it comes from (same name, same labels, in order)."""
    used: set[int] = set()
    for selector in parsed:
        labels = [m.label for m in selector.matchers]
        for index, written in enumerate(scanned):
            if index in used:
                continue
            written_name = written.name
            if written_name is None and any(m.label == "__name__" and m.op == "=" for m in written.matchers):
                written_name = selector.name
            if written_name == selector.name and sorted(m.label for m in written.matchers) == sorted(labels):
                used.add(index)
                selector.offset = written.offset
                offsets = {m.label: m for m in written.matchers}
                for matcher in selector.matchers:
                    if matcher.label in offsets:
                        matcher.label_offset = offsets[matcher.label].label_offset
                        matcher.value_offset = offsets[matcher.label].value_offset
                break
    return parsed


def _unbalanced(text: str) -> int | None:
    """Where a bracket or a quote opened and never closed (or closed without opening), for a syntax error."""
    stack: list[tuple[str, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for kind, value, offset in _tokens(text):
        if kind == "other" and value in "\"'`":
            return offset
        if value in "([{":
            stack.append((value, offset))
        elif value in pairs:
            if not stack or stack[-1][0] != pairs[value]:
                return offset
            stack.pop()
    return stack[-1][1] if stack else None


RATE_WINDOW = "5m"
# Labels a counter is most often broken down by, when it has them with a few values.
_GROUPING_PREFERENCE = ("code", "status", "status_code", "mode", "method", "state", "result", "reason", "type")
_NOT_GROUPING = {"job", "instance", "le", "quantile"}
_MAX_GROUPING_VALUES = 12
_SUMMARY_QUANTILES = ("0.99", "0.95", "0.9", "0.75", "0.5")
_INFO_JOIN_KEYS = ("job", "instance")
_INFO_LABELS_SHOWN = 4


def query_hint(name: str, metric_type: str, unit: str, schema: LabelSchema | None) -> str:
    """A PromQL expression that reads the metric the way its type asks: a rate for counters, a quantile for
    histograms and summaries, a join for `_info` metrics, the value itself for gauges (an age for timestamps)."""
    labels = schema.labels if schema else {}
    if name.endswith("_info") and metric_type in {"gauge", "info", "unknown"}:
        return _info_hint(name, schema)
    if metric_type == "histogram":
        return f"histogram_quantile(0.99, sum by (le) (rate({name}_bucket[{RATE_WINDOW}])))"
    if metric_type == "summary":
        quantiles = labels["quantile"].values if "quantile" in labels else ()
        preferred = [q for q in _SUMMARY_QUANTILES if q in quantiles] or list(quantiles)
        if preferred:
            return f'{name}{{quantile="{preferred[0]}"}}'
        return f"rate({name}_sum[{RATE_WINDOW}]) / rate({name}_count[{RATE_WINDOW}])"
    if metric_type == "counter" or (metric_type == "unknown" and name.endswith("_total")):
        rate = f"rate({name}[{RATE_WINDOW}])"
        grouping = _grouping_label(schema)
        return f"sum by ({grouping}) ({rate})" if grouping else rate
    if (unit == "seconds" or name.endswith("_seconds")) and re.search(r"(_timestamp|_time)_seconds$", name):
        return f"time() - {name}"
    return name


def _grouping_label(schema: LabelSchema | None) -> str | None:
    """The label a counter is best summed by: a well-known one with a few values, else the one with fewest values."""
    if schema is None:
        return None
    candidates = {
        label: summary.count
        for label, summary in schema.labels.items()
        if label not in _NOT_GROUPING and 2 <= summary.count <= _MAX_GROUPING_VALUES and summary.values
    }
    for label in _GROUPING_PREFERENCE:
        if label in candidates:
            return label
    return min(candidates, key=lambda label: (candidates[label], label)) if candidates else None


def _info_hint(name: str, schema: LabelSchema | None) -> str:
    """`up * on (job, instance) group_left (version) x_info` when the info metric has one series per target (else a
    join would match many series to one and fail): its labels put beside any series of the same target."""
    if schema is None or schema.series > schema.targets:
        return name
    keys = [label for label in _INFO_JOIN_KEYS if label in schema.labels]
    shown = sorted(label for label in schema.labels if label not in keys)
    shown = (["version"] if "version" in shown else []) + [label for label in shown if label != "version"]
    if not shown:
        return name
    return f"up * on ({', '.join(keys)}) group_left ({', '.join(shown[:_INFO_LABELS_SHOWN])}) {name}"


def hints_for(frame: pd.DataFrame) -> list[str]:
    """The query hint of each row of a catalog frame (metric_name, type, unit, labels)."""
    labels = frame["labels"] if "labels" in frame else [None] * len(frame)
    return [
        query_hint(name, metric_type, unit or "", LabelSchema.from_json(text))
        for name, metric_type, unit, text in zip(
            frame["metric_name"], frame["type"], frame["unit"], labels, strict=True
        )
    ]
