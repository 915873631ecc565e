"""What `deploy/` ships for operators holds up: the Prometheus alert rules pass `promtool check rules` and their unit
tests (`promtool test rules`: each alert fires on the series that should raise it), and the Grafana dashboard is a
dashboard whose every query is valid PromQL, checked by promtool too. Every metric either names is one the service
exports."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import service.delivery
import service.http.observability
import service.ratelimit  # noqa: F401  (each registers its metrics)

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "timex-licensing.json"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    not PROMTOOL and not os.environ.get("CI"), reason="no promtool here (CI installs Debian's prometheus)"
)


def _exported() -> set[str]:
    """The sample names the service's metrics are scraped as."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, [""])
        if family.type in suffixes
    }


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def _metrics_in(expression: str) -> set[str]:
    """The metric names an expression reads: its identifiers, less label matchers, grouping labels, ranges,
    functions (followed by `(`) and keywords."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expression)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    names = re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare)
    return set(names) - _KEYWORDS


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@needs_promtool
def test_the_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    checked = subprocess.run([PROMTOOL, "check", "rules", ALERTS], capture_output=True, text=True, timeout=60)
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts.test.yml"], capture_output=True, text=True, timeout=60, cwd=ALERTS.parent
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_alerts_cover_errors_latency_the_limiter_webhooks_and_the_signing_key() -> None:
    names = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    assert names == {
        "TimexLicensingErrors",
        "TimexLicensingSlow",
        "TimexLicensingRateLimitsInMemory",
        "TimexLicensingWebhookBacklog",
        "TimexLicensingSigningKeyOld",
    }


def test_the_dashboard_is_a_grafana_dashboard_on_a_chosen_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    [variable] = dashboard["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 9
    for panel in dashboard["panels"]:
        assert panel["type"] == "timeseries" and panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"} and target["refId"]


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool checks PromQL in rule files: each query becomes a recording rule there."""
    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for n, expression in enumerate(_dashboard_expressions()):
        rules["groups"][0]["rules"].append({"record": f"dashboard:query_{n}", "expr": expression})
    checked_file = tmp_path / "dashboard-queries.yml"
    checked_file.write_text(yaml.safe_dump(rules))

    checked = subprocess.run([PROMTOOL, "check", "rules", checked_file], capture_output=True, text=True, timeout=60)

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_metric_the_alerts_and_the_dashboard_read_is_one_the_service_exports() -> None:
    read = {name for expression in _alert_expressions() + _dashboard_expressions() for name in _metrics_in(expression)}

    assert read and read <= _exported(), read - _exported()
    assert {"signing_key_age_seconds", "webhook_oldest_undelivered_seconds", "rate_limit_store"} <= read
