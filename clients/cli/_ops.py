"""Operator commands: status, dead letters, credentials, the local CA, health probes, the plan."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from clients.cli._config import plan_for, resolve_args, say_resolved
from clients.cli._connect import client_for
from clients.cli._exit import EXIT_FAILED, EXIT_OK
from clients.cli._output import Output
from clients.cli._stepup import step_up_of, with_step_up
from clients.cli._style import Style
from clients.cli._tasks import BULK_LIMIT, for_each
from clients.sdk import Client
from mesh.errors import InvalidArgument, NotFound
from mesh.priority import class_name
from mesh.supervisor import MeshSecurity
from mesh.v1 import status_pb2

# The role (colour and symbol) of each state word `status` prints.
_HEALTH_ROLES = {"alive": "ok", "draining": "warn", "dead": "error"}
_CIRCUIT_ROLES = {"closed": "ok", "half_open": "warn", "open": "error"}


async def status_command(args: argparse.Namespace, out: Output) -> int:
    from mesh.supervisor import Plan

    report: dict[str, object] = {"components": [], "queues": [], "tenant_queues": [], "workers": []}
    plan_file = Path(args.state_dir) / "plan.json"
    async with client_for(args) as client:
        mesh_and_kinds = asyncio.gather(client.status(), client.kinds())
        if plan_file.exists():  # every component probed at once, beside the calls
            plan = Plan.from_json(json.loads(plan_file.read_text()))
            report["secure"] = plan.secure
            healthy = await asyncio.gather(*(_probe(spec.health, args.state_dir) for spec in plan.processes))
            report["components"] = [
                {"name": spec.name, "address": spec.address, "healthy": ok}
                for spec, ok in zip(plan.processes, healthy, strict=True)
            ]
        mesh, kinds = await mesh_and_kinds
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


def ca_command(args: argparse.Namespace, out: Output) -> int:
    action = getattr(args, "action", "path")
    if action in ("export", "import"):
        return _identity_command(action, args, out)
    root = MeshSecurity(Path(args.state_dir).resolve()).root
    if not root.exists():
        raise NotFound(f"no local CA in {args.state_dir} (is the mesh started with `tidemesh up`, not --insecure?)")
    out.data({"ca": str(root)}, table=lambda: out.line(str(root)))
    return EXIT_OK


def _identity_command(action: str, args: argparse.Namespace, out: Output) -> int:
    """``ca export FOLDER`` / ``ca import FOLDER``: the mesh's identity, for its other hosts."""
    from mesh.supervisor import IdentityError, export_identity, import_identity

    if not args.folder:
        raise InvalidArgument("folder", f"ca {action} needs a folder")
    state, folder = Path(args.state_dir).resolve(), Path(args.folder).resolve()
    try:
        if action == "export":
            written = export_identity(state, folder)
        else:
            written = import_identity(folder, state)
    except IdentityError as exc:
        raise InvalidArgument("folder", str(exc)) from None
    out.data(
        {"action": action, "files": [str(path) for path in written]},
        table=lambda: out.line(
            f"exported the mesh's identity ({len(written)} files) to {folder}: it holds the root's key and every "
            "credential — copy it to the other hosts over a safe channel, `tidemesh ca import` it there, then delete it"
            if action == "export"
            else f"imported the mesh's identity into {state} ({len(written)} files new): `tidemesh up --join …` next"
        ),
    )
    return EXIT_OK


async def probe_command(args: argparse.Namespace) -> int:
    from mesh.supervisor import Plan

    plan = Plan.from_json(json.loads((Path(args.state_dir) / "plan.json").read_text()))
    return EXIT_OK if await _probe(plan.by_name(args.name).health, args.state_dir) else EXIT_FAILED


def _letter_line(letter: Any) -> str:
    from mesh.v1 import deadletter_pb2

    klass = deadletter_pb2.FailureClass.Name(letter.classification).removeprefix("FAILURE_CLASS_")
    when = letter.dead_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
    replays = f"  replayed as {', '.join(letter.replayed_as)}" if letter.replayed_as else ""
    return f"{when}  {letter.task_id}  {letter.spec.kind:<8} {klass:<20} {letter.message[:60]}{replays}"


async def dlq_command(args: argparse.Namespace, out: Output) -> int:
    from google.protobuf.json_format import MessageToDict

    if args.action == "show" and not args.task_id:
        raise InvalidArgument("task_id", "dlq show needs a task id")
    if args.action in ("replay", "purge") and not args.task_id and not args.tenant:
        raise InvalidArgument("task_id", f"dlq {args.action} needs a task id or --tenant")
    async with client_for(args) as client:
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
                letters = await client.dead_letters(args.tenant, limit=BULK_LIMIT)
                out.confirm(f"purge every dead letter of tenant {args.tenant}", [letter.task_id for letter in letters])
            purged = await with_step_up(
                out, step_up_of(client), lambda token: client.purge_dead_letters(args.task_id, args.tenant, token)
            )
            out.data({"purged": purged}, table=lambda: out.line(f"purged {purged}"))
    return EXIT_OK


async def _replay_tenant(client: Client, tenant: str, out: Output) -> None:
    """Replay every dead letter of `tenant` not replayed yet, after asking, with a progress bar."""
    letters = [letter for letter in await client.dead_letters(tenant, limit=BULK_LIMIT) if not letter.replayed_as]
    if not letters:
        out.note(f"no dead letter of tenant {tenant} waits for a replay")
        out.data([], table=lambda: None)
        return
    out.confirm(f"replay {len(letters)} dead letters of tenant {tenant}", [letter.task_id for letter in letters])
    async with out.progress(f"replaying dead letters of {tenant}", total=len(letters)) as progress:
        replays = await for_each(
            letters, lambda letter: client.replay(letter.task_id), progress,
            lambda letter, replay: f"{letter.task_id} → {replay.task_id}",
        )  # fmt: skip
    replayed = [
        {"dead_letter": letter.task_id, "task_id": replay.task_id}
        for letter, replay in zip(letters, replays, strict=True)
    ]
    out.data(replayed, table=lambda: out.line(f"replayed {len(replayed)} dead letters of tenant {tenant}"))


def plan_command(args: argparse.Namespace, out: Output) -> int:
    resolved = resolve_args(args)
    say_resolved(resolved, out)
    plan = plan_for(resolved.manifest)
    out.data(
        plan.to_json(),
        table=lambda: out.lines(
            f"{spec.name:<12} {spec.address:<28} {' '.join(spec.command)}" for spec in plan.processes
        ),
    )
    return EXIT_OK
