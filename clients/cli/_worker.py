"""`tidemesh worker run module:worker` (like `celery -A`) and `tidemesh kinds`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from clients.cli._exit import EXIT_OK
from clients.cli._output import Output
from clients.sdk import Client, Worker
from mesh.errors import InvalidArgument
from mesh.rpc import raise_from_rpc_error
from mesh.v1 import kind_pb2


def add_worker_commands(sub: Any, client_args: Callable[..., None]) -> None:
    p_worker = sub.add_parser("worker", help="run your own task kinds: tidemesh worker run module:worker")
    worker_sub = p_worker.add_subparsers(dest="worker_command", required=True)
    p_run = worker_sub.add_parser("run", help="attach a Worker defined in a module and run it until SIGTERM")
    p_run.add_argument("target", help="MODULE:ATTRIBUTE naming a clients.sdk.Worker (the module is found from .)")
    p_run.add_argument("--register", action="store_true", help="register its schemas and kinds first (admin)")
    p_run.add_argument("--name", default="", help="override the worker's name")
    p_run.add_argument("--capacity", type=int, default=0, help="override how many steps it runs at once")
    p_run.add_argument("--label", action="append", default=[], help="KEY=VALUE capability label (repeatable)")
    client_args(p_run)
    p_kinds = sub.add_parser("kinds", help="the task kinds: built-in and registered, versions, workers serving them")
    client_args(p_kinds)
    kinds_sub = p_kinds.add_subparsers(dest="kinds_command")
    p_register = kinds_sub.add_parser("register", help="declare a user kind (admin); its types must be registered")
    p_register.add_argument("name", help="lower-case dotted, e.g. acme.resize")
    p_register.add_argument("--input-type", required=True, help="full name of the input message (a schema subject)")
    p_register.add_argument("--output-type", required=True, help="full name of the output message (a schema subject)")
    p_register.add_argument("--step", action="append", default=[], help="a step name, in order (default: one step)")
    p_register.add_argument("--require", action="append", default=[], help="KEY=VALUE a worker must advertise")
    p_register.add_argument("--max-attempts", type=int, default=0, help="attempts per step (default 3)")
    p_register.add_argument("--step-timeout", type=float, default=None, help="seconds (default 300; 0: none)")
    p_register.add_argument("--description", default="")
    client_args(p_register)


def load_worker(target: str) -> Worker:
    """The Worker at MODULE:ATTRIBUTE, importing MODULE from the working directory."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise InvalidArgument("target", f"{target!r} is not MODULE:ATTRIBUTE (e.g. textpipe_worker:worker)")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidArgument("target", f"cannot import {module_name!r}: {exc}") from exc
    worker = getattr(module, attribute, None)
    if not isinstance(worker, Worker):
        raise InvalidArgument("target", f"{target} is {type(worker).__name__}, not a clients.sdk.Worker")
    return worker


async def run_worker(args: argparse.Namespace, transport: dict[str, Any], credential: str) -> int:
    worker = load_worker(args.target)
    worker.endpoint = worker.endpoint or args.endpoint
    worker.insecure = worker.insecure or bool(transport.get("insecure"))
    worker.ca = worker.ca or transport.get("ca")
    worker.credential = worker.credential or credential
    worker.name = args.name or worker.name
    worker.capacity = args.capacity or worker.capacity
    for label in args.label:
        key, sep, value = label.partition("=")
        if not sep or not key:
            raise InvalidArgument("--label", f"{label!r} is not KEY=VALUE")
        worker.labels[key] = value
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop, force = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        # First signal: take nothing new, finish what runs. Second: stop now (the mesh redelivers it).
        (force if stop.is_set() else stop).set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        if args.register:
            for response in await worker.register():
                print(f"kind {response.kind.name}: {'registered' if response.created else 'already registered'}")
        await worker.run(stop, force)
    except grpc.aio.AioRpcError as exc:
        raise_from_rpc_error(exc)
    return EXIT_OK


def declaration_of(args: argparse.Namespace) -> kind_pb2.KindDeclaration:
    declaration = kind_pb2.KindDeclaration(
        name=args.name,
        input_type=args.input_type,
        output_type=args.output_type,
        max_attempts=args.max_attempts,
        description=args.description,
    )
    for step in args.step or [args.name.rsplit(".", 1)[-1]]:
        declaration.steps.add(name=step)
    for requirement in args.require:
        key, sep, value = requirement.partition("=")
        if not sep or not key:
            raise InvalidArgument("--require", f"{requirement!r} is not KEY=VALUE")
        declaration.required_labels[key] = value
    if args.step_timeout is not None:
        declaration.step_timeout.FromNanoseconds(int(args.step_timeout * 1e9))
    return declaration


def _kind_lines(info: kind_pb2.KindInfo) -> Iterator[str]:
    kind = info.kind
    origin = "built-in" if kind.builtin else "user"
    steps = " → ".join(step.name for step in kind.steps)
    versions = ",".join(f"v{v}" for v in info.schema_versions)
    yield f"{kind.name:<22} {origin:<8} {kind.input_type} → {kind.output_type}  [{steps}]  {versions}"
    if kind.required_labels:
        yield f"{'':<22} requires {', '.join(f'{k}={v}' for k, v in sorted(kind.required_labels.items()))}"
    for worker in info.workers:
        served = ",".join(f"v{v}" for v in worker.schema_versions)
        yield (
            f"{'':<22} worker {worker.worker_name} ({worker.worker_id}) {served} "
            f"{worker.in_flight}/{worker.capacity} build {worker.build_id or '-'}"
        )
    if not kind.builtin and not info.workers:
        yield f"{'':<22} no worker attached"
    for backlog in info.backlog:
        note = f" — {backlog.note}" if backlog.note else ""
        yield (
            f"{'':<22} step {backlog.step} v{backlog.schema_version}: {backlog.queued} queued, "
            f"{backlog.compatible_workers} compatible workers{note}"
        )


async def kinds_command(args: argparse.Namespace, transport: dict[str, Any], credential: str) -> int:
    from google.protobuf.json_format import MessageToDict

    out = Output.from_args(args)
    async with Client(args.endpoint, credential=credential, **transport) as client:
        if args.kinds_command == "register":
            registered = await client.register_kind(declaration_of(args))
            said = f"kind {registered.kind.name}: {'registered' if registered.created else 'already registered'}"
            out.data(MessageToDict(registered, preserving_proto_field_name=True), table=lambda: out.line(said))
            return EXIT_OK
        reply = kind_pb2.ListKindsResponse(kinds=await client.kinds())
    out.data(
        MessageToDict(reply, preserving_proto_field_name=True),
        table=lambda: out.lines(line for info in reply.kinds for line in _kind_lines(info)),
    )
    return EXIT_OK
