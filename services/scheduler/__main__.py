"""``python -m services.scheduler`` — admission, state and flow control."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from mesh.fabric import (
    IDEMPOTENCY_BUCKET,
    KINDS_BUCKET,
    ORDER_KEYS_BUCKET,
    POOLS,
    EventLog,
    KeySequencer,
    KindStore,
    TaskIndex,
    Topology,
    WorkQueue,
    ensure_topology,
)
from mesh.load import DEFAULT_WINDOW_S, LoadWindow
from mesh.policy import AlertCounter
from mesh.runtime import ServiceHost, base_parser, connect_nats, run_service
from mesh.schemas import SchemaRegistry
from mesh.tasks import Limits
from mesh.telemetry import get_logger
from mesh.v1 import scheduler_pb2_grpc, worker_pb2_grpc
from services.scheduler._admission import Admitter
from services.scheduler._autoscale import ScaleHooks, ScalePolicy, Scaler
from services.scheduler._flow import FlowControl, FlowLimits
from services.scheduler._periodic import PeriodicRoles
from services.scheduler._reconcile import ReconcilePolicy, Reconciler
from services.scheduler._registry import WorkerRegistry
from services.scheduler._service import Scheduler, Workers
from services.scheduler._userwork import UserPayloads

log = get_logger("services.scheduler")


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:  # what starts later stops earlier
        nc = await connect_nats(args, "tidemesh-scheduler")
        stack.push_async_callback(nc.drain)
        js = nc.jetstream(timeout=5.0)
        topology = Topology(replicas=args.replicas, ack_wait_s=args.ack_wait)
        await ensure_topology(js, topology)
        idempotency = await js.key_value(IDEMPOTENCY_BUCKET)
        events = await stack.enter_async_context(EventLog(js, nc))
        work = WorkQueue(nc, js)
        sequencer = KeySequencer(js, await js.key_value(ORDER_KEYS_BUCKET), work, events)
        registry = WorkerRegistry(
            heartbeat_interval_s=args.heartbeat_interval, dead_after_s=3 * args.heartbeat_interval
        )
        flow = FlowControl(_flow_limits(args))
        scaler = Scaler(_scale_policies(args))
        hooks = ScaleHooks(command=args.scale_hook_command, webhook=args.scale_webhook)
        kinds = KindStore(await js.key_value(KINDS_BUCKET))
        user = UserPayloads(kinds, await SchemaRegistry.open(js, args.replicas, create=False))
        admitter = Admitter(work, events, idempotency, Limits(), flow, sequencer, TaskIndex(js), user=user)
        reconciler = Reconciler(js, events, admitter, ReconcilePolicy(grace_s=args.reconcile_grace))
        host = ServiceHost("scheduler", args.grpc, args.http, grace_s=args.grace, transport=args.transport)
        load = LoadWindow(args.load_window, pools=POOLS)  # the measured load that GetLoadReport serves
        await stack.enter_async_context(AlertCounter(nc))  # policy alerts, counted in its /metrics
        host.add(
            scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server,
            Scheduler(
                nc,
                js,
                events,
                admitter,
                registry,
                sequencer,
                scaler,
                load,
            ),
            "mesh.v1.SchedulerService",
        )
        host.add(worker_pb2_grpc.add_WorkerServiceServicer_to_server, Workers(registry, load), "mesh.v1.WorkerService")
        roles = PeriodicRoles(
            nc, js, registry, scaler, hooks, flow, reconciler, args.heartbeat_interval / 2, topology.fetch_expiry_s
        )
        await stack.enter_async_context(host)
        await stack.enter_async_context(roles)
        host.write_ready_file(Path(args.ready_file) if args.ready_file else None)
        await stop.wait()


def _scale_policies(args: argparse.Namespace) -> dict[str, ScalePolicy]:
    """``POOL=MIN:MAX`` entries over a default of 1:8 for every pool."""
    policies = {pool: ScalePolicy(target_drain_s=args.scale_target_drain) for pool in POOLS}
    for entry in filter(None, args.scale.split(",")):
        pool, _, bounds = entry.partition("=")
        low, _, high = bounds.partition(":")
        if pool not in policies or not (low.isdigit() and high.isdigit()) or int(low) > int(high):
            raise SystemExit(f"--scale: expected POOL=MIN:MAX with POOL in {', '.join(POOLS)}, got {entry!r}")
        policies[pool] = ScalePolicy(
            target_drain_s=args.scale_target_drain, min_replicas=int(low), max_replicas=int(high)
        )
    return policies


def _flow_limits(args: argparse.Namespace) -> FlowLimits:
    lanes = dict(FlowLimits().lane_max_depth)
    for entry in filter(None, args.lane_max_depth.split(",")):
        lane, _, value = entry.partition("=")
        if lane not in lanes or not value.isdigit():
            raise SystemExit(f"--lane-max-depth: expected LANE=N with LANE in {', '.join(lanes)}, got {entry!r}")
        lanes[lane] = int(value)
    return FlowLimits(lane_max_depth=lanes, tenant_max_depth=args.tenant_max_depth)


def _window_s(text: str) -> float:
    value = float(text)
    if not 10 <= value <= 3600:  # NaN fails too; under two buckets says nothing, an hour is plenty
        raise argparse.ArgumentTypeError(f"must be 10..3600 seconds, got {text}")
    return value


def main() -> None:
    parser = base_parser("tidemesh scheduler")
    parser.add_argument("--heartbeat-interval", type=float, default=2.0)
    parser.add_argument(
        "--lane-max-depth", default="", help="queued+running items per lane, e.g. interactive=5000,batch=500000"
    )
    parser.add_argument("--tenant-max-depth", type=int, default=FlowLimits().tenant_max_depth)
    parser.add_argument("--scale", default="", help="replica bounds per pool, e.g. inference=1:4,ingestion=1:2")
    parser.add_argument("--scale-target-drain", type=float, default=10.0, help="seconds to drain a backlog")
    parser.add_argument("--scale-hook-command", default="", help="run on a change; recommendation JSON on stdin")
    parser.add_argument(
        "--reconcile-grace",
        type=float,
        default=ReconcilePolicy().grace_s,
        help="seconds after admission a task still QUEUED without its work item is enqueued again",
    )
    parser.add_argument("--scale-webhook", default="", help="POST the recommendation JSON here on a change")
    parser.add_argument(
        "--load-window",
        type=_window_s,
        default=DEFAULT_WINDOW_S,
        metavar="SECONDS",
        help="the sliding window of the measured load (GetLoad): kept this long, and its default span",
    )
    run_service("scheduler", parser, serve)


if __name__ == "__main__":
    main()
