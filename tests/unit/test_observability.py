"""Dashboards and alert rules as code (docs/observability/): the dashboards are what their generator
writes and parse back through Grafana's own typed model; every expression parses with Prometheus'
PromQL grammar and names only metrics the mesh declares; every alert links a runbook that exists."""

from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from mesh.telemetry import Metrics
from tests.observability import (
    DASHBOARDS,
    OBSERVABILITY,
    ROOT,
    dashboards,
    metric_names,
    parse_promql,
    queries,
    rules,
    series_names,
    variable_metrics,
)

EXPECTED = {"overview.json", "pool.json", "tenant.json", "inference.json"}
PANEL_TYPES = {"row", "timeseries", "stat", "heatmap", "text"}
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tidemesh_dashboards", OBSERVABILITY / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _declared() -> set[str]:
    families = [(family.name, family.type) for family in Metrics().registry.collect()]
    return series_names(families)


def test_the_dashboards_are_what_their_generator_writes() -> None:
    """docs/observability/dashboards/*.json are the generator's output (run it after a change)."""
    rendered = _generator().rendered()
    assert {f"{name}.json" for name in rendered} == EXPECTED == {p.name for p in DASHBOARDS.glob("*.json")}
    for name, document in rendered.items():
        assert (DASHBOARDS / f"{name}.json").read_text() == document, (
            f"{name}.json is stale: python docs/observability/dashboards.py"
        )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_dashboard_parses_back_through_grafana_s_model(name: str) -> None:
    """Grafana's typed dashboard model (grafana-foundation-sdk, generated from its schema) reads the
    document and writes it back unchanged; ids, refIds and the data source are what Grafana needs."""
    document = dashboards()[name]
    model = Dashboard.from_json(document)
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == document
    assert document["uid"].startswith("tidemesh-") and "tidemesh" in document["tags"]
    assert document["schemaVersion"] >= 39
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in document["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        targets = panel.get("targets", [])
        assert [t["refId"] for t in targets] == [chr(ord("A") + i) for i in range(len(targets))]
        for target in targets:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        if panel["type"] in {"timeseries", "stat", "heatmap"}:
            assert targets, f"{panel['title']}: a data panel without a query"


def test_latency_panels_ask_for_exemplars() -> None:
    """Every histogram quantile of a task's work (steps, queue wait, model calls) shows its exemplars."""
    for query in queries():
        if "histogram_quantile" in query.expr and "_bucket" in query.expr and "alerts.yaml" not in query.where:
            board, _, _ = query.where.partition(":")
            target = next(
                t for p in dashboards()[board]["panels"] for t in p.get("targets", []) if t["expr"] == query.expr
            )
            batch = "batch_size" in query.expr  # a size, not a duration
            assert target["exemplar"] or batch, query.where


def test_every_expression_parses_with_prometheus_grammar() -> None:
    """Prometheus' own PromQL grammar (the one its UI parses with) finds no error in any panel's or
    rule's expression, and the metrics it finds are the ones the checks below look up."""
    found = queries()
    parsed = parse_promql([q.promql for q in found])
    for query, result in zip(found, parsed, strict=True):
        assert result["errors"] == [], f"{query.where}: {query.expr!r}: {result['errors']}"
        assert set(result["metrics"]) == metric_names(query.expr), query.where


def test_every_query_names_a_metric_the_mesh_declares() -> None:
    """Each metric a panel, a variable or a rule reads is one mesh/telemetry/_metrics.py declares,
    under the name its exposition gives it (a counter's _total, a histogram's _bucket/_count/_sum)."""
    declared = _declared()
    used = {}
    for query in queries():
        names = metric_names(query.expr)
        assert names, f"{query.where}: reads no tidemesh metric"
        for name in names:
            used.setdefault(name, query.where)
    used.update({metric: where for where, metric in variable_metrics().items()})
    unknown = {name: where for name, where in used.items() if name not in declared}
    assert not unknown, f"not declared by the mesh: {unknown}"


def test_the_rules_are_well_formed_and_link_their_runbooks() -> None:
    """The rule file's structure as Prometheus loads it: named groups of alerts with an expression,
    a duration in Prometheus' syntax, a severity, a summary, a description and a runbook_url that
    names a page of docs/runbooks/."""
    document = rules()
    assert set(document) == {"groups"}
    names: list[str] = []
    wanted = {
        "TidemeshLanePastWaitBound",
        "TidemeshDeadLetterRate",
        "TidemeshInferenceBreakerOpen",
        "TidemeshNoCompatibleWorker",
        "TidemeshLeafCertificateNotRenewed",
        "TidemeshRootCertificateExpiring",
        "TidemeshRestarted",
        "TidemeshPolicyViolations",
    }
    for group in document["groups"]:
        assert set(group) == {"name", "rules"} and group["name"].startswith("tidemesh-")
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
            names.append(rule["alert"])
            assert re.fullmatch(r"Tidemesh[A-Za-z]+", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "for" in rule:
                assert _DURATION.fullmatch(rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"warning", "critical"}
            annotations = rule["annotations"]
            assert {"summary", "description", "runbook_url"} <= set(annotations), rule["alert"]
            runbook = annotations["runbook_url"]
            assert re.fullmatch(r"docs/runbooks/[a-z-]+\.md", runbook), runbook
            assert (ROOT / runbook).is_file(), f"{rule['alert']}: {runbook} does not exist"
            index = (ROOT / "docs" / "runbooks" / "README.md").read_text()
            assert f"({runbook.removeprefix('docs/runbooks/')})" in index, f"{runbook} is not in the runbooks' index"
    assert len(names) == len(set(names)), "alert names are unique"
    assert set(names) == wanted


def test_the_parser_finds_errors_and_metric_names() -> None:
    """The grammar check can fail: a broken expression is reported, and selectors are told from
    label names and functions."""
    broken, fine = parse_promql(["sum by (kind (rate(tidemesh_x_total[5m]))", 'rate(tidemesh_a_total{b="c"}[5m])'])
    assert broken["errors"]
    assert fine == {"metrics": ["tidemesh_a_total"], "errors": []}
