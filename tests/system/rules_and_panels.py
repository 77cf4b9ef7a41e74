"""The PromQL the repository ships: the rules of ``deploy/prometheus/`` and the expressions of
``deploy/grafana/receiptd-dashboard.json``, with Grafana's variables substituted.

A rule file is any ``deploy/prometheus/*.yml`` with a top-level ``groups`` key (Prometheus'
rule file format); promtool's unit-test files beside them (``rule_files``, ``tests``) are not.
Grafana's variables, as its documentation defines them
(https://grafana.com/docs/grafana/latest/dashboards/variables/add-template-variables/#global-variables):
``$__range`` is the dashboard's time range; ``$__interval`` the step of the query;
``$__rate_interval`` is max(``$__interval`` + scrape interval, 4 x scrape interval).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "receiptd-dashboard.json"
# $name, ${name}, ${name:format}, [[name]] (Grafana's three variable syntaxes).
VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]")


@dataclass(frozen=True)
class Target:
    panel: str
    ref: str
    expr: str

    @property
    def label(self) -> str:
        return f"{self.panel} [{self.ref}]"


def rule_files(directory: Path = RULES_DIR) -> list[Path]:
    """The Prometheus rule files in ``directory`` (sorted): those with a top-level ``groups``
    key; the server itself then says what each holds (``Prometheus.rule_groups``)."""
    paths = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    return [p for p in paths if re.search(r"^groups:", p.read_text(), re.M)]


def dashboard_targets(path: Path = DASHBOARD) -> list[Target]:
    """Every query of every panel (rows' nested panels included), in the dashboard's order."""
    dashboard = json.loads(path.read_text())
    return [
        Target(str(panel.get("title", "")), str(t.get("refId", "?")), str(t["expr"]))
        for panel in _panels(dashboard.get("panels", []))
        for t in panel.get("targets", [])
        if t.get("expr") and not t.get("hide")
    ]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """``expr`` with every Grafana variable replaced; KeyError naming one that has no value
    (a new variable in the dashboard must get a value here, never pass through unread)."""

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in variables:
            raise KeyError(f"no value for the dashboard variable ${name} in {expr!r}")
        return variables[name]

    return VARIABLE.sub(value, expr)


def grafana_variables(
    range_seconds: float, step: float, scrape: float, **template: str
) -> dict[str, str]:
    """The global variables for a query over ``range_seconds`` at ``step``, plus the
    dashboard's template variables (job, instance, account, ...)."""
    rate = max(step + scrape, 4 * scrape)
    return {
        "__range": f"{int(range_seconds)}s",
        "__range_s": str(int(range_seconds)),
        "__range_ms": str(int(range_seconds * 1000)),
        "__interval": f"{int(step)}s",
        "__interval_ms": str(int(step * 1000)),
        "__rate_interval": f"{int(rate)}s",
        **template,
    }
