"""Argument parsing and dispatch for `tidemesh`. Exit codes: 0 ok / task succeeded, 1 task failed,
2 bad input, 3 task cancelled, 4 mesh unavailable."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import argcomplete

from clients.cli._complete import SHELLS, shell_hook
from clients.cli._complete import attach as attach_completers
from clients.cli._dash import add_dash_command, dash_command
from clients.cli._help import START_THE_MESH, attach_examples
from clients.cli._models import add_model_commands, infer_command, model_command
from clients.cli._output import Declined, Output, Progress, add_output_args
from clients.cli._render import event_line
from clients.cli._schema import add_schema_commands, schema_command
from clients.cli._style import THEME_CHOICES, Style
from clients.cli._up import plan_from, up
from clients.cli._worker import add_worker_commands, kinds_command, run_worker
from clients.sdk import Client
from clients.sdk._credentials import calls_log
from mesh.errors import InvalidArgument, MeshError, NotFound, PermissionDenied, Unauthenticated, Unavailable
from mesh.priority import CLASS_NAMES, class_name
from mesh.supervisor import CREDENTIAL_LIMIT, TENANT_LIMIT, MeshSecurity
from mesh.telemetry import quiet_ssl_eof_noise
from mesh.v1 import status_pb2, task_pb2

DEFAULT_ENDPOINT = os.environ.get("TIDEMESH_ENDPOINT", "127.0.0.1:8080")
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
# The role (colour and symbol) of each state word `status` prints.
_HEALTH_ROLES = {"alive": "ok", "draining": "warn", "dead": "error"}
_CIRCUIT_ROLES = {"closed": "ok", "half_open": "warn", "open": "error"}


def _submits(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:  # NaN would compare false everywhere: no limit at all
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0 (0: no limit), got {text}")
    return value


def rate_limit_args(p: argparse.ArgumentParser) -> None:
    """Every gateway's submit limits: token buckets per tenant and per credential (auth on)."""
    (tenant_rate, tenant_burst), (credential_rate, credential_burst) = TENANT_LIMIT, CREDENTIAL_LIMIT
    p.add_argument(
        "--tenant-rate", type=_submits, default=tenant_rate, help="submits/s per tenant, per gateway (0: no limit)"
    )
    p.add_argument("--tenant-burst", type=_submits, default=tenant_burst, help="submits a tenant may send at once")
    p.add_argument(
        "--credential-rate",
        type=_submits,
        default=credential_rate,
        help="submits/s per credential, per gateway (0: no limit)",
    )
    p.add_argument(
        "--credential-burst", type=_submits, default=credential_burst, help="submits a credential may send at once"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidemesh", description="gRPC-first mesh on NATS JetStream + Envoy")
    sub = parser.add_subparsers(dest="command", required=True)

    def mesh_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", default=os.environ.get("TIDEMESH_STATE_DIR", "state"))
        p.add_argument("--port", type=int, default=8080, help="public Envoy port (0: pick free ports)")
        p.add_argument("--workers", type=int, default=1, help="worker processes serving every pool")
        p.add_argument("--pool-workers", default="", help="dedicated workers per pool, e.g. inference=2,ingestion=1")
        p.add_argument("--pool-concurrency", default="", help="concurrency of dedicated workers, e.g. inference=4")
        p.add_argument("--cluster", type=int, default=1, choices=[1, 3, 5], help="nats-server nodes (R3 streams)")
        p.add_argument("--gateways", type=int, default=1, help="gateway replicas behind Envoy (sticky sessions)")
        p.add_argument(
            "--fsync",
            default="always",
            choices=["always", "interval"],
            help="JetStream sync_interval: always (no acknowledged write lost) or the server's 2-min default",
        )
        p.add_argument("--ack-wait", type=float, default=30.0, help="seconds before un-acked work is redelivered")
        p.add_argument("--tenant-weights", default="", help="fair-share weights, e.g. acme=3,globex=1 (others 1)")
        p.add_argument("--tenant-concurrency", default="", help="in-flight caps per tenant, e.g. acme=4")
        p.add_argument("--no-auth", action="store_true", help="let every caller in without a credential (dev only)")
        p.add_argument(
            "--insecure",
            action="store_true",
            help="EXPERIMENTS ONLY: plaintext on every hop, NATS without users, internal ports open to the host",
        )
        rate_limit_args(p)
        p.add_argument(
            "--triton",
            action="store_true",
            default=os.environ.get("TIDEMESH_TRITON", "") not in ("", "0"),
            help="also run tritonserver (nvidia-pytriton) on the model repository; CPU stays the fallback",
        )
        p.add_argument(
            "--inference",
            type=int,
            default=1,
            dest="inference_replicas",
            metavar="N",
            help="inference service replicas (workers place each call by model residency and load)",
        )
        p.add_argument(
            "--model-repository",
            action="append",
            default=[],
            metavar="DIR",
            dest="model_repositories",
            help="serve your Triton model repository beside the project's (repeatable; implies --triton)",
        )

    def client_args(p: argparse.ArgumentParser, *, streams: bool = False, destructive: bool = False) -> None:
        p.add_argument(
            "--endpoint", default=DEFAULT_ENDPOINT, help="the mesh's front door (default: $TIDEMESH_ENDPOINT)"
        )
        p.add_argument("--state-dir", default=os.environ.get("TIDEMESH_STATE_DIR", "state"))
        p.add_argument(
            "--api-key",
            default=None,
            help="an API key or JWT (default: $TIDEMESH_API_KEY, else the local mesh's admin key)",
        )
        p.add_argument(
            "--cacert",
            default="",
            help="the root to verify the mesh with (default: <state-dir>/pki/ca.crt, else $TIDEMESH_CA)",
        )
        p.add_argument("--insecure", action="store_true", help="plaintext, to a mesh started with --insecure")
        p.add_argument(
            "--theme",
            choices=THEME_CHOICES,
            default=None,
            help="colours: auto (the terminal's background), light, dark, high-contrast (default: $TIDEMESH_THEME, "
            "else auto); NO_COLOR, CLICOLOR, CLICOLOR_FORCE, FORCE_COLOR and TERM=dumb are honoured",
        )
        add_output_args(p, streams=streams, destructive=destructive)

    p_up = sub.add_parser("up", help="start the whole mesh locally and supervise it")
    mesh_args(p_up)
    p_up.add_argument("--demo", action="store_true", help="run a short demo workload once healthy")
    p_up.add_argument(
        "--autoscale", default="", help="act on scale recommendations for these pools, e.g. inference=1:4"
    )
    add_output_args(p_up, formats=False)

    p_plan = sub.add_parser("plan", help="print the process table `up` would start")
    mesh_args(p_plan)
    add_output_args(p_plan)

    p_submit = sub.add_parser("submit", help="submit a task and stream its events")
    p_submit.add_argument("kind")
    p_submit.add_argument("--payload", default="{}", help="JSON fields of the kind's payload")
    p_submit.add_argument("--text", default=None, help="shorthand for --payload '{\"text\": TEXT}'")
    p_submit.add_argument("--priority", default="standard", choices=CLASS_NAMES)
    p_submit.add_argument("--tenant", default="default")
    p_submit.add_argument("--idempotency-key", default="")
    client_args(p_submit, streams=True)
    p_submit.add_argument("--no-wait", action="store_true", help="print the task id and return")

    p_watch = sub.add_parser("watch", help="stream a task's events")
    p_watch.add_argument("task_id")
    p_watch.add_argument("--after", type=int, default=0, help="resume after this sequence number")
    client_args(p_watch, streams=True)
    p_get = sub.add_parser("get", help="show a task")
    p_get.add_argument("task_id")
    client_args(p_get)
    p_cancel = sub.add_parser("cancel", help="cancel tasks: one, several, or every unfinished task of a tenant")
    p_cancel.add_argument("task_ids", nargs="*", metavar="task_id")
    p_cancel.add_argument("--tenant", default="", help="every unfinished task of this tenant")
    p_cancel.add_argument("--reason", default="cancelled from the CLI")
    client_args(p_cancel, destructive=True)

    p_completion = sub.add_parser(
        "completion",
        help="print the shell hook that completes tidemesh (commands, flags, and from the live mesh: kinds, "
        "tenants, task ids)",
        description='bash: eval "$(tidemesh completion bash)" in ~/.bashrc; zsh: the same in ~/.zshrc; '
        "fish: tidemesh completion fish > ~/.config/fish/completions/tidemesh.fish",
    )
    p_completion.add_argument("shell", choices=SHELLS)

    p_list = sub.add_parser("list", help="a tenant's tasks, newest first")
    p_list.add_argument("--tenant", default="", help="default: the credential's tenant")
    p_list.add_argument("--limit", type=int, default=20)
    p_list.add_argument("--page-token", default="")
    client_args(p_list)

    p_auth = sub.add_parser("auth", help="API keys, revocation, and local test tokens")
    p_auth.add_argument("action", choices=["key", "revoke", "token"])
    p_auth.add_argument("credential_id", nargs="?", default="", help="for revoke: an API key id or a token's jti")
    p_auth.add_argument("--tenant", default="")
    p_auth.add_argument(
        "--roles", default="submit,read", help="comma-separated: submit, read, admin, work (a worker's: tenant '*')"
    )
    p_auth.add_argument("--name", default="")
    p_auth.add_argument("--reason", default="")
    p_auth.add_argument("--ttl", type=float, default=3600.0, help="token lifetime, seconds")
    p_auth.add_argument("--audience", default="tidemesh")
    client_args(p_auth, destructive=True)

    p_dlq = sub.add_parser("dlq", help="dead-lettered tasks: list, show, replay, purge")
    p_dlq.add_argument("action", choices=["list", "show", "replay", "purge"])
    p_dlq.add_argument("task_id", nargs="?", default="")
    p_dlq.add_argument("--tenant", default="", help="list, replay or purge every dead letter of this tenant")
    client_args(p_dlq, destructive=True)

    add_schema_commands(sub, client_args)

    p_ca = sub.add_parser("ca", help="print the path of the local mesh's root certificate (for clients)")
    p_ca.add_argument("--state-dir", default=os.environ.get("TIDEMESH_STATE_DIR", "state"))
    add_output_args(p_ca)

    p_probe = sub.add_parser("probe", help="exit 0 when a process of the running mesh is healthy (Tilt)")
    p_probe.add_argument("name")
    p_probe.add_argument("--state-dir", default=os.environ.get("TIDEMESH_STATE_DIR", "state"))

    add_worker_commands(sub, client_args)
    add_dash_command(sub, client_args)
    add_model_commands(sub, client_args)
    p_status = sub.add_parser("status", help="components, health and queue depths")
    client_args(p_status)
    attach_examples(parser)
    return parser


def _client(args: argparse.Namespace, tenant: str = "default") -> Client:
    """A client of the mesh in --state-dir: its admin key and its root, unless told otherwise."""
    return Client(args.endpoint, tenant=tenant, credential=_credential(args), **_transport(args))


def _transport(args: argparse.Namespace) -> dict[str, Any]:
    """TLS verified against --cacert, else the local mesh's root, else $TIDEMESH_CA; plaintext
    with --insecure, or when the mesh in --state-dir runs --insecure and no --cacert says otherwise."""
    from mesh.supervisor import Plan

    if args.insecure:
        return {"insecure": True}
    plan_file = Path(args.state_dir) / "plan.json"
    if not args.cacert and plan_file.exists() and not Plan.from_json(json.loads(plan_file.read_text())).secure:
        return {"insecure": True}
    root = MeshSecurity(Path(args.state_dir)).root
    return {"ca": args.cacert or (str(root) if root.exists() else None)}  # None: $TIDEMESH_CA, system roots


def _credential_of(args: argparse.Namespace) -> tuple[str, str]:
    """The credential this command sends and where it came from (said by -v and by auth errors)."""
    from mesh.supervisor import admin_key

    if args.api_key:
        return args.api_key, "--api-key"
    if os.environ.get("TIDEMESH_API_KEY"):
        return os.environ["TIDEMESH_API_KEY"], "$TIDEMESH_API_KEY"
    key = admin_key(Path(args.state_dir))
    where = Path(args.state_dir) / "auth" / "admin.key"
    return key, (
        f"the local mesh's admin key ({where})" if key else f"none (no --api-key, no $TIDEMESH_API_KEY, no {where})"
    )


def _credential(args: argparse.Namespace) -> str:
    return _credential_of(args)[0]


def _connection_notes(args: argparse.Namespace) -> list[str]:
    """Where a client command connects and with what (-v)."""
    transport = _transport(args)
    if transport.get("insecure"):
        tls = "plaintext (--insecure)"
    else:
        tls = f"TLS, verified against {transport['ca'] or os.environ.get('TIDEMESH_CA') or 'the system roots'}"
    return [f"endpoint: {args.endpoint}", f"transport: {tls}", f"credential: {_credential_of(args)[1]}"]


_WAITING = (task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_RETRYING)


async def _stream(client: Client, task_id: str, after: int, out: Output) -> int:
    """A task's events as they come; on stderr meanwhile, a spinner while it waits in its queue
    and a bar of a fan-out's children (on a terminal; "still working" lines otherwise)."""
    final = None
    async with contextlib.AsyncExitStack() as shown:
        bar: Progress | None = None
        async for event in client.watch(task_id, after):
            waiting = event.state in _WAITING and not event.final
            if bar is not None and bar.total is None and not waiting:  # out of the queue
                await shown.aclose()
                bar = None
            if out.table:  # a user kind's output rendered through the registry's descriptors
                rendered = await client.to_dict(event) if event.output.HasField("custom") else None
                out.record(None, event_line(event, rendered, out.stamp))
            else:  # every Any (a user kind's input in the spec too) needs the registry's descriptors
                out.record(await client.to_dict(event), "")
            final = event
            if event.final:
                break
            if event.child_task_ids and (bar is None or bar.total is None):
                await shown.aclose()
                children = len(event.child_task_ids)
                label = f"{children} child tasks of {task_id}"
                bar = await shown.enter_async_context(out.progress(label, total=children, announce=False))
            elif bar is not None and bar.total is not None and event.HasField("output"):
                bar.advance("a child finished")
            elif waiting and bar is None:
                bar = await shown.enter_async_context(
                    out.progress(f"task {task_id} waiting in its queue", announce=False)
                )
    if final is None or final.state == task_pb2.TASK_STATE_SUCCEEDED:
        return EXIT_OK
    return EXIT_CANCELLED if final.state == task_pb2.TASK_STATE_CANCELLED else EXIT_FAILED


async def _submit(args: argparse.Namespace, out: Output) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise InvalidArgument("--payload", f"not JSON: {exc.msg}") from exc
    if not isinstance(payload, dict):
        raise InvalidArgument("--payload", "must be a JSON object")
    if args.text is not None:
        payload["text"] = args.text
    async with _client(args, args.tenant) as client:
        submitted = await client.submit(
            args.kind, payload, priority=args.priority, idempotency_key=args.idempotency_key
        )
        out.note(f"task {submitted.task_id}" + (" (deduplicated)" if submitted.deduplicated else ""))
        if args.no_wait:
            out.data(
                {"task_id": submitted.task_id, "deduplicated": submitted.deduplicated},
                table=lambda: out.line(submitted.task_id),
            )
            return EXIT_OK
        return await _stream(client, submitted.task_id, 0, out)


async def _status(args: argparse.Namespace, out: Output) -> int:

    from mesh.supervisor import Plan

    report: dict[str, object] = {"components": [], "queues": [], "tenant_queues": [], "workers": []}
    plan_file = Path(args.state_dir) / "plan.json"
    if plan_file.exists():
        plan = Plan.from_json(json.loads(plan_file.read_text()))
        report["secure"] = plan.secure
        for spec in plan.processes:
            healthy = await _probe(spec.health, args.state_dir)
            report["components"].append(  # type: ignore[attr-defined]
                {"name": spec.name, "address": spec.address, "healthy": healthy}
            )
    async with _client(args) as client:
        mesh = await client.status()
        kinds = await client.kinds()
    from google.protobuf.json_format import MessageToDict

    report["user_work"] = [
        {"kind": info.kind.name, **MessageToDict(b, always_print_fields_with_no_presence=True)}
        for info in kinds
        for b in info.backlog
    ]

    report["queues"] = [MessageToDict(q, always_print_fields_with_no_presence=True) for q in mesh.queues]
    report["tenant_queues"] = [MessageToDict(q, always_print_fields_with_no_presence=True) for q in mesh.tenant_queues]
    report["workers"] = [MessageToDict(w) for w in mesh.workers]
    report["inference_backends"] = [MessageToDict(b) for b in mesh.inference_backends]
    if not out.table:
        out.data(report)
        return EXIT_OK
    style = out.style or Style.for_stream(sys.stdout, args.theme)
    if report.get("secure") is False:
        insecure = "INSECURE MESH (--insecure): plaintext on every hop, NATS without users — experiments only"
        print(style.state(insecure, "warn") + "\n")
    for component in report["components"]:  # type: ignore[attr-defined]
        mark = style.state("healthy", "ok", 10) if component["healthy"] else style.state("DOWN", "error", 10)
        print(f"{component['name']:<12} {mark} {component['address']}")
    print(f"\n{'pool':<16} {'class':<12} {'tenant':<16} {'pending':>8} {'in-flight':>10} {'oldest(s)':>10}")
    for q in mesh.queues:
        name = class_name(q.priority_class)
        print(f"{q.pool:<16} {name:<12} {'(all)':<16} {q.pending:>8} {q.in_flight:>10} {q.oldest_age_s:>10.2f}")
        for t in (t for t in mesh.tenant_queues if t.pool == q.pool and t.priority_class == q.priority_class):
            print(f"{'':<16} {'':<12} {t.tenant:<16} {t.pending:>8} {t.in_flight:>10} {t.oldest_age_s:>10.2f}")
    print()
    for w in mesh.workers:
        health = status_pb2.WorkerHealth.Name(w.health).removeprefix("WORKER_HEALTH_").lower()
        mark = style.state(health, _HEALTH_ROLES.get(health, "warn"), 10)
        print(f"worker {w.worker_id:<40} {mark} in-flight {w.in_flight:<4} completed {w.completed}")
    for info in kinds:
        for waiting in info.backlog:
            note = f"  {waiting.note.upper()}" if waiting.note else ""
            print(
                f"user kind {info.kind.name} step {waiting.step} v{waiting.schema_version}: {waiting.queued} queued, "
                f"{waiting.compatible_workers} compatible workers{note}"
            )
    if mesh.inference_backends:
        print(f"\n{'inference backend':<24} {'circuit':<12} {'load':>9} {'latency':>10} {'served':>8}  models")
    for b in mesh.inference_backends:
        models = ", ".join(f"{m} (streams)" if m in b.streaming_models else m for m in b.models) or "(none resident)"
        load = f"{b.in_flight}/{b.capacity}"
        circuit = style.state(b.circuit, _CIRCUIT_ROLES.get(b.circuit, "warn"), 12)
        print(
            f"{b.backend + ' ' + b.address:<24} {circuit} {load:>9} {b.latency_ms:>8.1f}ms {b.texts_served:>8}"
            f"  {models}"
        )
        if b.last_error and b.circuit != "closed":
            print(f"{'':<24} last error: {b.last_error}")
        facts = [f"runs on {'/'.join(b.device_kinds)}"] if b.device_kinds else []
        facts += [f"{b.waiting} queued"] if b.waiting else []
        if b.memory_budget_bytes:
            facts.append(f"memory {b.memory_resident_bytes / 2**20:.0f}/{b.memory_budget_bytes / 2**20:.0f} MiB")
        facts += [f"loads on demand: {', '.join(b.loadable_models)}"] if b.loadable_models else []
        if facts:
            print(f"{'':<24} {'; '.join(facts)}")
        for st in b.model_statistics:  # the backend's own count (Triton's statistics)
            served = max(st.success_count, 1)
            print(
                f"{'':<24} {st.model}: {st.inference_count} inferences in {st.execution_count} executions, "
                f"{st.failure_count} failed; per request queue {st.queue_ms_total / served:.1f} ms, "
                f"compute {st.compute_ms_total / served:.1f} ms"
            )
    hosts = {b.endpoint or b.instance: b for b in mesh.inference_backends if b.devices_note}
    for where, b in sorted(hosts.items()):
        print(f"\ndevices of inference {where}: {b.devices_note}")
        for d in b.devices:
            sensors = f" {d.power_watts:.0f} W {d.temperature_celsius:.0f} C" if d.kind == "gpu" else ""
            print(
                f"  {d.kind} {d.index} {d.name:<28} utilization {d.utilization:>4.0%}  memory "
                f"{d.memory_used_bytes / 2**30:.1f}/{d.memory_total_bytes / 2**30:.1f} GiB{sensors}"
            )
    return EXIT_OK


async def _probe(health: Any, state_dir: str) -> bool:
    from mesh.supervisor import Probe

    async with Probe(health, state_dir) as probe:
        return await probe.check()


def _ca(args: argparse.Namespace, out: Output) -> int:
    root = MeshSecurity(Path(args.state_dir).resolve()).root
    if not root.exists():
        raise NotFound(f"no local CA in {args.state_dir} (is the mesh started with `tidemesh up`, not --insecure?)")
    out.data({"ca": str(root)}, table=lambda: out.line(str(root)))
    return EXIT_OK


async def _probe_named(args: argparse.Namespace) -> int:
    from mesh.supervisor import Plan

    plan = Plan.from_json(json.loads((Path(args.state_dir) / "plan.json").read_text()))
    return EXIT_OK if await _probe(plan.by_name(args.name).health, args.state_dir) else EXIT_FAILED


def _letter_line(letter: Any) -> str:
    from mesh.v1 import deadletter_pb2

    klass = deadletter_pb2.FailureClass.Name(letter.classification).removeprefix("FAILURE_CLASS_")
    when = letter.dead_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
    replays = f"  replayed as {', '.join(letter.replayed_as)}" if letter.replayed_as else ""
    return f"{when}  {letter.task_id}  {letter.spec.kind:<8} {klass:<20} {letter.message[:60]}{replays}"


async def _dlq(args: argparse.Namespace, out: Output) -> int:
    from google.protobuf.json_format import MessageToDict

    if args.action == "show" and not args.task_id:
        raise InvalidArgument("task_id", "dlq show needs a task id")
    if args.action in ("replay", "purge") and not args.task_id and not args.tenant:
        raise InvalidArgument("task_id", f"dlq {args.action} needs a task id or --tenant")
    async with _client(args) as client:
        if args.action == "list":
            letters = await client.dead_letters(args.tenant)
            out.data(
                [MessageToDict(letter) for letter in letters],
                table=lambda: out.lines(_letter_line(letter) for letter in letters),
            )
        elif args.action == "show":
            out.data(MessageToDict(await client.dead_letter(args.task_id)), table=None)
        elif args.action == "replay" and args.task_id:
            replay = await client.replay(args.task_id)
            out.data(
                {"task_id": replay.task_id, "deduplicated": replay.deduplicated},
                table=lambda: out.line(replay.task_id + (" (already replayed)" if replay.deduplicated else "")),
            )
        elif args.action == "replay":
            await _replay_tenant(client, args.tenant, out)
        else:
            if args.task_id:
                out.confirm(f"purge the dead letter of {args.task_id}", [args.task_id])
            else:
                letters = await client.dead_letters(args.tenant, limit=_EVERY)
                out.confirm(f"purge every dead letter of tenant {args.tenant}", [letter.task_id for letter in letters])
            purged = await client.purge_dead_letters(args.task_id, args.tenant)
            out.data({"purged": purged}, table=lambda: out.line(f"purged {purged}"))
    return EXIT_OK


_EVERY = 10_000  # the most records one bulk command lists before it acts


async def _replay_tenant(client: Client, tenant: str, out: Output) -> None:
    """Replay every dead letter of `tenant` not replayed yet, after asking, with a progress bar."""
    letters = [letter for letter in await client.dead_letters(tenant, limit=_EVERY) if not letter.replayed_as]
    if not letters:
        out.note(f"no dead letter of tenant {tenant} waits for a replay")
        out.data([], table=lambda: None)
        return
    out.confirm(f"replay {len(letters)} dead letters of tenant {tenant}", [letter.task_id for letter in letters])
    replayed: list[dict[str, Any]] = []
    async with out.progress(f"replaying dead letters of {tenant}", total=len(letters)) as progress:
        for letter in letters:
            replay = await client.replay(letter.task_id)
            replayed.append({"dead_letter": letter.task_id, "task_id": replay.task_id})
            progress.advance(f"{letter.task_id} → {replay.task_id}")
    out.data(replayed, table=lambda: out.line(f"replayed {len(replayed)} dead letters of tenant {tenant}"))


async def _list(client: Client, args: argparse.Namespace, out: Output) -> int:
    from google.protobuf.json_format import MessageToDict

    tasks, token = await client.list_tasks(args.tenant, args.limit, args.page_token)

    def table() -> None:
        for task in tasks:
            state = task_pb2.TaskState.Name(task.state).removeprefix("TASK_STATE_")
            out.line(f"{task.spec.task_id}  {task.spec.kind:<10} {state:<14} {task.updated.ToJsonString()}")
        if token:
            out.note(f"more: --page-token {token}")

    if out.format == "jsonl":  # one task per line; the next page's token on stderr
        out.data([MessageToDict(t) for t in tasks])
        if token:
            out.note(f"more: --page-token {token}")
        return EXIT_OK
    out.data({"tasks": [MessageToDict(t) for t in tasks], "next_page_token": token}, table=table)
    return EXIT_OK


_UNFINISHED = (task_pb2.TASK_STATE_QUEUED, task_pb2.TASK_STATE_RUNNING, task_pb2.TASK_STATE_RETRYING)


async def _cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    """Cancel the tasks named, or every unfinished one of --tenant; more than one asks first."""
    ids = list(args.task_ids)
    if args.tenant:
        token = ""
        while len(ids) < _EVERY:
            tasks, token = await client.list_tasks(args.tenant, 500, token)
            ids += [t.spec.task_id for t in tasks if t.state in _UNFINISHED]
            if not token:
                break
        if not ids:
            out.note(f"tenant {args.tenant} has no unfinished task")
    elif not ids:
        raise InvalidArgument("task_id", "cancel needs a task id (or several, or --tenant)")
    if len(ids) > 1 or args.tenant:
        out.confirm(f"cancel {len(ids)} tasks", ids)
    states: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        progress = await stack.enter_async_context(out.progress("cancelling", total=len(ids))) if len(ids) > 1 else None
        for task_id in ids:
            states[task_id] = task_pb2.TaskState.Name(await client.cancel(task_id, reason=args.reason))
            if progress is not None:
                progress.advance(task_id)
    if len(ids) == 1 and not args.tenant:
        out.data({"task_id": ids[0], "state": states[ids[0]]}, table=lambda: out.line(states[ids[0]]))
    else:
        out.data(
            [{"task_id": task_id, "state": state} for task_id, state in states.items()],
            table=lambda: out.lines(f"{task_id}  {state}" for task_id, state in states.items()),
        )
    return EXIT_OK


async def _auth(args: argparse.Namespace, out: Output) -> int:
    roles = [r for r in args.roles.split(",") if r]
    if args.action == "token":  # minted locally with the mesh's own signing secret
        from services.gateway._auth import mint_token

        secret = Path(args.state_dir) / "auth" / "jwt.secret"
        if not args.tenant or not secret.exists():
            raise InvalidArgument("tenant", f"auth token needs --tenant and {secret} (a mesh started with auth)")
        token = mint_token(secret.read_text().strip(), args.tenant, roles, args.audience, args.ttl)
        out.data({"token": token}, table=lambda: out.line(token))
        return EXIT_OK
    async with _client(args) as client:
        if args.action == "key":
            if not args.tenant:
                raise InvalidArgument("tenant", "auth key needs --tenant (or * for an admin key)")
            created = await client.create_api_key(args.tenant, roles, args.name)
            out.data(
                {"key_id": created.key_id, "api_key": created.api_key},
                table=lambda: out.lines([f"key id {created.key_id}", created.api_key]),
            )
        else:
            if not args.credential_id:
                raise InvalidArgument("credential_id", "auth revoke needs the key id or the token's jti")
            out.confirm(
                f"revoke credential {args.credential_id} (its holders are refused from now on)", [args.credential_id]
            )
            await client.revoke_credential(args.credential_id, args.reason)
            out.data({"revoked": args.credential_id}, table=lambda: out.line(f"revoked {args.credential_id}"))
    return EXIT_OK


def _plan(args: argparse.Namespace, out: Output) -> int:
    plan = plan_from(args)
    out.data(
        plan.to_json(),
        table=lambda: out.lines(
            f"{spec.name:<12} {spec.address:<28} {' '.join(spec.command)}" for spec in plan.processes
        ),
    )
    return EXIT_OK


async def _get(client: Client, args: argparse.Namespace, out: Output) -> int:
    from google.protobuf.json_format import MessageToDict

    info = await client.get(args.task_id)
    out.data(MessageToDict(info), table=None)  # a task's record reads best as YAML
    return EXIT_OK


async def _dispatch(args: argparse.Namespace, out: Output) -> int:
    if args.command == "up":
        return await up(args)
    if args.command == "plan":
        return _plan(args, out)
    if args.command == "ca":
        return _ca(args, out)
    if args.command == "probe":
        return await _probe_named(args)
    if hasattr(args, "endpoint"):
        for note in _connection_notes(args):
            out.detail(note)
    if args.command == "submit":
        return await _submit(args, out)
    if args.command == "status":
        return await _status(args, out)
    if args.command == "dlq":
        return await _dlq(args, out)
    if args.command == "auth":
        return await _auth(args, out)
    if args.command == "worker":
        return await run_worker(args, _transport(args), _credential(args))
    if args.command == "dash":
        return await dash_command(args, _transport(args), _credential(args))
    if args.command == "kinds":
        return await kinds_command(args, _transport(args), _credential(args))
    if args.command == "schema":
        return await schema_command(args, _transport(args), _credential(args))
    async with _client(args) as client:
        if args.command == "model":
            return await model_command(args, client)
        if args.command == "infer":
            return await infer_command(args, client)
        if args.command == "watch":
            return await _stream(client, args.task_id, args.after, out)
        if args.command == "get":
            return await _get(client, args, out)
        if args.command == "list":
            return await _list(client, args, out)
        return await _cancel(client, args, out)


def _failure(exc: BaseException, args: argparse.Namespace) -> tuple[str, int]:
    """What a failed command says — the error, then what to do next — and its exit code."""
    endpoint = getattr(args, "endpoint", "")
    if isinstance(exc, Declined):
        return str(exc), EXIT_INVALID
    if isinstance(exc, InvalidArgument):
        hint = ""
        if "kind" in exc.message and getattr(args, "command", "") == "submit":
            hint = "\n  the kinds this mesh knows: `tidemesh kinds`"
        return f"invalid argument: {exc.message}{hint}", EXIT_INVALID
    if isinstance(exc, NotFound):
        return f"not found: {exc.message}", EXIT_INVALID
    if isinstance(exc, Unavailable):
        where = f" at {endpoint}" if endpoint else ""
        return f"mesh unavailable{where}: {exc.message}\n  {START_THE_MESH}", EXIT_UNAVAILABLE
    if isinstance(exc, Unauthenticated | PermissionDenied):
        source = _credential_of(args)[1] if hasattr(args, "api_key") else "none"
        verb = "refused the credential" if isinstance(exc, Unauthenticated) else "denied the credential"
        return (
            f"{exc.error_class}: {exc.message}\n  the mesh {verb} from {source}; pass another with --api-key "
            "or $TIDEMESH_API_KEY (`tidemesh auth key --tenant T` makes one)",
            EXIT_FAILED,
        )
    assert isinstance(exc, MeshError)
    return f"{exc.error_class}: {exc.message}", EXIT_FAILED


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    attach_completers(parser)
    argcomplete.autocomplete(parser)  # answers the shell's completion request (and exits) when it is one
    args = parser.parse_args(argv)
    if args.command == "completion":
        print(shell_hook(args.shell))
        sys.exit(EXIT_OK)
    quiet_ssl_eof_noise()  # asyncio's note on each TLS connection nats-py closes (status probes NATS)
    out = Output.from_args(args)
    if out.verbosity >= 2:  # every call the client makes, when it ends
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s call %(message)s"))
        calls_log.addHandler(handler)
        calls_log.setLevel(logging.DEBUG)
    try:
        code = asyncio.run(_dispatch(args, out))
    except (MeshError, Declined) as exc:
        message, code = _failure(exc, args)
        print(f"tidemesh: {message}", file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
