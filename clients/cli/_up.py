"""`tidemesh up`: boot the mesh under a supervisor, optionally run the demo, stay up until a signal."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from clients.cli._config import plan_for, resolve_args, say_resolved
from clients.cli._output import Output
from clients.cli._plan import controller_for
from clients.cli._render import event_line
from clients.sdk import Client
from mesh.errors import MeshError
from mesh.manifest import autoscale_bounds, kind_declarations, record
from mesh.policy import PolicyWatch
from mesh.supervisor import LocalAutoscaler, Supervisor, admin_key
from mesh.supervisor._hosts import host_port
from mesh.telemetry import configure_console_logging

DEMO: list[tuple[str, dict[str, Any], str]] = [
    ("echo", {"text": "hello from tidemesh"}, "interactive"),
    ("embed", {"text": "Envoy fronts a NATS JetStream mesh."}, "standard"),
    (
        "stream",
        {
            "text": "tidemesh streams partial results as each chunk of work completes",
            "chunks": 4,
            "chunk_delay_ms": 150,
        },
        "standard",
    ),
]


def plan_from(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The process table `args` (of `up` or `plan`: flags, and a manifest with -f) describe."""
    return plan_for(resolve_args(args).manifest)


INSECURE_BANNER = (
    "!! INSECURE MESH (--insecure): plaintext on every hop, NATS without users, internal ports open to\n"
    "!! anyone on this host. For experiments only — never for real work or real data."
)


