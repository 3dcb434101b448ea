"""Every metric tidemesh exports — the one declaration; services only record them — served at
``/metrics`` by an aiohttp app, in the Prometheus text format or, when the scraper asks for it
(``Accept: application/openmetrics-text``), in OpenMetrics with exemplars.

Names follow Prometheus' conventions (``tidemesh_`` prefix, the unit as a suffix, ``_total`` on
counters); label names follow OpenTelemetry's where one applies (``error_class`` for its
``error.type``, ``protocol`` for ``network.protocol.name``). Labels stay bounded: kinds, steps, pools,
classes and backends are the mesh's own, error classes outside the known set are ``other``, and a
``tenant`` label carries only the top N tenants by traffic (`TenantLabels`; N from
``TIDEMESH_METRICS_TOP_TENANTS``, default 20), the rest ``other``.

Histograms of work that runs in a task's trace (a step, a queue wait, a model call) carry an
exemplar: the trace and span id current when the value was observed, if that trace is sampled,
so a bucket on a dashboard leads to a trace that shows it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from mesh.telemetry._tenants import TenantLabels, top_tenants_from_env

if TYPE_CHECKING:  # aiohttp is imported by the processes that serve: a client (the CLI) never needs it
    from aiohttp import web


# Seconds. Steps run from milliseconds (echo) to minutes (a webhook's timeout); queue waits reach
# the batch class's bound (60 s by default) and past it; a model call is milliseconds to seconds.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# The task event streams a gateway serves, by how the client reached it.
PROTOCOLS = ("grpc", "grpc-web", "sse", "websocket")


def exemplar() -> dict[str, str] | None:
    """The current trace and span ids as an exemplar's labels, when that trace is sampled."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


class BackendModelStatistics(Collector):
    """Counters an inference backend keeps itself — Triton's per-model statistics, the figures
    behind its own nv_inference_* metrics — exported as last read (`mesh.v1.ModelStatistics`
    entries), so they reach Prometheus under mutual TLS, where Triton's metrics port is off."""

    _COUNTERS = (
        ("inferences", "Inferences (batch rows) a backend ran, by its own count", "inference_count", 1.0),
        ("executions", "Model executions (batches) a backend ran, by its own count", "execution_count", 1.0),
        ("failures", "Inference requests a backend's model failed, by its own count", "failure_count", 1.0),
        ("queue_seconds", "Time requests queued inside a backend, by its own count", "queue_ms_total", 1e-3),
        ("compute_seconds", "Time a backend's models computed, by its own count", "compute_ms_total", 1e-3),
    )

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], list[Any]] = {}

    def set(self, backend: str, address: str, statistics: Sequence[Any]) -> None:
        self._latest[backend, address] = list(statistics)

    def collect(self) -> Iterator[Metric]:
        for name, documentation, field, scale in self._COUNTERS:
            labels = ["backend", "address", "model"]
            family = CounterMetricFamily(f"tidemesh_backend_model_{name}", documentation, labels=labels)
            for (backend, address), statistics in self._latest.items():
                for entry in statistics:
                    family.add_metric([backend, address, entry.model], getattr(entry, field) * scale)
            yield family


class SampledGauge(Collector):
    """A gauge read when scraped from whoever `provide`d its samples (label values, value)."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self._documentation = documentation
        self._labels = list(labels)
        self._providers: list[Callable[[], Iterable[tuple[Sequence[str], float]]]] = []

    def provide(self, samples: Callable[[], Iterable[tuple[Sequence[str], float]]]) -> Callable[[], None]:
        """Read `samples` at every scrape, until the returned function is called."""
        self._providers.append(samples)
        return lambda: self._providers.remove(samples) if samples in self._providers else None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self._documentation, labels=self._labels)
        for samples in self._providers:
            for labels, value in samples():
                family.add_metric(list(labels), value)
        yield family


class CertificateExpiry(Collector):
    """When the certificates a process serves with expire (``notAfter``, Unix seconds), read from
    their files when scraped — a renewal rewrites the file, and the next scrape shows it."""

    name = "tidemesh_tls_certificate_expiry_timestamp_seconds"

    def __init__(self) -> None:
        self._files: dict[tuple[str, str], Path] = {}
        self._parsed: dict[Path, tuple[int, float]] = {}  # path → (mtime_ns, notAfter)

    def watch(self, path: Path, certificate: str, component: str) -> None:
        """Export `path`'s expiry as ``{certificate, component}`` (`certificate`: ``leaf`` or ``root``)."""
        self._files[certificate, component] = path

    def _not_after(self, path: Path) -> float | None:
        from cryptography import x509

        try:
            mtime = path.stat().st_mtime_ns
            cached = self._parsed.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            not_after = x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc
        except (OSError, ValueError):
            return None  # missing or mid-swap: absent from this scrape rather than wrong
        value = not_after.timestamp()
        self._parsed[path] = (mtime, value)
        return value

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            self.name,
            "When a TLS certificate this process presents or trusts expires (notAfter, Unix seconds)",
            labels=["certificate", "component"],
        )
        for (certificate, component), path in sorted(self._files.items()):
            value = self._not_after(path)
            if value is not None:
                family.add_metric([certificate, component], value)
        yield family


