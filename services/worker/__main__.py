"""``python -m services.worker`` — pulls work for its pools and runs pipeline steps."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from mesh.fabric import (
    CANCEL_PREFIX,
    KINDS_BUCKET,
    ORDER_KEYS_BUCKET,
    POOLS,
    SESSIONS_BUCKET,
    EventLog,
    KeySequencer,
    KindStore,
    Topology,
    WorkQueue,
    await_topology,
)
from mesh.priority import CLASS_NAMES
from mesh.replicas import InferenceReplicas
from mesh.rpc import channel
from mesh.runtime import ServiceHost, announce_restart, base_parser, connect_nats, run_service
from mesh.schemas import SchemaRegistry
from mesh.tasks import new_task_id
from mesh.telemetry import METRICS, get_logger
from mesh.v1 import scheduler_pb2_grpc, session_pb2_grpc, status_pb2, worker_pb2_grpc
from services.worker._children import ChildTasks
from services.worker._dispatch import Dispatcher
from services.worker._fairshare import parse_per_tenant
from services.worker._liveness import Liveness
from services.worker._load import pool_slots
from services.worker._priority import WaitBounds
from services.worker._remote import SessionHost, SessionService
from services.worker._runner import Runner, check_builtin_handlers
from services.worker._slots import SlotLimits
from services.worker._webhook import WebhookClient

log = get_logger("services.worker")


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}-{new_task_id()[-6:]}"
    pools = [p for p in args.pools.split(",") if p] if args.pools != "all" else list(POOLS)
    unknown = set(pools) - set(POOLS)
    if unknown:
        raise SystemExit(f"unknown pools: {', '.join(sorted(unknown))} (known: {', '.join(POOLS)})")
    check_builtin_handlers()
    try:
        SlotLimits.of(args.concurrency, args.reserve, args.guaranteed_slots)
    except ValueError as exc:
        raise SystemExit(f"--concurrency/--reserve/--guaranteed-slots: {exc}") from None
    topology = Topology(
        replicas=args.replicas,
        ack_wait_s=args.ack_wait,
        tenant_concurrency=_per_tenant("--tenant-concurrency", args.tenant_concurrency, int, "N"),
    )
    bounds = _wait_bounds(args.wait_bounds)
    for name, bound_s in (
        ("interactive", bounds.interactive_s),
        ("standard", bounds.standard_s),
        ("batch", bounds.batch_s),
    ):
        METRICS.queue_wait_bound.labels(name).set(bound_s)  # what an alert compares each lane's oldest age with
    weights = _per_tenant("--tenant-weights", args.tenant_weights, float, "WEIGHT")
    # One exit stack: what starts later stops earlier (the callbacks run in reverse).
    async with contextlib.AsyncExitStack() as stack:
        nc = await connect_nats(args, f"tidemesh-worker-{worker_id}")
        stack.push_async_callback(nc.drain)
        await announce_restart(nc, "worker", worker_id)  # why the supervisor restarted it, if it did
        scheduler_channel = channel(args.scheduler, args.transport) if args.scheduler else None
        if scheduler_channel is not None:
            stack.push_async_callback(scheduler_channel.close)
        js = nc.jetstream(timeout=5.0)
        await await_topology(js)  # the scheduler declares it; this user may only look
        inference = None
        if args.inference:  # every replica registered in tm_inference, starting from the ones given
            inference = await InferenceReplicas.on_fabric(args.inference, args.transport, js)
            stack.push_async_callback(inference.close)
        events = await stack.enter_async_context(EventLog(js, nc))
        sequencer = KeySequencer(js, await js.key_value(ORDER_KEYS_BUCKET), WorkQueue(nc, js), events)
        scheduler = scheduler_pb2_grpc.SchedulerServiceStub(scheduler_channel) if scheduler_channel else None
        children = ChildTasks(nc, js, events, scheduler)
        webhooks = WebhookClient(tuple(p for p in args.webhook_allow.split(",") if p))
        stack.push_async_callback(webhooks.close)
        runner = Runner.on_fabric(
            js, events, worker_id, inference, args.ack_wait, sequencer=sequencer, children=children, webhooks=webhooks
        )
        dispatcher = Dispatcher(
            nc,
            js,
            events,
            runner,
            pools,
            args.concurrency,
            reserve=args.reserve,
            guaranteed=args.guaranteed_slots,
            bounds=bounds,
            topology=topology,
            tenant_weights=weights,
            grace_s=args.grace,
        )
        host = ServiceHost("worker", args.grpc, args.http, grace_s=args.grace, transport=args.transport)
        sessions = await _sessions(args, stack, host, nc, js, events, topology, sequencer, children)

        async def on_cancel(msg):  # type: ignore[no-untyped-def]
            task_id = msg.subject[len(CANCEL_PREFIX) + 1 :]
            dispatcher.cancel(task_id)
            if sessions is not None:
                sessions.cancel(task_id)

        await nc.subscribe(f"{CANCEL_PREFIX}.>", cb=on_cancel)
        await stack.enter_async_context(host)
        await dispatcher.start()
        stack.push_async_callback(_drain, dispatcher, sessions, args.grace)
        host.write_ready_file(Path(args.ready_file) if args.ready_file else None)
        if scheduler_channel is not None:
            status = status_pb2.WorkerStatus(
                worker_id=worker_id,
                pools=pools,
                concurrency=args.concurrency,
                host=socket.gethostname(),
                pid=os.getpid(),
            )
            await stack.enter_async_context(
                Liveness(
                    worker_pb2_grpc.WorkerServiceStub(scheduler_channel),
                    status,
                    dispatcher,
                    slots=lambda: pool_slots(pools, args.concurrency, sessions),
                )
            )
        stack.push_async_callback(host.begin_shutdown)  # first: refuse new calls, then leave, then drain
        log.info("worker running", extra={"worker_id": worker_id, "pools": pools})
        await stop.wait()
        log.info("draining work")


async def _sessions(
    args: argparse.Namespace,
    stack: contextlib.AsyncExitStack,
    host: ServiceHost,
    nc: Client,
    js: JetStreamContext,
    events: EventLog,
    topology: Topology,
    sequencer: KeySequencer,
    children: ChildTasks,
) -> SessionHost | None:
    """The mesh side of the worker protocol (workers in any language, relayed by the gateways),
    if `--sessions`: its kind store and session host, served on `host`."""
    if not args.sessions:
        return None
    kinds = KindStore(await js.key_value(KINDS_BUCKET))
    await kinds.start()
    stack.push_async_callback(kinds.close)
    schemas = await SchemaRegistry.open(js, args.replicas, create=False)

    async def versions_of(subject: str) -> list[int]:
        return [v.version for v in await schemas.versions(subject)]

    sessions = SessionHost(
        nc,
        js,
        events,
        kinds,
        versions_of,
        topology,
        sequencer=sequencer,
        children=children,
        sessions_kv=await js.key_value(SESSIONS_BUCKET),
        resume_window_s=args.resume_window,
    )
    await sessions.start()
    host.add(
        session_pb2_grpc.add_WorkerSessionServiceServicer_to_server,
        SessionService(sessions, grace_s=args.grace),
        "mesh.v1.WorkerSessionService",
    )
    return sessions


async def _drain(dispatcher: Dispatcher, sessions: SessionHost | None, grace_s: float) -> None:
    """Running steps finish (or are handed back) within the grace; attached workers meanwhile too."""
    if sessions is not None:
        await asyncio.gather(sessions.close(grace_s), dispatcher.shutdown(grace_s))
    else:
        await dispatcher.shutdown(grace_s)
    log.info("work drained")


def _per_tenant(flag: str, text: str, cast: type, label: str) -> dict:  # type: ignore[type-arg]
    try:
        return parse_per_tenant(text, cast, label)
    except ValueError as exc:
        raise SystemExit(f"{flag}: {exc}") from None


def _wait_bounds(text: str) -> WaitBounds:
    """Parse ``interactive=0.25,standard=5,batch=60`` (seconds) over the defaults."""
    values = {}
    for entry in filter(None, text.split(",")):
        lane, _, seconds = entry.partition("=")
        if lane not in CLASS_NAMES:
            raise SystemExit(f"--wait-bounds: unknown class {lane!r}")
        try:
            values[f"{lane}_s"] = float(seconds)
        except ValueError:
            raise SystemExit(f"--wait-bounds: {entry!r} is not CLASS=SECONDS") from None
    return WaitBounds(**values)


def main() -> None:
    parser = base_parser("tidemesh worker")
    parser.add_argument("--pools", default="all", help=f"comma-separated: {','.join(POOLS)} (or all)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--inference",
        default="",
        metavar="HOST:PORT,...",
        help="inference service endpoints to start from (the rest are found in tm_inference as they register)",
    )
    parser.add_argument("--scheduler", default="", help="scheduler HOST:PORT for registration/heartbeats")
    parser.add_argument("--worker-id", default="")
    parser.add_argument(
        "--sessions",
        action="store_true",
        help="also host worker-protocol sessions (workers in any language, relayed by the gateways)",
    )
    parser.add_argument(
        "--webhook-allow",
        default="http://127.0.0.1:,http://localhost:",
        help="comma-separated URL prefixes webhook tasks may call",
    )
    parser.add_argument(
        "--resume-window",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a worker-protocol session outlives a broken stream before its assignments go to others",
    )
    parser.add_argument("--reserve", type=int, default=None, help="extra slots only interactive work may use")
    parser.add_argument(
        "--guaranteed-slots",
        type=int,
        default=None,
        help="shared slots interactive work may never take, so standard/batch work meets its wait bound "
        "(default: a quarter of --concurrency, at least 1)",
    )
    parser.add_argument(
        "--wait-bounds", default="", help="max queue wait per class in seconds, e.g. interactive=0.25,batch=60"
    )
    parser.add_argument(
        "--tenant-weights",
        default="",
        help="fair-share weights per tenant, e.g. acme=3,globex=1 (others weigh 1)",
    )
    parser.add_argument(
        "--tenant-concurrency",
        default="",
        help="most items of a tenant in flight at once per pool and class, across workers, e.g. acme=4",
    )
    run_service("worker", parser, serve)


if __name__ == "__main__":
    main()
