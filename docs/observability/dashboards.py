"""The mesh's Grafana dashboards, as code: ``python docs/observability/dashboards.py`` writes
``docs/observability/dashboards/*.json`` (``make dashboards``; a test fails when they drift).

Built with grafana-foundation-sdk (Grafana's own typed builders, generated from its schemas;
a test/dev dependency only). Four dashboards over the metrics in ``mesh/telemetry/_metrics.py``:
the mesh at a glance, one pool, one tenant, and inference. Every query reads a Prometheus data
source picked with the ``datasource`` variable; latency panels ask for exemplars, so a point on
them opens the trace of a task that took that long.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, stat, text, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DashboardCursorSync,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
TAGS = ["tidemesh"]


def query(expr: str, legend: str = "", *, exemplar: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).datasource(DATASOURCE).range()
    if legend:
        q = q.legend_format(legend)
    return q.exemplar(exemplar)


def graph(title: str, unit: str, *queries: prometheus.Dataquery, description: str = "") -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(8).span(12)
    if description:
        panel = panel.description(description)
    for q in queries:
        panel = panel.with_target(q)
    return panel


def figure(title: str, unit: str, expr: str, description: str = "") -> stat.Panel:
    panel = stat.Panel().title(title).unit(unit).datasource(DATASOURCE).height(4).span(6).with_target(query(expr))
    return panel.description(description) if description else panel


def quantiles(metric: str, by: str, where: str = "", legend: str = "") -> list[prometheus.Dataquery]:
    """p50 and p95 of a histogram `metric`, summed by `by`, with exemplars."""
    selector = f"{metric}_bucket{{{where}}}" if where else f"{metric}_bucket"
    by_le = f"{by}, le" if by else "le"
    return [
        query(
            f"histogram_quantile({q}, sum by ({by_le}) (rate({selector}[{RATE}])))",
            f"p{int(q * 100)} {legend}".strip(),
            exemplar=True,
        )
        for q in (0.5, 0.95)
    ]


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name: str, metric: str, label: str, title: str, *, multi: bool = True) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(title)
        .datasource(DATASOURCE)
        .query(f"label_values({metric}, {label})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )


def base(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(datasource_variable())
    )


def overview() -> dashboard.Dashboard:
    d = base("tidemesh-overview", "tidemesh / overview", "The whole mesh: tasks, steps (RED), queues, streams, health")
    d = (
        d.with_row(dashboard.Row("Tasks"))
        .with_panel(figure("Admitted", "reqps", f"sum(rate(tidemesh_tasks_admitted_total[{RATE}]))"))
        .with_panel(
            figure("Succeeded", "reqps", f'sum(rate(tidemesh_tasks_finished_total{{state="SUCCEEDED"}}[{RATE}]))')
        )
        .with_panel(figure("Dead-lettered", "reqps", f"sum(rate(tidemesh_dead_letters_total[{RATE}]))"))
        .with_panel(figure("Rejected at admission", "reqps", f"sum(rate(tidemesh_tasks_rejected_total[{RATE}]))"))
        .with_panel(
            graph(
                "Finished by state",
                "reqps",
                query(f"sum by (state) (rate(tidemesh_tasks_finished_total[{RATE}]))", "{{state}}"),
            )
        )
        .with_panel(
            graph(
                "Dead letters by classification",
                "reqps",
                query(
                    f"sum by (classification) (rate(tidemesh_dead_letters_total[{RATE}]))",
                    "{{classification}}",
                    exemplar=True,
                ),
                description="Each classification has a runbook: docs/runbooks/.",
            )
        )
    )
    d = (
        d.with_row(dashboard.Row("Steps: rate, errors, duration"))
        .with_panel(
            graph(
                "Step attempts by kind",
                "reqps",
                query(f"sum by (kind) (rate(tidemesh_step_duration_seconds_count[{RATE}]))", "{{kind}}"),
            )
        )
        .with_panel(
            graph(
                "Step error ratio by kind",
                "percentunit",
                query(
                    f"sum by (kind) (rate(tidemesh_step_errors_total[{RATE}]))"
                    f" / sum by (kind) (rate(tidemesh_step_duration_seconds_count[{RATE}]))",
                    "{{kind}}",
                ),
            )
        )
        .with_panel(graph("Step duration (all kinds)", "s", *quantiles("tidemesh_step_duration_seconds", "")))
        .with_panel(
            graph(
                "Retries by classification",
                "reqps",
                query(f"sum by (classification) (rate(tidemesh_step_retries_total[{RATE}]))", "{{classification}}"),
            )
        )
    )
    d = (
        d.with_row(dashboard.Row("Queues"))
        .with_panel(
            graph(
                "Waiting by pool and class",
                "short",
                query("sum by (pool, priority_class) (tidemesh_queue_pending)", "{{pool}} {{priority_class}}"),
            )
        )
        .with_panel(
            graph(
                "Oldest waiting item vs its class's bound",
                "s",
                query(
                    "max by (pool, priority_class) (tidemesh_queue_oldest_age_seconds)", "{{pool}} {{priority_class}}"
                ),
                query("max by (priority_class) (tidemesh_queue_wait_bound_seconds)", "bound {{priority_class}}"),
            )
        )
        .with_panel(
            graph(
                "Queue wait p95 by class",
                "s",
                query(
                    "histogram_quantile(0.95, sum by (priority_class, le)"
                    f" (rate(tidemesh_queue_wait_seconds_bucket[{RATE}])))",
                    "{{priority_class}}",
                    exemplar=True,
                ),
            )
        )
        .with_panel(
            graph(
                "Work no attached worker can read",
                "short",
                query("max by (pool) (tidemesh_queue_without_worker)", "{{pool}}"),
            )
        )
    )
    d = (
        d.with_row(dashboard.Row("Streams and health"))
        .with_panel(
            graph(
                "Event streams open by protocol",
                "short",
                query("sum by (protocol) (tidemesh_streams_open)", "{{protocol}}"),
                query(f"sum by (protocol) (rate(tidemesh_stream_resumes_total[{RATE}]))", "resumes/s {{protocol}}"),
            )
        )
        .with_panel(
            graph(
                "Restarts by component and reason",
                "short",
                query("sum by (component, reason) (increase(tidemesh_restarts_total[1h]))", "{{component}} {{reason}}"),
            )
        )
        .with_panel(
            graph(
                "Inference circuits open",
                "short",
                query("max by (backend) (tidemesh_inference_breaker_open)", "{{backend}}"),
            )
        )
        .with_panel(
            graph(
                "TLS certificates: time left",
                "s",
                query(
                    "min by (certificate, component) (tidemesh_tls_certificate_expiry_timestamp_seconds) - time()",
                    "{{certificate}} {{component}}",
                ),
                description="Leaves live 24 h and are renewed at half-life; the root lives 10 years.",
            )
        )
    )
    return d


def pool() -> dashboard.Dashboard:
    d = base("tidemesh-pool", "tidemesh / pool", "One worker pool: its steps' RED, its lanes, its queue waits")
    d = d.with_variable(label_variable("pool", "tidemesh_step_duration_seconds_count", "pool", "Pool", multi=False))
    where = 'pool="$pool"'
    d = (
        d.with_row(dashboard.Row("Steps of $pool"))
        .with_panel(
            graph(
                "Attempts by step",
                "reqps",
                query(
                    f"sum by (kind, step) (rate(tidemesh_step_duration_seconds_count{{{where}}}[{RATE}]))",
                    "{{kind}}/{{step}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Errors by class",
                "reqps",
                query(f"sum by (error_class) (rate(tidemesh_step_errors_total{{{where}}}[{RATE}]))", "{{error_class}}"),
            )
        )
        .with_panel(
            graph("Step duration", "s", *quantiles("tidemesh_step_duration_seconds", "step", where, "{{step}}"))
        )
        .with_panel(
            heatmap.Panel()
            .title("Step duration distribution")
            .datasource(DATASOURCE)
            .height(8)
            .span(12)
            .with_target(
                query(
                    f"sum by (le) (increase(tidemesh_step_duration_seconds_bucket{{{where}}}[{RATE}]))", exemplar=True
                )
                .format(PromQueryFormat.HEATMAP)
                .legend_format("{{le}}")
            )
        )
        .with_panel(
            graph(
                "Retries by classification",
                "reqps",
                query(
                    f"sum by (classification) (rate(tidemesh_step_retries_total{{{where}}}[{RATE}]))",
                    "{{classification}}",
                ),
                query(f"sum(rate(tidemesh_redeliveries_total{{{where}}}[{RATE}]))", "redeliveries"),
            )
        )
    )
    d = (
        d.with_row(dashboard.Row("Lanes of $pool"))
        .with_panel(
            graph(
                "Waiting by class",
                "short",
                query(f"sum by (priority_class) (tidemesh_queue_pending{{{where}}})", "{{priority_class}}"),
            )
        )
        .with_panel(
            graph(
                "Oldest waiting item vs its class's bound",
                "s",
                query(f"max by (priority_class) (tidemesh_queue_oldest_age_seconds{{{where}}})", "{{priority_class}}"),
                query("max by (priority_class) (tidemesh_queue_wait_bound_seconds)", "bound {{priority_class}}"),
            )
        )
        .with_panel(
            graph(
                "Queue wait by class",
                "s",
                *quantiles("tidemesh_queue_wait_seconds", "priority_class", where, "{{priority_class}}"),
            )
        )
        .with_panel(
            graph(
                "Busiest tenants' partitions",
                "short",
                query(f"topk(10, sum by (tenant) (tidemesh_tenant_queue_pending{{{where}}}))", "{{tenant}}"),
            )
        )
    )
    return d


def tenant() -> dashboard.Dashboard:
    d = base(
        "tidemesh-tenant",
        "tidemesh / tenant",
        "One tenant's tasks. Tenant labels carry the top N tenants by traffic; the rest are 'other'.",
    )
    d = d.with_variable(label_variable("tenant", "tidemesh_tasks_admitted_total", "tenant", "Tenant"))
    where = 'tenant=~"$tenant"'
    d = (
        d.with_row(dashboard.Row("Tasks of $tenant"))
        .with_panel(
            text.Panel()
            .title("About tenant labels")
            .height(4)
            .span(24)
            .content(
                "A `tenant` label names the N busiest tenants of each process (`TIDEMESH_METRICS_TOP_TENANTS`,"
                " default 20); every other tenant is counted as `other`. A tenant missing here sends too little"
                " traffic to have its own series: `tidemesh list --tenant T` shows its tasks."
            )
        )
        .with_panel(
            figure(
                "Share of admissions",
                "percentunit",
                f"sum(rate(tidemesh_tasks_admitted_total{{{where}}}[{RATE}]))"
                f" / sum(rate(tidemesh_tasks_admitted_total[{RATE}]))",
            )
        )
        .with_panel(
            graph(
                "Admitted by kind",
                "reqps",
                query(f"sum by (kind) (rate(tidemesh_tasks_admitted_total{{{where}}}[{RATE}]))", "{{kind}}"),
            )
        )
        .with_panel(
            graph(
                "Finished by state",
                "reqps",
                query(f"sum by (state) (rate(tidemesh_tasks_finished_total{{{where}}}[{RATE}]))", "{{state}}"),
            )
        )
        .with_panel(
            graph(
                "Dead letters by classification",
                "reqps",
                query(
                    f"sum by (classification) (rate(tidemesh_dead_letters_total{{{where}}}[{RATE}]))",
                    "{{classification}}",
                    exemplar=True,
                ),
            )
        )
        .with_panel(
            graph(
                "Waiting by pool and class",
                "short",
                query(
                    f"sum by (pool, priority_class) (tidemesh_tenant_queue_pending{{{where}}})",
                    "{{pool}} {{priority_class}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Oldest waiting item by pool and class",
                "s",
                query(
                    f"max by (pool, priority_class) (tidemesh_tenant_queue_oldest_age_seconds{{{where}}})",
                    "{{pool}} {{priority_class}}",
                ),
            )
        )
    )
    return d


def inference() -> dashboard.Dashboard:
    d = base("tidemesh-inference", "tidemesh / inference", "Model calls per backend and model: rate, latency, batching")
    d = d.with_variable(label_variable("model", "tidemesh_inference_duration_seconds_count", "model", "Model"))
    d = d.with_variable(label_variable("backend", "tidemesh_inference_duration_seconds_count", "backend", "Backend"))
    where = 'model=~"$model", backend=~"$backend"'
    d = (
        d.with_row(dashboard.Row("Calls"))
        .with_panel(
            graph(
                "Model calls by backend",
                "reqps",
                query(
                    f"sum by (backend, model) (rate(tidemesh_inference_duration_seconds_count{{{where}}}[{RATE}]))",
                    "{{backend}} {{model}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Texts embedded by backend",
                "reqps",
                query(
                    f"sum by (backend) (rate(tidemesh_inference_texts_total{{{where}}}[{RATE}]))",
                    "{{backend}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Call latency by backend",
                "s",
                *quantiles("tidemesh_inference_duration_seconds", "backend", where, "{{backend}}"),
            )
        )
        .with_panel(
            graph(
                "Batch size by backend",
                "short",
                query(
                    "histogram_quantile(0.95, sum by (backend, le)"
                    f" (rate(tidemesh_inference_batch_size_bucket{{{where}}}[{RATE}])))",
                    "p95 {{backend}}",
                ),
                query(
                    f"sum by (backend) (rate(tidemesh_inference_batch_size_sum{{{where}}}[{RATE}]))"
                    f" / sum by (backend) (rate(tidemesh_inference_batch_size_count{{{where}}}[{RATE}]))",
                    "mean {{backend}}",
                ),
            )
        )
    )
    d = (
        d.with_row(dashboard.Row("Trouble"))
        .with_panel(
            graph(
                "Failures, fallbacks, spills, refusals",
                "reqps",
                query(
                    f"sum by (backend) (rate(tidemesh_inference_failures_total{{{where}}}[{RATE}]))",
                    "failed {{backend}}",
                ),
                query(
                    "sum by (from_backend, to_backend)"
                    f' (rate(tidemesh_inference_fallbacks_total{{model=~"$model"}}[{RATE}]))',
                    "fallback {{from_backend}} → {{to_backend}}",
                ),
                query(
                    "sum by (from_backend, to_backend)"
                    f' (rate(tidemesh_inference_spills_total{{model=~"$model"}}[{RATE}]))',
                    "spill {{from_backend}} → {{to_backend}}",
                ),
                query(
                    f"sum by (backend) (rate(tidemesh_inference_refused_total{{{where}}}[{RATE}]))",
                    "refused {{backend}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Circuit open",
                "short",
                query('max by (backend) (tidemesh_inference_breaker_open{backend=~"$backend"})', "{{backend}}"),
                query(
                    "sum by (backend)"
                    f' (increase(tidemesh_inference_breaker_trips_total{{backend=~"$backend"}}[{RATE}]))',
                    "trips {{backend}}",
                ),
            )
        )
    )
    d = (
        d.with_row(dashboard.Row("Backends and devices"))
        .with_panel(
            graph(
                "Time inside the backend per execution",
                "s",
                query(
                    f'sum by (backend) (rate(tidemesh_backend_model_queue_seconds_total{{model=~"$model"}}[{RATE}]))'
                    f' / sum by (backend) (rate(tidemesh_backend_model_executions_total{{model=~"$model"}}[{RATE}]))',
                    "queued {{backend}}",
                ),
                query(
                    f'sum by (backend) (rate(tidemesh_backend_model_compute_seconds_total{{model=~"$model"}}[{RATE}]))'
                    f' / sum by (backend) (rate(tidemesh_backend_model_executions_total{{model=~"$model"}}[{RATE}]))',
                    "computing {{backend}}",
                ),
                description="From the backend's own statistics (Triton's per-model counters).",
            )
        )
        .with_panel(
            graph(
                "Device utilization",
                "percentunit",
                query("max by (kind, index, name) (tidemesh_device_utilization_ratio)", "{{kind}} {{index}} {{name}}"),
            )
        )
        .with_panel(
            graph(
                "Device memory",
                "bytes",
                query("max by (kind, index) (tidemesh_device_memory_used_bytes)", "used {{kind}} {{index}}"),
                query("max by (kind, index) (tidemesh_device_memory_total_bytes)", "total {{kind}} {{index}}"),
            )
        )
        .with_panel(
            graph(
                "Device power and temperature",
                "short",
                query("max by (kind, index) (tidemesh_device_power_watts)", "W {{kind}} {{index}}"),
                query("max by (kind, index) (tidemesh_device_temperature_celsius)", "°C {{kind}} {{index}}"),
            )
        )
    )
    return d


DASHBOARDS = {"overview": overview, "pool": pool, "tenant": tenant, "inference": inference}


def numbered(board: Dashboard) -> Dashboard:
    """Panel ids 1, 2, … and query refIds A, B, … in each panel (Grafana keys panels and queries by them)."""
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
        for index, target in enumerate(getattr(panel, "targets", None) or []):
            target.ref_id = chr(ord("A") + index)
    return board


def rendered() -> dict[str, str]:
    """Each dashboard's JSON document as written to ``dashboards/<name>.json``."""
    return {
        name: json.dumps(numbered(build().build()), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)
        + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    OUT.mkdir(exist_ok=True)
    stale = []
    for name, document in rendered().items():
        path = OUT / f"{name}.json"
        if check:
            if not path.exists() or path.read_text() != document:
                stale.append(str(path))
        else:
            path.write_text(document)
    if stale:
        print(f"stale: {', '.join(stale)} (run: python docs/observability/dashboards.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