class Metrics:
    """Every metric tidemesh exports. Services touch only the ones they own."""

    def __init__(self, top_tenants: int | None = None) -> None:
        self.registry = CollectorRegistry()
        self.tenants = TenantLabels(top_tenants_from_env() if top_tenants is None else top_tenants)
        r = self.registry
        # --- admission (scheduler) -------------------------------------------------------------
        self.tasks_admitted = Counter(
            "tidemesh_tasks_admitted_total",
            "Tasks admitted (tenant: the top N by traffic, the rest 'other')",
            ["kind", "priority_class", "tenant"],
            registry=r,
        )
        self.tasks_deduplicated = Counter(
            "tidemesh_tasks_deduplicated_total", "Submits answered from the idempotency record", registry=r
        )
        self.tasks_rejected = Counter("tidemesh_tasks_rejected_total", "Submits rejected", ["reason"], registry=r)
        # --- RED of steps and tasks (workers) ----------------------------------------------------
        self.tasks_finished = Counter(
            "tidemesh_tasks_finished_total",
            "Tasks that reached a final state (tenant: the top N by traffic, the rest 'other')",
            ["kind", "state", "tenant"],
            registry=r,
        )
        self.step_duration = Histogram(
            "tidemesh_step_duration_seconds",
            "Run time of a pipeline step's attempts, whatever their outcome (the rate of steps is its _count)",
            ["kind", "step", "pool"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.step_errors = Counter(
            "tidemesh_step_errors_total",
            "Step attempts that failed, by error class (the step's own, 'other' for one the mesh does not know)",
            ["kind", "step", "pool", "error_class"],
            registry=r,
        )
        self.step_retries = Counter(
            "tidemesh_step_retries_total",
            "Failed step attempts that will run again, by the failure's classification",
            ["kind", "step", "pool", "classification"],
            registry=r,
        )
        self.dead_letters = Counter(
            "tidemesh_dead_letters_total",
            "Tasks dead-lettered, by classification (tenant: the top N by traffic, the rest 'other')",
            ["kind", "classification", "tenant"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "tidemesh_queue_wait_seconds",
            "Time a work item waited, from being enqueued to its step's first attempt starting",
            ["pool", "priority_class"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.queue_wait_bound = Gauge(
            "tidemesh_queue_wait_bound_seconds",
            "The wait bound of a priority class's lanes, as the workers dispatch by it",
            ["priority_class"],
            registry=r,
        )
        self.events_published = Counter(
            "tidemesh_events_published_total", "Task events written to JetStream", registry=r
        )
        self.broker_commits = Counter(
            "tidemesh_broker_commits_total",
            "Durable commits this process made (one fsync each): a plain publish, or an atomic batch",
            ["stream", "mode"],
            registry=r,
        )
        self.broker_messages = Counter(
            "tidemesh_broker_messages_total", "Messages this process stored durably", ["stream"], registry=r
        )
        self.redeliveries = Counter(
            "tidemesh_redeliveries_total", "Work items received more than once", ["pool"], registry=r
        )
        self.restarts = Counter(
            "tidemesh_restarts_total",
            "Times the supervisor restarted this process, by why (exited, unresponsive, memory_cap, gpu_memory_cap)",
            ["component", "reason"],
            registry=r,
        )
        self.last_restart = Gauge(
            "tidemesh_last_restart_timestamp_seconds",
            "When the supervisor last restarted this process (Unix seconds), by why",
            ["component", "reason"],
            registry=r,
        )
        # --- queues (scheduler) ------------------------------------------------------------------
        self.queue_pending = Gauge(
            "tidemesh_queue_pending", "Work items waiting", ["pool", "priority_class"], registry=r
        )
        self.queue_oldest_age = Gauge(
            "tidemesh_queue_oldest_age_seconds",
            "Age of the oldest waiting work item",
            ["pool", "priority_class"],
            registry=r,
        )
        self.tenant_queue_pending = Gauge(
            "tidemesh_tenant_queue_pending",
            "Work items waiting in one tenant's partition of a lane (the top N tenants, the rest summed as 'other')",
            ["pool", "priority_class", "tenant"],
            registry=r,
        )
        self.tenant_queue_oldest_age = Gauge(
            "tidemesh_tenant_queue_oldest_age_seconds",
            "Age of the oldest waiting work item of one tenant's partition of a lane ('other': the oldest of the rest)",
            ["pool", "priority_class", "tenant"],
            registry=r,
        )
        self.scale_desired_replicas = Gauge(
            "tidemesh_scale_desired_replicas",
            "Workers the scheduler recommends for a pool (ScaleRecommendation.desired_replicas: its depth, oldest "
            "item's age and measured drain rate); what a HorizontalPodAutoscaler targets",
            ["pool"],
            registry=r,
        )
        self.queue_without_worker = Gauge(
            "tidemesh_queue_without_worker",
            "Work items waiting in a user kind's pool that no attached worker can read (no compatible worker)",
            ["pool"],
            registry=r,
        )
        self.quarantined = Counter(
            "tidemesh_quarantined_total",
            "Messages set aside because they could not be parsed or validated",
            ["source", "classification"],
            registry=r,
        )
        self.in_flight = Gauge("tidemesh_in_flight", "Steps running in this process", registry=r)
        # --- event streams (gateway) -------------------------------------------------------------
        self.watchers = Gauge("tidemesh_watchers", "Open task event streams", registry=r)
        self.streams_opened = Counter(
            "tidemesh_streams_opened_total",
            "Task event streams opened, by protocol (grpc, grpc-web, sse, websocket)",
            ["protocol"],
            registry=r,
        )
        self.streams_open = Gauge(
            "tidemesh_streams_open", "Task event streams open now, by protocol", ["protocol"], registry=r
        )
        self.stream_resumes = Counter(
            "tidemesh_stream_resumes_total",
            "Task event streams that resumed after a sequence number (after_sequence, Last-Event-ID, after)",
            ["protocol"],
            registry=r,
        )
        self.watch_recovered = Counter(
            "tidemesh_watch_recovered_total",
            "Watched tasks whose store was ahead of what live delivery had brought (found by reconciliation)",
            registry=r,
        )
        self.watch_malformed = Counter(
            "tidemesh_watch_malformed_total",
            "Live task event messages a gateway skipped because they did not parse or named another task",
            ["prefix"],
            registry=r,
        )
        # Counted where the policies are evaluated against the running mesh (mesh.policy.PolicyWatch).
        self.policy_violations = Counter(
            "tidemesh_policy_violations_total",
            "Policy violations the running mesh was found in, each counted once when it appears, by rule, "
            "severity and mode (audit, warn, enforce)",
            ["rule", "severity", "mode"],
            registry=r,
        )

        # --- inference ---------------------------------------------------------------------------
        self.inference_requests = Counter(
            "tidemesh_inference_texts_total", "Texts embedded", ["model", "backend"], registry=r
        )
        self.inference_duration = Histogram(
            "tidemesh_inference_duration_seconds",
            "Time a backend took for one model call (a batch), fallbacks not included",
            ["model", "backend"],
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.inference_batch = Histogram(
            "tidemesh_inference_batch_size",
            "Texts (or requests) per model call a backend ran",
            ["model", "backend"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_failures = Counter(
            "tidemesh_inference_failures_total",
            "Model calls a backend failed (the call then falls back, if another backend can run it)",
            ["model", "backend"],
            registry=r,
        )
        self.inference_fallbacks = Counter(
            "tidemesh_inference_fallbacks_total",
            "Model calls moved to another backend after one failed",
            ["model", "from_backend", "to_backend"],
            registry=r,
        )
        self.inference_spills = Counter(
            "tidemesh_inference_spills_total",
            "Model calls sent to a fallback pool because the preferred one was full past the class's wait bound",
            ["model", "from_backend", "to_backend", "priority_class"],
            registry=r,
        )
        self.inference_refused = Counter(
            "tidemesh_inference_refused_total",
            "Model calls refused (RESOURCE_EXHAUSTED) because every backend's queue was past its bound",
            ["model", "backend", "priority_class"],
            registry=r,
        )
        device = ["kind", "index", "name"]
        self.device_utilization = Gauge(
            "tidemesh_device_utilization_ratio", "A GPU's (or the host CPU's) utilization, 0..1", device, registry=r
        )
        self.device_memory_used = Gauge("tidemesh_device_memory_used_bytes", "Device memory in use", device, registry=r)
        self.device_memory_total = Gauge("tidemesh_device_memory_total_bytes", "Device memory", device, registry=r)
        self.device_power = Gauge("tidemesh_device_power_watts", "Device power draw (0: no sensor)", device, registry=r)
        self.device_temperature = Gauge(
            "tidemesh_device_temperature_celsius", "Device temperature (0: no sensor)", device, registry=r
        )
        self.inference_breaker_trips = Counter(
            "tidemesh_inference_breaker_trips_total", "Times a backend's circuit opened", ["backend"], registry=r
        )
        self.inference_breaker_open = SampledGauge(
            "tidemesh_inference_breaker_open",
            "1 while a backend's circuit is open or half-open (calls kept from it), 0 while closed",
            ["backend"],
        )
        r.register(self.inference_breaker_open)
        self.backend_model_statistics = BackendModelStatistics()
        r.register(self.backend_model_statistics)
        # --- the process ---------------------------------------------------------------------------
        self.certificates = CertificateExpiry()
        r.register(self.certificates)

    # --- recording, for the hot paths: label values computed once, an exemplar where it helps ------

    def tenant(self, tenant: str) -> str:
        """`tenant` as a label may carry it (counted as its traffic)."""
        return self.tenants.label(tenant)

    def admitted(self, kind: str, priority_class: str, tenant: str) -> None:
        self.tenants.labels(self.tasks_admitted, kind, priority_class, tenant).inc()

    def finished(self, kind: str, state: str, tenant: str) -> None:
        self.tenants.labels(self.tasks_finished, kind, state, tenant).inc()

    def step_ran(self, kind: str, step: str, pool: str, elapsed_s: float) -> None:
        self.step_duration.labels(kind, step, pool).observe(elapsed_s, exemplar())

    def step_failed(self, kind: str, step: str, pool: str, error_class: str, classification: str, retry: bool) -> None:
        self.step_errors.labels(kind, step, pool, error_class).inc()
        if retry:
            self.step_retries.labels(kind, step, pool, classification).inc()

    def dead_lettered(self, kind: str, classification: str, tenant: str) -> None:
        self.tenants.labels(self.dead_letters, kind, classification, tenant).inc(exemplar=exemplar())
        self.finished(kind, "DEAD_LETTERED", tenant)

    def waited(self, pool: str, priority_class: str, wait_s: float) -> None:
        self.queue_wait.labels(pool, priority_class).observe(max(0.0, wait_s), exemplar())

    def inferred(self, model: str, backend: str, size: int, elapsed_s: float) -> None:
        sample = exemplar()
        self.inference_duration.labels(model, backend).observe(elapsed_s, sample)
        self.inference_batch.labels(model, backend).observe(size, sample)

    def stream_opened(self, protocol: str, resumed: bool) -> None:
        self.streams_opened.labels(protocol).inc()
        self.streams_open.labels(protocol).inc()
        if resumed:
            self.stream_resumes.labels(protocol).inc()

    def stream_closed(self, protocol: str) -> None:
        self.streams_open.labels(protocol).dec()

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition the `accept` header asks for (OpenMetrics, with exemplars, or the
        Prometheus text format) and its content type."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


METRICS = Metrics()


def metrics_app(metrics: Metrics = METRICS, ready: Callable[[], Awaitable[bool]] | None = None) -> web.Application:
    """An aiohttp app serving ``/metrics`` and ``/healthz`` (200 when `ready()` says so)."""
    from aiohttp import web

    async def get_metrics(request: web.Request) -> web.Response:
        body, content_type = metrics.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def get_health(_: web.Request) -> web.Response:
        ok = True if ready is None else await ready()
        return web.json_response({"status": "SERVING" if ok else "NOT_SERVING"}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_health)
    return app
