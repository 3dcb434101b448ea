"""Streams, consumers and KV buckets, declared in code and created idempotently at start."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import nats.js.api as api
import nats.js.errors
from nats.js import JetStreamContext

from mesh.errors import Unavailable
from mesh.fabric import _subjects as s
from mesh.fabric._deadletters import DLQ_PREFIX, DLQ_STREAM
from mesh.fabric._index import TASKS_PREFIX, TASKS_STREAM
from mesh.fabric._kinds import KINDS_BUCKET, SESSION_ENTRY_TTL_S, SESSIONS_BUCKET
from mesh.fabric._ordering import ORDER_KEYS_BUCKET, ORDERED_PREFIX, ORDERED_STREAM
from mesh.priority import CLASS_NAMES


@dataclass(frozen=True)
class Topology:
    """Tunables of the fabric. `replicas` is 3 on a JetStream cluster."""

    replicas: int = 1
    duplicate_window_s: float = 120.0
    events_max_age_s: float = 7 * 24 * 3600.0
    idempotency_ttl_s: float = 24 * 3600.0
    # A delivered item not acked within this window is redelivered (the worker died);
    # live workers extend it with in-progress acks while a step runs.
    ack_wait_s: float = 30.0
    max_deliver: int = 10
    max_ack_pending: int = 4096
    dlq_max_age_s: float = 30 * 24 * 3600.0
    quarantine_max_age_s: float = 30 * 24 * 3600.0
    quarantine_max_bytes: int = 256 * 1024 * 1024  # a flood of junk must not fill the disk
    # How long a worker's pull request stays open at the server.
    fetch_expiry_s: float = 2.0
    # A tenant partition's consumer that nobody pulled from for this long is removed by
    # the server (its queued items stay in the stream); workers re-create it on demand.
    tenant_consumer_idle_s: float = 3600.0
    # Tenant partitions (one durable consumer each, per pool and lane) the work stream may hold at
    # once; nats-server 2.15 caps a stream at 1 000 consumers unless the stream says otherwise,
    # which would leave the 1 001st active tenant's work unpulled.
    max_work_consumers: int = 100_000
    # An inference service re-registers its backends every few seconds; a dead one drops out.
    inference_entry_ttl_s: float = 15.0
    # Per-tenant concurrency caps: items of one tenant partition delivered and not yet acked
    # (buffered in a worker or running), across every worker — JetStream enforces it.
    tenant_concurrency: dict[str, int] = field(default_factory=dict)

    def _stream(self, name: str, prefix: str, **options: object) -> api.StreamConfig:
        """Every stream: file storage, the cluster's replicas, the shared duplicate window."""
        return api.StreamConfig(
            name=name,
            subjects=[f"{prefix}.>"],
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window_s,
            **options,  # type: ignore[arg-type]
        )

    def work_stream(self) -> api.StreamConfig:
        return self._stream(
            s.WORK_STREAM,
            s.WORK_PREFIX,
            retention=api.RetentionPolicy.WORK_QUEUE,
            allow_atomic=True,
            max_consumers=self.max_work_consumers,
        )

    def events_stream(self) -> api.StreamConfig:
        return self._stream(
            s.EVENTS_STREAM,
            s.EVENTS_PREFIX,
            retention=api.RetentionPolicy.LIMITS,
            max_age=self.events_max_age_s,
            allow_direct=True,
            allow_atomic=True,  # group commit (`_commit`): many appends, one fsync
        )

    def ordered_stream(self) -> api.StreamConfig:
        return self._stream(
            ORDERED_STREAM, ORDERED_PREFIX, retention=api.RetentionPolicy.LIMITS, max_age=self.events_max_age_s
        )

    def dlq_stream(self) -> api.StreamConfig:
        return self._stream(
            DLQ_STREAM,
            DLQ_PREFIX,
            retention=api.RetentionPolicy.LIMITS,
            max_age=self.dlq_max_age_s,
            max_msgs_per_subject=16,
        )

    def quarantine_stream(self) -> api.StreamConfig:
        return self._stream(
            s.QUARANTINE_STREAM,
            s.QUARANTINE_PREFIX,
            retention=api.RetentionPolicy.LIMITS,
            max_age=self.quarantine_max_age_s,
            max_bytes=self.quarantine_max_bytes,
        )

    def tasks_stream(self) -> api.StreamConfig:
        return self._stream(
            TASKS_STREAM,
            TASKS_PREFIX,
            retention=api.RetentionPolicy.LIMITS,
            max_age=self.events_max_age_s,
            max_msgs_per_subject=1,
            allow_atomic=True,
        )

    def work_consumer(self, pool: str, lane: str, tenant: str) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=s.consumer_name(pool, lane, tenant),
            filter_subject=s.tenant_filter(pool, lane, tenant),
            inactive_threshold=self.tenant_consumer_idle_s,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver,
            max_ack_pending=self.tenant_concurrency.get(tenant, self.max_ack_pending),
            num_replicas=self.replicas,
        )


