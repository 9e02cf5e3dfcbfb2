"""CpcDeadLetters under `promtool test rules`: it fires on a consumer's first dead letter (its counter is
exported at 0 from the start), names that consumer and the CLI, and falls quiet once nothing new arrives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.catalog import ROOT
from tests.deploy.tools import run_tool

RULES = ROOT / "deploy/grafana/alerts/bus.yml"
SERIES = (
    'cpc_dead_letters_total{job="cpc-chat",instance="chat:9100",durable="chat-social",subject="social.x.y"}'
)


def _rule() -> dict[str, Any]:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    [rule] = [r for r in rules if r.get("alert") == "CpcDeadLetters"]
    return rule


def _annotations() -> dict[str, str]:
    """The rule's annotations as Prometheus fills them in for SERIES."""
    filled = {}
    for key, text in _rule()["annotations"].items():
        filled[key] = text.replace("{{ $labels.durable }}", "chat-social").replace(
            "{{ $labels.subject }}", "social.x.y"
        )
    return filled


def _case(values: str, alerts: list[tuple[str, bool]]) -> dict[str, object]:
    labels = {"severity": "warning", "durable": "chat-social", "subject": "social.x.y"}
    expected = [
        {
            "eval_time": at,
            "alertname": "CpcDeadLetters",
            "exp_alerts": [{"exp_labels": labels, "exp_annotations": _annotations()}] if firing else [],
        }
        for at, firing in alerts
    ]
    return {
        "interval": "1m",
        "input_series": [{"series": SERIES, "values": values}],
        "alert_rule_test": expected,
    }


def test_the_dead_letter_alert_fires_on_the_first_one_and_clears(tmp_path: Path) -> None:
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            # 0 for 5 minutes, one dead letter, then none: fires at once, quiet 10 minutes later.
            _case("0x4 1x30", [("4m", False), ("6m", True), ("14m", True), ("17m", False)]),
            # A consumer without dead letters never alerts.
            _case("0x30", [("10m", False), ("30m", False)]),
        ],
    }
    path = tmp_path / "dead_letters_test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = run_tool("promtool", "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dead_letter_alert_tells_what_to_do() -> None:
    rule = _rule()
    text = rule["annotations"]["summary"] + rule["annotations"]["description"]
    assert "{{ $labels.durable }}" in text
    assert "python -m libs.bus.deadletters list --consumer" in text
    assert rule["annotations"]["runbook"] == "docs/operations.md#dead-letters"
    assert "### Dead letters" in (ROOT / "docs/operations.md").read_text()
