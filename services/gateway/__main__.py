"""``python -m services.gateway`` — the public API: gRPC (+ gRPC-Web via Envoy), REST and WebSocket."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from mesh.fabric import DeadLetterStore, EventLog, Topology, connect, ensure_topology
from mesh.rpc import insecure_channel
from mesh.runtime import ServiceHost, base_parser, run_service
from mesh.v1 import gateway_pb2_grpc, scheduler_pb2_grpc
from services.gateway._http import http_app
from services.gateway._hub import EventHub
from services.gateway._ratelimit import TenantRateLimiter
from services.gateway._service import Gateway


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    nc = await connect(args.nats, name="tidemesh-gateway")
    channel = insecure_channel(args.scheduler)
    hub: EventHub | None = None
    try:
        js = nc.jetstream(timeout=5.0)
        await ensure_topology(js, Topology(replicas=args.replicas, ack_wait_s=args.ack_wait))
        events = EventLog(js, nc)
        hub = EventHub(nc, events)
        await hub.start()
        limiter = TenantRateLimiter(args.tenant_rate, args.tenant_burst) if args.tenant_rate > 0 else None
        gateway = Gateway(
            scheduler_pb2_grpc.SchedulerServiceStub(channel), events, hub, DeadLetterStore(js, nc), limiter
        )
        app = http_app(events, hub, admit=gateway.admit, cancel=gateway.cancel)
        host = ServiceHost("gateway", args.grpc, args.http, http_app=app, grace_s=args.grace)
        host.add(gateway_pb2_grpc.add_GatewayServiceServicer_to_server, gateway, "mesh.v1.GatewayService")
        async with host:
            host.write_ready_file(Path(args.ready_file) if args.ready_file else None)
            await stop.wait()
            await host.begin_shutdown()
    finally:
        if hub is not None:
            await hub.close()
        await channel.close()
        await nc.drain()


def main() -> None:
    parser = base_parser("tidemesh gateway")
    parser.add_argument("--scheduler", required=True, help="scheduler HOST:PORT")
    parser.add_argument("--tenant-rate", type=float, default=0.0, help="submits per second per tenant (0: no limit)")
    parser.add_argument("--tenant-burst", type=float, default=100.0, help="submits a tenant may burst above its rate")
    run_service("gateway", parser, serve)


if __name__ == "__main__":
    main()