async def up(args: argparse.Namespace) -> int:
    # The supervisor's own warnings, one redacted line each (never raw input on the terminal).
    configure_console_logging("tidemesh")
    out = Output.from_args(args)
    resolved = resolve_args(args)
    say_resolved(resolved, out)
    manifest = resolved.manifest
    plan = plan_for(manifest)
    record(plan, manifest)  # `tidemesh config export` reads it back beside plan.json
    if not plan.secure:
        print(INSECURE_BANNER, file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    supervisor = Supervisor(plan)

    def on_signal() -> None:
        if stop.is_set():
            print("second signal: killing everything now", file=sys.stderr)
            supervisor.kill_all()
            os._exit(130)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)

    boot = asyncio.create_task(supervisor.__aenter__())
    waiter = asyncio.create_task(stop.wait())
    total = len(plan.processes)
    async with out.progress(f"starting {total} processes", total=total) as progress:
        supervisor.on_healthy = lambda name, seconds: progress.advance(f"{name} healthy after {seconds:.1f}s")
        await asyncio.wait({boot, waiter}, return_when=asyncio.FIRST_COMPLETED)
        supervisor.on_healthy = None
    if not boot.done():
        boot.cancel()
        await asyncio.gather(boot, return_exceptions=True)
        await supervisor.shutdown()
        return 130
    waiter.cancel()
    if boot.exception() is not None:
        print(f"tidemesh up failed: {boot.exception()}", file=sys.stderr)
        return 1
    # The policies against the running mesh, every policies.watchSeconds (alerts: tm.alert.policy.<rule>).
    policy = PolicyWatch.of(supervisor)
    # Pools without autoscale bounds get 1:1: a standby worker whenever the pool has none alive.
    # Not across hosts: every host's scheduler sees its own host's workers only, and every
    # supervisor would act on all of their recommendations (a host starting up, its workers not yet
    # registered, would have every other host start standbys).
    autoscaler = LocalAutoscaler(supervisor, {} if plan.hosts else autoscale_bounds(manifest))
    config = None
    try:
        # A signal while the autoscaler connects stops the mesh too (its connect is bounded, 30 s).
        entering = asyncio.create_task(autoscaler.__aenter__())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({entering, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not entering.done():
            entering.cancel()
            await asyncio.gather(entering, return_exceptions=True)
            return 130
        entering.result()
        await policy.__aenter__()
        # Configuration changes (`tidemesh config plan|apply`), revisions kept in NATS: on one host
        # only — every host's supervisor would hear a change and roll it out on its own.
        if not plan.hosts:
            config = await controller_for(supervisor, manifest).__aenter__()
        endpoint = _endpoint(plan)
        print(f"tidemesh is up in {supervisor.boot_seconds:.2f}s — state in {plan.state_dir}")
        if plan.hosts:
            print(
                f"  host {plan.host}: node tidemesh-{plan.hosts.index(plan.host)} of a mesh over "
                f"{len(plan.hosts)} hosts ({', '.join(plan.hosts)}); changes: restart each host's "
                "`tidemesh up` with the new manifest (`tidemesh config apply` runs on one host only); "
                "each host runs its planned workers (no local autoscaling or standby across hosts)"
            )
        for spec in plan.processes:
            pid = supervisor.children[spec.name].pid
            print(f"  {spec.name:<12} pid {pid:<8} {spec.address:<28} health {spec.health.url}")
        print(f"  public endpoint (gRPC, gRPC-Web, HTTP, WebSocket): {endpoint}")
        print(f"  web console: {'https' if plan.secure else 'http'}://{endpoint}/console/")
        print(f"  terminal dashboard: tidemesh dash --endpoint {endpoint} --state-dir {plan.state_dir}")
        print(f"  mesh RSS: {_mesh_rss_mb(supervisor.pids()):.0f} MB", flush=True)
        for line in supervisor.caps_notes():  # how the workers' CPU and GPU-memory caps act on this host
            print(f"  {line}", flush=True)
        if plan.secure:
            print(f"  TLS: on — every hop; clients trust {plan.ca_path} (`tidemesh ca`)")
        else:
            print(INSECURE_BANNER, flush=True)
        credential = admin_key(Path(plan.state_dir))
        if credential:
            print(f"  auth: on — admin API key in {Path(plan.state_dir) / 'auth' / 'admin.key'} (the CLI uses it)")
        else:
            print("  auth: OFF (--no-auth): every caller is let in")
        if manifest.kinds:  # the manifest's own kinds, as `config apply` registers them
            await register_kinds(endpoint, credential, plan.ca_path, manifest)
        if manifest.demo:
            await run_demo(endpoint, credential, plan.ca_path)
        print("Ctrl-C to stop.", flush=True)
        await stop.wait()
    finally:
        print("stopping…", flush=True)
        await policy.close()
        if config is not None:
            await config.__aexit__(None, None, None)
        await autoscaler.__aexit__(None, None, None)
        await supervisor.shutdown()
        print("stopped: no child process left.", flush=True)
    return 0


def _endpoint(plan: Any) -> str:
    """Where a client reaches this host's front door: loopback, or the host's name (`--host`)
    when Envoy faces the network."""
    listen = plan.by_name("envoy").address.rpartition(":")[0]
    if plan.host and listen not in ("127.0.0.1", "localhost", "::1"):
        return host_port(plan.host, plan.public_port)
    return f"127.0.0.1:{plan.public_port}"


async def register_kinds(endpoint: str, credential: str, ca: str, manifest: Any) -> None:
    """Register the manifest's kinds (their schemas must be registered: a kind that cannot be is said)."""
    async with Client(endpoint, tenant="default", credential=credential, ca=ca or None, insecure=not ca) as client:
        for declaration in kind_declarations(manifest):
            try:
                reply = await client.register_kind(declaration)
            except MeshError as exc:
                print(f"  kind {declaration.name}: not registered — {exc}", flush=True)
                continue
            print(f"  kind {declaration.name}: {'registered' if reply.created else 'registered already'}", flush=True)


async def run_demo(endpoint: str, credential: str = "", ca: str = "") -> None:
    """The demo tasks; `ca` "" means the mesh runs --insecure (plaintext)."""
    async with Client(endpoint, tenant="demo", credential=credential, ca=ca or None, insecure=not ca) as client:
        for kind, payload, priority in DEMO:
            submitted = await client.submit(kind, payload, priority=priority)
            print(f"\n$ tidemesh submit {kind}  → task {submitted.task_id}", flush=True)
            async for event in client.watch(submitted.task_id):
                print("  " + event_line(event), flush=True)


def _mesh_rss_mb(pids: dict[str, int | None]) -> float:
    total_kb = 0
    for pid in pids.values():
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
        except (OSError, TypeError):
            continue
    return total_kb / 1024
