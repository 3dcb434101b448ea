"""`tidemesh load`: the load the mesh measured per pool and priority class over a sliding window —
what `tidemesh config plan` simulates a change under."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import MessageToDict

from clients.cli._connect import client_for
from clients.cli._exit import EXIT_OK
from clients.cli._output import Output
from mesh.load import weighted_quantile
from mesh.priority import class_name
from mesh.v1 import status_pb2


def add_load_command(sub: Any, client_args: Callable[[argparse.ArgumentParser], None]) -> None:
    p_load = sub.add_parser(
        "load",
        help="measured load per pool and class: arrival rate, service times, queue waits, depth, slots",
        description="Arrivals are work items stored in a pool's lane (each step of a pipeline arrives in its "
        "own pool); service is how long one attempt held its slot, without its wait; waits run from an item "
        "stored to its first attempt started. Slots: every alive worker serving the pool, a worker serving "
        "several pools counted in each. -o json adds up to 256 service-time samples per pool and class.",
    )
    p_load.add_argument(
        "--window",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the span to cover (default 0: the scheduler's whole window, 300 s unless --load-window)",
    )
    p_load.add_argument("--all", action="store_true", help="every pool and class, those without load too")
    client_args(p_load)


async def load_command(args: argparse.Namespace, out: Output) -> int:
    async with client_for(args) as client:
        report = await client.load(args.window)
    out.data(MessageToDict(report, always_print_fields_with_no_presence=True), table=lambda: _table(report, args, out))
    return EXIT_OK


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _table(report: status_pb2.LoadReport, args: argparse.Namespace, out: Output) -> None:
    out.note(f"measured over the last {report.window_s:.0f} s")
    out.line(
        f"{'pool':<16} {'class':<12} {'arrive/s':>9} {'served/s':>9} {'svc ms':>8} {'svc p95':>8} "
        f"{'wait p50':>9} {'wait p95':>9} {'depth':>6} {'running':>8} {'workers':>8} {'slots':>6}"
    )
    shown = 0
    for load in report.loads:
        quiet = not (load.arrived or load.served or load.depth or load.running)
        if quiet and not args.all:
            continue
        shown += 1
        samples = [(value, 1.0) for value in load.service_s_samples]
        out.line(
            f"{load.pool:<16} {class_name(load.priority_class):<12} {load.arrival_per_s:>9.2f} "
            f"{load.served_per_s:>9.2f} {_ms(load.service_mean_s):>8} {_ms(weighted_quantile(samples, 0.95)):>8} "
            f"{_ms(load.wait_p50_s):>9} {_ms(load.wait_p95_s):>9} {load.depth:>6} {load.running:>8} "
            f"{load.workers:>8} {load.slots:>6}"
        )
    if not shown:
        out.note("no load in the window (--all lists every pool and class)")
