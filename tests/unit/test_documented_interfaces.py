"""The documented interfaces stay true: log events, metric names, the one clock, the help.

* every event the daemon logs is a row of the table in docs/operations.md ("Log events"), and
  every row is an event the code logs;
* every metric of ``receiptd.metrics`` is a row of the metric table in docs/operations.md and
  every row exists; every metric the docs, the Grafana dashboard and any Prometheus rule in
  ``deploy/`` name exists;
* no daemon module reads the wall clock but ``receiptd.clock`` (the emulator models the
  provider's clock and keeps its own);
* ``receiptd emulator --help`` says what the emulator serves.

The scanners read the source (``ast``), so an event or a clock call on a path no test runs is
still seen; each is also run on a planted violation, so a scanner that finds nothing fails.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from receiptd import metrics

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "receiptd"
OPERATIONS = ROOT / "docs" / "operations.md"

LEVELS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "msg"}
# Calls that bind a module's logger: receiptd.logs.get_logger (structlog's or the stdlib's
# factory would be seen too).
LOGGER_FACTORIES = {"get_logger", "getLogger"}


def daemon_sources() -> Iterator[tuple[Path, ast.Module]]:
    """Every module of the daemon: receiptd/ without the emulator (a tool of its own, with its
    own stdlib logging and clock)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "emulator") in path.parents:
            continue
        yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def section(path: Path, heading: str) -> str:
    """The text of ``## heading`` up to the next ``## `` heading."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : None if end < 0 else end]


def first_column(table: str) -> set[str]:
    """The backticked names in the first column of a Markdown table's rows."""
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


# --- log events ------------------------------------------------------------------------------


def _loggers(tree: ast.Module) -> set[str]:
    """Module-level names bound to a logger (``log = get_logger(__name__)`` and the like)."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in LOGGER_FACTORIES:
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def logged_events(tree: ast.Module, where: str = "<planted>") -> dict[str, list[str]]:
    """Event name -> the places that log it. An event that is not a string literal fails: the
    names must be greppable and listed."""
    loggers = _loggers(tree)
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        if node.func.attr not in LEVELS or not (
            isinstance(target, ast.Name) and target.id in loggers
        ):
            continue
        event = node.args[0] if node.args else None
        assert isinstance(event, ast.Constant) and isinstance(event.value, str), (
            f"{where}:{node.lineno}: the event name must be a string literal"
        )
        found.setdefault(event.value, []).append(f"{where}:{node.lineno}")
    return found


def code_events() -> dict[str, list[str]]:
    events: dict[str, list[str]] = {}
    for path, tree in daemon_sources():
        for name, places in logged_events(tree, str(path.relative_to(ROOT))).items():
            events.setdefault(name, []).extend(places)
    return events


def test_the_event_scanner_sees_every_logger_kind() -> None:
    planted = ast.parse(
        "import structlog\n"
        "from receiptd.logs import get_logger\n"
        "log = get_logger(__name__)\n"
        "slog = structlog.get_logger(__name__)\n"
        "def f():\n"
        "    log.info('one', a=1)\n"
        "    slog.exception('two')\n"
        "    other.info('not a logger')\n"
    )
    assert set(logged_events(planted)) == {"one", "two"}
    with pytest.raises(AssertionError, match="string literal"):
        logged_events(ast.parse("log = get_logger(__name__)\nlog.info(name)\n"))


def test_every_logged_event_is_in_the_operations_table_and_back() -> None:
    events = code_events()
    assert len(events) > 40, "the scanner found too few events: is it still looking?"
    documented = first_column(section(OPERATIONS, "Log events"))
    missing = {name: places for name, places in events.items() if name not in documented}
    assert not missing, f"logged but not in docs/operations.md's event table: {missing}"
    assert documented <= set(events), (
        f"in docs/operations.md's event table but logged nowhere: {documented - set(events)}"
    )


def test_daemon_modules_log_through_receiptd_logs() -> None:
    """``receiptd.logs.get_logger`` is the one factory (stdlib ``logging.getLogger`` stays
    allowed: it names third-party loggers to quieten or configure)."""
    direct = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path, tree in daemon_sources()
        if path != PACKAGE / "logs.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "get_logger"
        and isinstance(node.value, ast.Name | ast.Attribute)
        and "structlog" in ast.unparse(node.value)
    ]
    assert not direct, f"structlog's own get_logger outside receiptd.logs: {direct}"


# --- metrics ---------------------------------------------------------------------------------

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("", "_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
PRIMARY = {"counter": "_total", "histogram": "", "gauge": "", "info": "_info"}
# Named in the docs on purpose although not exposed: docs/consumer.md says they are gone.
FORMER = {"receiptd_dead_letters_total", "receiptd_delete_failures_total"}


def exposed() -> tuple[set[str], set[str]]:
    """(the name a user queries for each receiptd metric, every series name /metrics can
    carry, process_* included)."""
    primary, series = set(), set()
    for family in metrics.REGISTRY.collect():
        series.update(family.name + s for s in SUFFIXES[family.type])
        if family.name.startswith("receiptd_"):
            primary.add(family.name + PRIMARY[family.type])
    return primary, series


def named_metrics(text: str) -> set[str]:
    """Metric names in PromQL or prose: ``receiptd_…``/``process_…`` followed by ``{`` or
    ending in a Prometheus suffix (a bare ``receiptd_events`` is also a NOTIFY channel)."""
    names = set()
    pattern = r"\b((?:receiptd|process)_[a-z0-9_]+)\b(\{?)"
    suffix = re.compile(r"_(total|seconds|bytes|bucket|sum|count|created|info|fds)$")
    for name, brace in re.findall(pattern, text):
        if brace or suffix.search(name):
            names.add(name)
    return names


def test_every_metric_is_in_the_operations_table_and_back() -> None:
    primary, _ = exposed()
    documented = {n for n in first_column(section(OPERATIONS, "Metrics")) if "*" not in n}
    assert primary - documented == set(), "metrics missing from docs/operations.md's table"
    assert documented - primary == set(), "docs/operations.md's table lists unknown metrics"


def test_the_docs_name_only_metrics_that_exist() -> None:
    _, series = exposed()
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in texts
        for name in named_metrics(path.read_text(encoding="utf-8")) - series - FORMER
    }
    assert not unknown, f"metric names that /metrics does not carry: {sorted(unknown)}"


def _expressions(value: object) -> Iterator[str]:
    """Every ``expr`` string in a Grafana dashboard or a Prometheus rule file."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "expr" and isinstance(item, str):
                yield item
            else:
                yield from _expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item)


