"""What the dashboards and alert rules under docs/observability/ ask of Prometheus: every PromQL
expression they hold, the metric names in it, and the series names a metrics exposition offers —
for the unit test (against the declaration) and the integration test (against a running mesh)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.node_env import ensure_packages, node_binary

ROOT = Path(__file__).resolve().parent.parent
OBSERVABILITY = ROOT / "docs" / "observability"
DASHBOARDS = OBSERVABILITY / "dashboards"
RULES = OBSERVABILITY / "alerts.yaml"
PROMQL_PACKAGE = Path(__file__).resolve().parent / "unit" / "promql"

# Grafana's variables, replaced by values of the same kind before an expression is parsed.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
_VARIABLE = re.compile(r"\$\{?[a-z_]+\}?")
_METRIC = re.compile(r"\btidemesh_[a-z0-9_]+\b")
_LABEL_VALUES = re.compile(r"label_values\((\w+),\s*\w+\)")


@dataclass(frozen=True)
class Query:
    where: str  # "overview.json: Step error ratio by kind [A]", "alerts.yaml: TidemeshDeadLetterRate"
    expr: str

    @property
    def promql(self) -> str:
        """The expression with Grafana's variables replaced, as Prometheus would receive it."""
        text = self.expr
        for name, value in _GRAFANA_VARIABLES.items():
            text = text.replace(name, value)
        return _VARIABLE.sub("x", text)


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def queries() -> list[Query]:
    """Every PromQL expression of every dashboard panel and alert rule."""
    found = []
    for name, board in dashboards().items():
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                found.append(Query(f"{name}: {panel.get('title')} [{target.get('refId')}]", target["expr"]))
    for group in rules()["groups"]:
        for rule in group["rules"]:
            found.append(Query(f"{RULES.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


def variable_metrics() -> dict[str, str]:
    """The metric each dashboard variable's ``label_values(metric, label)`` reads, by where."""
    found = {}
    for name, board in dashboards().items():
        for variable in board.get("templating", {}).get("list", []):
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else query or ""
            match = _LABEL_VALUES.search(text)
            if match:
                found[f"{name}: ${variable['name']}"] = match.group(1)
    return found


def metric_names(expr: str) -> set[str]:
    """tidemesh metric names in `expr` (by their prefix: every metric of the mesh has it)."""
    return set(_METRIC.findall(expr))


def parse_promql(expressions: list[str]) -> list[dict[str, list[str]]]:
    """Each expression parsed with Prometheus' own PromQL grammar (@prometheus-io/lezer-promql, in
    Node): ``{"metrics": [...], "errors": [...]}``. Skips the calling test without node."""
    node = node_binary()
    ensure_packages(PROMQL_PACKAGE)
    done = subprocess.run(
        [node, str(PROMQL_PACKAGE / "parse.mjs")],
        input=json.dumps(expressions),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=PROMQL_PACKAGE,
    )
    parsed: list[dict[str, list[str]]] = json.loads(done.stdout)
    return parsed


def series_names(families: Iterable[tuple[str, str]]) -> set[str]:
    """The sample names an exposition's families (name, type) offer a query: ``x_total`` of a
    counter, ``x_bucket``/``_count``/``_sum`` of a histogram, the name of a gauge."""
    names = set()
    for name, kind in families:
        if kind == "counter":
            names |= {f"{name}_total", f"{name}_created"}
        elif kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created"}
        else:
            names.add(name)
    return names