async def ensure_topology(js: JetStreamContext, topology: Topology) -> None:
    """Create or update every stream, consumer and bucket. Safe to call from every process."""
    streams = (
        topology.work_stream(),
        topology.events_stream(),
        topology.ordered_stream(),
        topology.dlq_stream(),
        topology.tasks_stream(),
        topology.quarantine_stream(),
    )
    for config in streams:
        await _ensure_stream(js, config)
    await _drop_lane_consumers(js)
    await _ensure_bucket(js, s.IDEMPOTENCY_BUCKET, topology.idempotency_ttl_s, topology.replicas)
    await _ensure_bucket(js, s.WORKERS_BUCKET, 0, topology.replicas)
    await _ensure_bucket(js, ORDER_KEYS_BUCKET, 0, topology.replicas)
    await _ensure_bucket(js, s.INFERENCE_BUCKET, topology.inference_entry_ttl_s, topology.replicas)
    await _ensure_bucket(js, KINDS_BUCKET, 0, topology.replicas)
    await _ensure_bucket(js, SESSIONS_BUCKET, SESSION_ENTRY_TTL_S, topology.replicas)


TOPOLOGY_STREAMS = (
    s.WORK_STREAM,
    s.EVENTS_STREAM,
    ORDERED_STREAM,
    DLQ_STREAM,
    TASKS_STREAM,
    s.QUARANTINE_STREAM,
)
TOPOLOGY_BUCKETS = (
    s.IDEMPOTENCY_BUCKET,
    s.WORKERS_BUCKET,
    ORDER_KEYS_BUCKET,
    s.INFERENCE_BUCKET,
    KINDS_BUCKET,
    SESSIONS_BUCKET,
)


async def await_topology(js: JetStreamContext, timeout_s: float = 60.0, streams: tuple[str, ...] | None = None) -> None:
    """Wait until every stream and bucket exists (or just `streams`; a bucket's stream is
    ``KV_<bucket>``) — declared by the scheduler, the one process whose NATS user may create or
    update them (the others may only look)."""
    deadline = time.monotonic() + timeout_s
    missing = list(streams or (*TOPOLOGY_STREAMS, *(f"KV_{bucket}" for bucket in TOPOLOGY_BUCKETS)))
    delay = 0.05
    while missing:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.stream_info(missing[0])
            missing.pop(0)
            continue
        if time.monotonic() > deadline:
            raise Unavailable(f"stream {missing[0]} is not declared after {timeout_s:.0f}s: is the scheduler up?")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def ensure_work_consumer(js: JetStreamContext, topology: Topology, pool: str, lane: str, tenant: str) -> None:
    """Create (or keep) the consumer of one tenant partition. Idempotent."""
    await js.add_consumer(s.WORK_STREAM, topology.work_consumer(pool, lane, tenant))


async def _drop_lane_consumers(js: JetStreamContext) -> None:
    """Remove whole-lane consumers left by an older tidemesh: in a work-queue stream they
    would overlap the tenant partitions' consumers. Their undelivered items stay queued."""
    for pool in s.POOLS:
        for lane in CLASS_NAMES:
            try:
                await js.delete_consumer(s.WORK_STREAM, f"work-{pool}-{lane}")
            except nats.js.errors.NotFoundError:
                pass


async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


async def _ensure_bucket(js: JetStreamContext, name: str, ttl_s: float, replicas: int) -> None:
    try:
        await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        await js.create_key_value(api.KeyValueConfig(bucket=name, ttl=ttl_s or None, replicas=replicas, history=1))