def deploy_queries() -> dict[str, list[str]]:
    """File -> its queries: the ``expr`` of the Grafana dashboards (JSON), and the whole text
    of any Prometheus rule file (YAML with an ``expr:`` key; none is shipped today) under
    deploy/."""
    queries: dict[str, list[str]] = {}
    for path in sorted((ROOT / "deploy").rglob("*")):
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if path.suffix == ".json":
            found = list(_expressions(json.loads(text)))
        elif path.suffix in (".yaml", ".yml") and re.search(r"^\s*-?\s*expr:", text, re.M):
            found = [text]
        else:
            continue
        if found:
            queries[str(path.relative_to(ROOT))] = found
    return queries


def test_the_dashboard_and_rules_query_only_metrics_that_exist() -> None:
    _, series = exposed()
    queries = deploy_queries()
    assert "deploy/grafana/receiptd-dashboard.json" in queries
    unknown = {
        f"{path}: {name}"
        for path, exprs in queries.items()
        for expr in exprs
        for name in set(re.findall(r"\b((?:receiptd|process)_[a-z0-9_]+)\b", expr)) - series
    }
    assert not unknown, f"queries over metrics that do not exist: {sorted(unknown)}"


def test_the_metric_scanners_see_a_planted_name() -> None:
    assert named_metrics("`receiptd_gone_total` and `receiptd_x{a}`, NOTIFY receiptd_events") == {
        "receiptd_gone_total",
        "receiptd_x",
    }
    dashboard = {"panels": [{"targets": [{"expr": "rate(receiptd_gone_total[5m])"}]}]}
    assert list(_expressions(dashboard)) == ["rate(receiptd_gone_total[5m])"]


# --- one clock -------------------------------------------------------------------------------

WALL_CLOCK_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "time_ns"),
}


def _clock_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> ``datetime``/``date``/``time`` for every import that binds one of them
    under another name (``from datetime import datetime as dt``, ``import time as t``)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) or (
            isinstance(node, ast.ImportFrom) and node.module == "datetime"
        ):
            aliases.update({a.asname or a.name: a.name for a in node.names})
    return aliases


def wall_clock_reads(tree: ast.Module, where: str = "<planted>") -> list[str]:
    """``datetime.now(…)``, ``date.today()``, ``time.time()`` and the like, under any import
    name (``datetime.datetime.now`` too); ``time.monotonic()`` measures durations: fine."""
    aliases = _clock_aliases(tree)
    reads = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if (aliases.get(name, name), node.func.attr) in WALL_CLOCK_CALLS:
                reads.append(f"{where}:{node.lineno}: {ast.unparse(node.func)}()")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "time"
            and any(alias.name in ("time", "time_ns") for alias in node.names)
        ):
            reads.append(f"{where}:{node.lineno}: from time import time")
    return reads


def test_the_clock_scanner_sees_a_planted_now() -> None:
    planted = ast.parse(
        "import datetime, time as t\n"
        "from datetime import UTC, datetime as dt\n"
        "a = dt.now(UTC)\n"
        "b = datetime.datetime.now()\n"
        "c = t.time()\n"
        "d = t.monotonic()\n"
        "e = event.time()\n"
    )
    assert [r.split(": ")[1] for r in wall_clock_reads(planted)] == [
        "dt.now()",
        "datetime.datetime.now()",
        "t.time()",
    ]


def test_one_clock_for_every_now_in_the_daemon() -> None:
    reads = [
        read
        for path, tree in daemon_sources()
        if path != PACKAGE / "clock.py"
        for read in wall_clock_reads(tree, str(path.relative_to(ROOT)))
    ]
    assert not reads, f"read the wall clock through receiptd.clock instead: {reads}"


# --- help texts ------------------------------------------------------------------------------


def test_emulator_help_names_both_providers() -> None:
    from receiptd.cli import main

    result = CliRunner().invoke(main, ["emulator", "--help"])
    assert result.exit_code == 0, result.output
    assert "Alibaba" in result.output and "KooMessage" in result.output
