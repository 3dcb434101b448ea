"""Prometheus metrics of one process, served at ``/metrics`` by an aiohttp app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # aiohttp is imported by the processes that serve: a client (the CLI) never needs it
    from aiohttp import web


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


class Metrics:
    """Every metric tidemesh exports. Services touch only the ones they own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks_admitted = Counter(
            "tidemesh_tasks_admitted_total", "Tasks admitted", ["kind", "priority_class"], registry=r
        )
        self.tasks_deduplicated = Counter(
            "tidemesh_tasks_deduplicated_total", "Submits answered from the idempotency record", registry=r
        )
        self.tasks_rejected = Counter("tidemesh_tasks_rejected_total", "Submits rejected", ["reason"], registry=r)
        self.tasks_finished = Counter(
            "tidemesh_tasks_finished_total", "Tasks that reached a final state", ["kind", "state"], registry=r
        )
        self.step_seconds = Histogram(
            "tidemesh_step_seconds", "Pipeline step run time", ["kind", "step", "pool"], registry=r
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
            "Times the supervisor restarted this process, by why (exited, unresponsive, memory_cap)",
            ["component", "reason"],
            registry=r,
        )
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
            "Work items waiting in one tenant's partition of a lane",
            ["pool", "priority_class", "tenant"],
            registry=r,
        )
        self.tenant_queue_oldest_age = Gauge(
            "tidemesh_tenant_queue_oldest_age_seconds",
            "Age of the oldest waiting work item of one tenant's partition of a lane",
            ["pool", "priority_class", "tenant"],
            registry=r,
        )
        self.quarantined = Counter(
            "tidemesh_quarantined_total",
            "Messages set aside because they could not be parsed or validated",
            ["source", "classification"],
            registry=r,
        )
        self.in_flight = Gauge("tidemesh_in_flight", "Steps running in this process", registry=r)
        self.watchers = Gauge("tidemesh_watchers", "Open task event streams", registry=r)
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
        self.inference_requests = Counter(
            "tidemesh_inference_texts_total", "Texts embedded", ["model", "backend"], registry=r
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
        self.inference_batch = Histogram(
            "tidemesh_inference_batch_size",
            "Texts per model call",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.backend_model_statistics = BackendModelStatistics()
        r.register(self.backend_model_statistics)

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = Metrics()


def metrics_app(metrics: Metrics = METRICS, ready: Callable[[], Awaitable[bool]] | None = None) -> web.Application:
    """An aiohttp app serving ``/metrics`` and ``/healthz`` (200 when `ready()` says so)."""
    from aiohttp import web

    async def get_metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def get_health(_: web.Request) -> web.Response:
        ok = True if ready is None else await ready()
        return web.json_response({"status": "SERVING" if ok else "NOT_SERVING"}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_health)
    return app
