"""Dashboards and alert rules: generated from code, in step with deploy/, and tested by promtool."""

import json
import subprocess
from pathlib import Path

import pytest

from leitstand import locations
from leitstand.cli import observability
from leitstand.devcluster import prometheus
from leitstand.metrics import dashboards

DEPLOY = Path(locations.PACKAGE_DIR).parent.parent / "deploy"


def test_deploy_matches_what_the_code_generates() -> None:
    for relative, text in observability.files().items():
        assert (DEPLOY / relative).read_text() == text, f"deploy/{relative} is stale: run `make generate`"


def test_every_dashboard_has_a_unique_uid_a_datasource_variable_and_only_leitstand_metrics() -> None:
    boards = dashboards.dashboards()
    assert len({board["uid"] for board in boards.values()}) == len(boards) == 4
    for board in boards.values():
        variables = board["templating"]["list"]
        assert [(v["name"], v["type"], v["query"]) for v in variables] == [("datasource", "datasource", "prometheus")]
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"
            for target in panel["targets"]:
                assert "leitstand_" in target["expr"]
                assert target["refId"]


@pytest.fixture(scope="module")
def promtool() -> Path:
    return prometheus.locate("promtool")


def test_the_alert_rules_are_valid(promtool: Path) -> None:
    result = subprocess.run(
        [str(promtool), "check", "rules", "rules.yaml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_every_alert_passes_its_promtool_unit_tests(promtool: Path) -> None:
    result = subprocess.run(
        [str(promtool), "test", "rules", "rules.test.yaml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        line.split("alertname: ")[1]
        for line in (DEPLOY / "prometheus/rules.test.yaml").read_text().splitlines()
        if "alertname: " in line
    }
    assert tested == {rule["alert"] for rule in dashboards.alert_rules()["groups"][0]["rules"]}


def test_the_dashboards_are_json_grafana_reads() -> None:
    for name in dashboards.dashboards():
        board = json.loads((DEPLOY / "grafana" / name).read_text())
        assert board["title"].startswith("Leitstand / ")
        assert board["schemaVersion"] >= 36  # what grafana-foundation-sdk 10.1 writes; Grafana migrates it on load
