"""The alert and recording rules (deploy/prometheus) checked with the real tool and against
their documentation.

``promtool check rules`` and ``promtool test rules`` (Debian's ``prometheus`` package; ``.ci/run``
installs it) run the rule file and its unit tests; every alert must have a test case in which
it fires and one in which it stays silent (``exp_alerts: []``), a severity, a summary and a
description naming a runbook section of docs/operations.md that exists. The Prometheus
Operator's copy (deploy/components/monitoring/prometheusrule.yaml) is generated from the plain
file and must equal it, also as ``kubectl kustomize`` renders it in overlays/monitoring.
Without promtool or kubectl a test skips on a laptop and fails under ``CI=true``.

``python tests/deploy/test_prometheus_rules.py`` rewrites the PrometheusRule from the plain file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "receiptd-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "receiptd-rules.test.yml"
PROMETHEUS_RULE = REPO / "deploy" / "components" / "monitoring" / "prometheusrule.yaml"
MONITORING_OVERLAY = REPO / "deploy" / "overlays" / "monitoring"
OPERATIONS = REPO / "docs" / "operations.md"
SEVERITIES = {"page", "ticket"}
RUNBOOK = re.compile(r"docs/operations\.md#([a-z0-9-]+)")

GENERATED_HEADER = """\
# GENERATED from deploy/prometheus/receiptd-rules.yml (the one copy of each rule, with the
# comments that explain every threshold): edit that file, then run
# `python tests/deploy/test_prometheus_rules.py` to rewrite this one
# (tests/deploy/test_prometheus_rules.py fails while the two differ).
# Prometheus Operator selects PrometheusRules by label (ruleSelector); kube-prometheus-stack
# selects "release: <helm release name>", as for the ServiceMonitor. Adjust to your Prometheus.
"""


def tool(name: str) -> str:
    """A binary from the virtualenv first, then PATH; skip without it, fail under CI=true."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian's prometheus package; .ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + ": CI must run the rule tests")
    pytest.skip(message)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules(kind: str) -> list[dict[str, Any]]:
    """Every rule of the plain file that has ``kind`` (``alert`` or ``record``)."""
    return [r for g in load(RULES)["groups"] for r in g["rules"] if kind in r]


def prometheus_rule() -> dict[str, Any]:
    """The PrometheusRule the plain file makes."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "receiptd",
            "labels": {"app.kubernetes.io/name": "receiptd", "release": "kube-prometheus-stack"},
        },
        "spec": {"groups": load(RULES)["groups"]},
    }


def render_prometheus_rule() -> str:
    body = yaml.safe_dump(prometheus_rule(), sort_keys=False, width=100, allow_unicode=True)
    return GENERATED_HEADER + body


# --- promtool ----------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, check=False, cwd=RULES.parent
    )


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"SUCCESS: (\d+) rules found", result.stdout)
    assert found and int(found.group(1)) == len(rules("alert")) + len(rules("record"))


def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules_can_fail(tmp_path: Path) -> None:
    """A case that expects silence while the target is down must fail: promtool really tests."""
    shutil.copy(RULES, tmp_path / RULES.name)
    planted = {
        "rule_files": [RULES.name],
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": 'up{job="receiptd", instance="x"}', "values": "0x20"}],
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": "ReceiptdTargetDown", "exp_alerts": []}
                ],
            }
        ],
    }
    (tmp_path / "planted.test.yml").write_text(yaml.safe_dump(planted), encoding="utf-8")
    result = subprocess.run(
        [tool("promtool"), "test", "rules", "planted.test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode != 0, result.stdout
    assert "ReceiptdTargetDown" in result.stdout + result.stderr


# --- every alert is tested both ways and documented --------------------------------------------


def coverage_problems(alerts: list[str], tests: dict[str, Any]) -> list[str]:
    """Alerts without a case where they fire or without one where they stay silent."""
    firing, silent = set(), set()
    for case in tests.get("tests", []):
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    problems = [f"{a}: no test case where it fires" for a in alerts if a not in firing]
    problems += [f"{a}: no test case where it stays silent" for a in alerts if a not in silent]
    problems += [f"{a}: tested but not a rule" for a in sorted((firing | silent) - set(alerts))]
    return problems


def test_every_alert_fires_and_stays_silent_in_the_tests() -> None:
    alerts = [r["alert"] for r in rules("alert")]
    assert len(alerts) == len(set(alerts)), "alert names must be unique"
    assert coverage_problems(alerts, load(RULE_TESTS)) == []


def test_the_coverage_check_sees_a_missing_case() -> None:
    tests = {"tests": [{"alert_rule_test": [{"alertname": "A", "exp_alerts": [{}]}]}]}
    assert coverage_problems(["A", "B"], tests) == [
        "B: no test case where it fires",
        "A: no test case where it stays silent",
        "B: no test case where it stays silent",
    ]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def alert_problems(rule: dict[str, Any], known_anchors: set[str]) -> list[str]:
    name = rule.get("alert", "?")
    annotations = rule.get("annotations", {})
    problems = []
    if rule.get("labels", {}).get("severity") not in SEVERITIES:
        problems.append(f"{name}: severity must be one of {sorted(SEVERITIES)}")
    if not annotations.get("summary"):
        problems.append(f"{name}: no summary")
    if not rule.get("for"):
        problems.append(f"{name}: no `for`")
    linked = RUNBOOK.findall(annotations.get("description", ""))
    if not linked:
        problems.append(f"{name}: the description names no docs/operations.md runbook section")
    problems += [
        f"{name}: no section #{a} in docs/operations.md"
        for a in sorted(set(linked) - known_anchors)
    ]
    return problems


def test_every_alert_has_severity_summary_and_a_runbook_that_exists() -> None:
    known = anchors(OPERATIONS.read_text(encoding="utf-8"))
    problems = [p for rule in rules("alert") for p in alert_problems(rule, known)]
    assert problems == []


def test_the_alert_check_sees_a_broken_alert() -> None:
    bad = {
        "alert": "X",
        "labels": {"severity": "critical"},
        "annotations": {"description": "see docs/operations.md#nowhere"},
    }
    assert alert_problems(bad, anchors("## Somewhere\n")) == [
        "X: severity must be one of ['page', 'ticket']",
        "X: no summary",
        "X: no `for`",
        "X: no section #nowhere in docs/operations.md",
    ]
    assert anchors("### `ReceiptdTargetDown` (page)\n") == {"receiptdtargetdown-page"}


def test_recording_rules_are_named_level_metric_operation() -> None:
    names = [r["record"] for r in rules("record")]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"receiptd:[a-z0-9_]+:[a-z0-9_]+", name), name


# --- the PrometheusRule is the plain file ---------------------------------------------------------


def test_prometheus_rule_is_generated_from_the_plain_file() -> None:
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == render_prometheus_rule(), (
        "deploy/components/monitoring/prometheusrule.yaml differs from the rule file: "
        "run `python tests/deploy/test_prometheus_rules.py`"
    )
    component = load(PROMETHEUS_RULE.parent / "kustomization.yaml")
    assert PROMETHEUS_RULE.name in component["resources"]


def test_kustomize_renders_the_same_rules() -> None:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(MONITORING_OVERLAY)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (rule,) = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == load(RULES)["groups"]
    assert rule["metadata"]["namespace"] == "receiptd"


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render_prometheus_rule(), encoding="utf-8")
    print(f"wrote {PROMETHEUS_RULE.relative_to(REPO)}")
