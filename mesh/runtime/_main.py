"""Process entry points: logging, tracing, and two-stage signal handling in one place."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nats.aio.client import Client as Nats

from mesh import failpoints
from mesh.fabric import connect
from mesh.security import Transport
from mesh.telemetry import configure_logging, configure_tracing, get_logger, shutdown_tracing

log = get_logger(__name__)


def run_service(
    name: str,
    parser: argparse.ArgumentParser,
    serve: Callable[[argparse.Namespace, asyncio.Event], Awaitable[None]],
    argv: list[str] | None = None,
) -> None:
    """Parse args and run `serve(args, stop)` until it returns.

    First SIGTERM/SIGINT sets `stop` (serve drains and returns within its grace
    period); a second one exits at once with status 130.
    """
    args = parser.parse_args(argv)
    for failpoint in args.failpoint:
        failpoints.arm(failpoint)
    configure_logging(name, os.environ.get("TIDEMESH_LOG_LEVEL", "INFO"))
    configure_tracing(name)
    # This process's TLS material: its leaf is issued for its component name.
    args.transport = Transport.of(args.pki, name)
    if not args.transport.secure:
        log.warning("INSECURE: plaintext, no peer is verified (--pki not given; tidemesh up --insecure)")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if stop.is_set():
                log.warning("second signal: exiting now", extra={"signal": signum})
                os._exit(130)
            log.info("signal received: shutting down gracefully", extra={"signal": signum})
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await serve(args, stop)

    try:
        run_loop(main())
    except Exception:
        log.exception("service failed")
        shutdown_tracing()
        sys.exit(1)
    shutdown_tracing()  # the spans still buffered leave before the process does
    log.info("stopped")


EVENT_LOOP_ENV = "TIDEMESH_EVENT_LOOP"


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop (libuv: cheaper I/O callbacks for nats-py, aiohttp and grpc.aio's
    poller) unless ``TIDEMESH_EVENT_LOOP=asyncio`` asks for the standard loop."""
    choice = os.environ.get(EVENT_LOOP_ENV, "uvloop")
    if choice not in ("uvloop", "asyncio"):
        raise SystemExit(f"{EVENT_LOOP_ENV}: expected uvloop or asyncio, got {choice!r}")
    if choice == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


async def connect_nats(args: argparse.Namespace, client_name: str) -> Nats:
    """This service's NATS connection: its own user, TLS verified against the mesh's root."""
    transport: Transport = args.transport
    return await connect(
        args.nats,
        name=client_name,
        tls=transport.client_ssl_context(),
        user_file=args.nats_user,
        in_order=args.nats_in_order,
    )


def base_parser(description: str) -> argparse.ArgumentParser:
    """Arguments every service takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--nats", default=os.environ.get("TIDEMESH_NATS", "nats://127.0.0.1:4222"))
    parser.add_argument("--grpc", default="127.0.0.1:0", help="gRPC listen address HOST:PORT")
    parser.add_argument("--http", default="127.0.0.1:0", help="HTTP (ops: /metrics, /healthz) HOST:PORT")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds to finish in-flight work")
    parser.add_argument("--replicas", type=int, default=1, help="JetStream stream replicas (3 on a cluster)")
    parser.add_argument("--ack-wait", type=float, default=30.0, help="seconds before un-acked work is redelivered")
    parser.add_argument("--ready-file", default=None, help="write bound ports here as JSON once serving")
    parser.add_argument(
        "--failpoint",
        action="append",
        default=[],
        metavar="NAME=MARKER",
        help="testing: kill -9 this process once, at failpoint NAME (mesh.failpoints)",
    )
    parser.add_argument(
        "--pki", default=os.environ.get("TIDEMESH_PKI", ""), help="the mesh's pki dir (root + leaves); none: plaintext"
    )
    parser.add_argument("--nats-user", default="", help="file with this component's NATS user and password")
    parser.add_argument(
        "--nats-in-order",
        action="store_true",
        help="try the --nats servers in the order given (this host's node first), not at random",
    )
    return parser
