"""``tidemesh config plan|apply|history|rollback`` — changing a running mesh's manifest.

``plan -f new.yaml`` asks the running mesh (ConfigService) what the manifest would change: a
diff per field against the live revision (secret references masked), the steps it takes with
their cost, what cannot change in place, and a simulation of its impact — per pool and class,
queue wait p50/p95, utilization and drain time, now and after, at the arrival rates and service
times the mesh measured (`mesh.capacity.preview`), and the policies' verdicts (`mesh.policy`). It
writes the plan (``--out``, default ``tidemesh.plan.json``). Exit 0: nothing would change; 2:
changes; 1: an error, or a change that cannot be applied (in place, or past an enforced policy).

``apply PLAN`` applies exactly that plan (the mesh refuses it if it moved on since), streams the
rollout and the health gate's bake, and ends applied or rolled back (exit 0 or 1); Ctrl-C rolls
the change back. ``history`` lists the revisions; ``rollback [REVISION]`` applies an earlier one
(default: the one before the current), planned and gated like any change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from clients.cli._exit import EXIT_FAILED, EXIT_OK
from clients.cli._output import Output
from clients.cli._stepup import step_up_on, with_step_up
from clients.sdk._client import STEP_UP_HEADER, mesh_channel
from mesh.capacity import Load, PoolPreview, preview
from mesh.errors import InvalidArgument, MeshError
from mesh.manifest import Manifest, SecretRef, diff, document_of, encode, read, resolve, walk
from mesh.manifest._fields import matches
from mesh.manifest._model import POOL_NAMES
from mesh.policy import evaluate
from mesh.priority import class_name
from mesh.rpc import raise_from_rpc_error
from mesh.v1 import config_pb2, config_pb2_grpc, gateway_pb2, gateway_pb2_grpc

__all__ = ["CHANGE_ACTIONS", "EXIT_CHANGES", "add_change_commands", "change_command", "masked_changes"]

CHANGE_ACTIONS = ("plan", "apply", "history", "rollback")

EXIT_CHANGES = 2
TIMEOUT_S = 30.0
PLAN_KIND = "Plan"
MASK = "••••••"
SECRET_WORDS = ("password", "secret", "token", "apikey", "api_key", "credential", "privatekey")


def add_change_commands(actions: argparse._SubParsersAction, client_args: Callable[..., None]) -> None:  # type: ignore[type-arg]
    p_plan = actions.add_parser("plan", help="what a manifest would change in the running mesh, with a simulation")
    p_plan.add_argument("-f", "--file", required=True, metavar="MANIFEST", help="the new tidemesh.yaml (or JSON)")
    p_plan.add_argument("--out", default="tidemesh.plan.json", help="where the plan goes (what `apply` takes)")
    p_plan.add_argument(
        "--load-window",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the measured load the simulation runs on: the last SECONDS of it (default: the mesh's whole window)",
    )
    p_apply = actions.add_parser("apply", help="apply a plan: roll out, watch the health gate, roll back if it trips")
    p_apply.add_argument("plan", help="the file `tidemesh config plan` wrote")
    p_apply.add_argument("--bake", type=float, default=30.0, metavar="SECONDS", help="how long the gate watches")
    p_apply.add_argument(
        "--override-policies", action="store_true", help="go ahead past enforced policies (policy.override)"
    )
    p_history = actions.add_parser("history", help="the configuration's revisions, newest first")
    p_history.add_argument("--limit", type=int, default=20)
    p_rollback = actions.add_parser("rollback", help="apply an earlier revision (default: the one before the current)")
    p_rollback.add_argument("revision", nargs="?", type=int, default=0)
    p_rollback.add_argument("--bake", type=float, default=30.0, metavar="SECONDS")
    for p in (p_plan, p_apply, p_history, p_rollback):
        client_args(p)


# --- the diff -----------------------------------------------------------------------------------


def _secret_paths() -> list[str]:
    return [f.path for f in walk(Manifest) if SecretRef.__name__ in str(f.type)]


def masked_changes(before: Manifest, after: Manifest) -> list[dict[str, Any]]:
    """Every field that differs, grouped by its resource (the path's first part); secret
    references and anything named like a secret shown masked."""
    secrets = _secret_paths()
    changes = []
    for change in diff(encode(before), encode(after)):
        secret = any(matches(p, change.path) or change.path.startswith(p + ".") for p in secrets) or any(
            word in change.path.lower().replace("-", "_") for word in SECRET_WORDS
        )
        changes.append(
            {
                "resource": change.path.split(".", 1)[0],
                "path": change.path,
                "before": MASK if secret and change.before is not None else change.before,
                "after": MASK if secret and change.after is not None else change.after,
                "masked": secret,
            }
        )
    return changes


# --- the simulation -----------------------------------------------------------------------------


def _number(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value * 1000:.0f} ms" if value < 10 else f"{value:.0f} s"


def simulate_change(before: Manifest, after: Manifest, loads: Sequence[Load]) -> list[dict[str, Any]]:
    """Per pool and class with load: the preview under the live manifest and under the new one."""
    if not loads:
        return []
    now = {p.pool: p for p in preview(before, loads)}
    then = {p.pool: p for p in preview(after, loads)}
    rows = []
    for pool, was in now.items():
        will: PoolPreview = then[pool]
        rows.append({"pool": pool, "now": was.to_json(), "after": will.to_json()})
    return rows


async def measured_loads(channel: grpc.aio.Channel, window_s: float = 0.0) -> tuple[list[Load], str]:
    """What the mesh measured over its load window (GetLoad), as loads; ([], why) without figures.
    A row whose arrivals have no finished attempt yet to time is left out, and said."""
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)  # type: ignore[no-untyped-call]
    try:
        reply = await stub.GetLoad(gateway_pb2.GetLoadRequest(window_s=window_s), timeout=TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        return [], f"the mesh's load figures cannot be read: {exc.details()}"
    loads, untimed = [], []
    for row in reply.report.loads:
        name = class_name(row.priority_class)
        if row.pool not in POOL_NAMES or not (row.arrival_per_s or row.depth):
            continue
        if not row.service_s_samples:
            untimed.append(f"{row.pool}/{name}")
            continue
        loads.append(Load(row.pool, name, row.arrival_per_s, tuple(row.service_s_samples), int(row.depth)))
    window = f"measured over the last {reply.report.window_s:.0f} s"
    if untimed:
        window += f"; no attempt finished yet to time in {', '.join(untimed)}"
    return loads, window if loads else f"no load {window}"


# --- the commands -------------------------------------------------------------------------------


async def change_command(args: argparse.Namespace, transport: dict[str, Any], credential: str, out: Output) -> int:
    channel = mesh_channel(
        args.endpoint, credential, transport.get("ca"), bool(transport.get("insecure")), surface="cli"
    )
    async with channel:
        stub = config_pb2_grpc.ConfigServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            if args.config_action == "plan":
                return await _plan(stub, channel, args, out)
            if args.config_action == "apply":
                plan = _read_plan(args.plan)
                return await _apply(stub, channel, plan, args.bake, out, override=args.override_policies)
            if args.config_action == "history":
                return await _history(stub, args.limit, out)
            return await _rollback(stub, channel, args, out)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)


async def _current(stub: config_pb2_grpc.ConfigServiceStub, revision: int = 0) -> config_pb2.ConfigRevision:
    reply = await stub.GetConfig(config_pb2.GetConfigRequest(revision=revision), timeout=TIMEOUT_S)
    found: config_pb2.ConfigRevision = reply.revision
    return found


async def make_plan(
    stub: config_pb2_grpc.ConfigServiceStub,
    channel: grpc.aio.Channel,
    new: Manifest,
    source: str,
    load_window_s: float = 0.0,
) -> dict[str, Any]:
    """The plan of `new` against the running mesh (what `apply` takes)."""
    current = await _current(stub)
    live = resolve(json.loads(current.manifest_json), f"revision {current.number}")
    document = document_of(new)
    planned = await stub.PlanConfig(
        config_pb2.PlanConfigRequest(manifest_json=json.dumps(document)), timeout=TIMEOUT_S * 2
    )
    loads, why = await measured_loads(channel, load_window_s)
    verdicts = evaluate(new)
    return {
        "apiVersion": "tidemesh.dev/v1alpha1",
        "kind": PLAN_KIND,
        "source": source,
        "base": {"revision": planned.current.number, "digest": planned.current.digest},
        "manifest": document,
        "manifestDigest": planned.manifest_digest,
        "changes": masked_changes(live, new),
        "steps": [{"action": s.action, "component": s.component, "cost": s.cost} for s in planned.steps],
        "refused": list(planned.refused),
        "stepsDigest": planned.steps_digest,
        "policies": [v.to_json() for v in verdicts.violations],
        "blocked": [f"{v.rule} at {v.path or 'the mesh'}: {v.message}" for v in verdicts.blocking],
        "simulation": simulate_change(live, new, loads),
        "load": [
            {
                "pool": load.pool,
                "priorityClass": load.priority_class,
                "arrivalPerSecond": load.arrival_per_s,
                "serviceMeanSeconds": load.mean_service_s,
                "serviceSamples": len(load.service_s),
                "backlog": load.backlog,
            }
            for load in loads
        ],
        "simulationNote": why,
    }


def _say_plan(plan: dict[str, Any], out: Output) -> None:
    base = plan["base"]
    out.line(f"against revision {base['revision']} ({base['digest'][:19]}…)")
    if not plan["changes"] and not plan["steps"]:
        out.line("no change")
        return
    resource = ""
    for change in plan["changes"]:
        if change["resource"] != resource:
            resource = change["resource"]
            out.line(f"{resource}:")
        out.line(f"  ~ {change['path']}: {change['before']!r} → {change['after']!r}")
    out.line("steps:" if plan["steps"] else "steps: none (nothing running restarts)")
    for step in plan["steps"]:
        out.line(f"  {step['action']:<8} {step['component']:<14} {step['cost']}")
    for refused in plan["refused"]:
        out.line(f"  cannot change in place: {refused}")
    for v in plan["policies"]:
        out.line(f"  policy {v['rule']} ({v['mode']}, {v['severity']}) at {v['path'] or 'the mesh'}: {v['message']}")
    if plan["blocked"]:
        out.line("  blocked: an enforced policy refuses it (policy.override, with a second factor, goes ahead)")
    if plan["simulation"]:
        out.line("simulation (queue wait p50 / p95, utilization; now → after):")
        for row in plan["simulation"]:
            now, after = row["now"], row["after"]
            for was, will in zip(now["classes"], after["classes"], strict=True):
                if not was["arrivalPerSecond"]:
                    continue
                out.line(
                    f"  {row['pool']}/{was['priorityClass']} at {float(was['arrivalPerSecond']):.2f}/s: "
                    f"{_wait(was)} → {_wait(will)}; utilization {_util(now)} → {_util(after)}"
                )
            if after.get("drainSeconds") not in (None, 0):
                out.line(f"    backlog drains in {after['drainSeconds']} s after the change")
    else:
        out.line(f"simulation: none ({plan['simulationNote'] or 'no load measured recently'})")


def _wait(c: dict[str, Any]) -> str:
    p50, p95 = (math.inf if v == "inf" else float(v) for v in (c["waitP50Seconds"], c["waitP95Seconds"]))
    return f"{_number(p50)} / {_number(p95)}"


def _util(p: dict[str, Any]) -> str:
    value = p["utilization"]
    return "∞" if value == "inf" else f"{float(value):.0%}"


async def _plan(
    stub: config_pb2_grpc.ConfigServiceStub, channel: grpc.aio.Channel, args: argparse.Namespace, out: Output
) -> int:
    new = resolve(read(args.file), args.file)
    plan = await make_plan(stub, channel, new, args.file, args.load_window)
    _write_plan(args.out, plan)

    def table() -> None:
        _say_plan(plan, out)
        out.line(f"plan written to {args.out}")

    out.data(plan, table=table)
    if plan["refused"] or plan["blocked"]:
        return EXIT_FAILED
    return EXIT_CHANGES if plan["changes"] or plan["steps"] else EXIT_OK


def _write_plan(path: str, plan: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(plan, indent=2, ensure_ascii=False) + "\n")


def _read_plan(path: str) -> dict[str, Any]:
    try:
        plan = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument("plan", f"{path} is not a plan `tidemesh config plan` wrote: {exc}") from None
    if not isinstance(plan, dict) or plan.get("kind") != PLAN_KIND or "stepsDigest" not in plan:
        raise InvalidArgument("plan", f"{path} is not a plan `tidemesh config plan` wrote")
    return plan


async def _apply(
    stub: config_pb2_grpc.ConfigServiceStub,
    channel: grpc.aio.Channel,
    plan: dict[str, Any],
    bake_s: float,
    out: Output,
    rollback_to: int = 0,
    override: bool = False,
) -> int:
    request = config_pb2.ApplyConfigRequest(
        manifest_json=json.dumps(plan["manifest"]),
        base_digest=plan["base"]["digest"],
        steps_digest=plan["stepsDigest"],
        bake_seconds=bake_s,
        rollback_to=rollback_to,
        override_policies=override,
    )
    events: list[dict[str, Any]] = []

    async def call(token: str) -> str:
        metadata = ((STEP_UP_HEADER, token),) if token else ()
        phase = ""
        try:
            async for event in stub.ApplyConfig(request, metadata=metadata):
                phase = event.phase
                entry = {"phase": event.phase, "message": event.message, "revision": event.revision}
                events.append(entry)
                if out.table:
                    out.line(f"{event.phase:<12} {event.message}")
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)
        return phase

    try:
        phase = await with_step_up(out, step_up_on(channel), call)
    except (KeyboardInterrupt, asyncio.CancelledError):
        revision = next((e["revision"] for e in events if e["revision"]), 0)
        out.note("interrupted: the mesh rolls the change back")
        if revision:
            with contextlib.suppress(MeshError, grpc.aio.AioRpcError):
                await _wait_final(stub, revision, out)
        raise
    if not out.table:
        out.data({"phase": phase, "events": events})
    return EXIT_OK if phase == "applied" else EXIT_FAILED


async def _wait_final(stub: config_pb2_grpc.ConfigServiceStub, revision: int, out: Output) -> None:
    for _ in range(600):
        found = await _current(stub, revision)
        if found.state != "applying":
            out.note(f"revision {revision}: {found.state} ({found.reason})")
            return
        await asyncio.sleep(0.5)


async def _history(stub: config_pb2_grpc.ConfigServiceStub, limit: int, out: Output) -> int:
    reply = await stub.ListRevisions(config_pb2.ListRevisionsRequest(limit=limit), timeout=TIMEOUT_S)
    rows = [
        {
            "revision": r.number,
            "state": r.state,
            "source": r.source,
            "author": r.author,
            "created": r.created.ToJsonString() if r.HasField("created") else "",
            "digest": r.digest,
            "reason": r.reason,
        }
        for r in reply.revisions
    ]

    def table() -> None:
        for row in rows:
            reason = f" — {row['reason']}" if row["reason"] else ""
            out.line(
                f"{row['revision']:>4}  {row['state']:<12} {row['source']:<9} {row['created'][:19]:<20} "
                f"{row['author']:<16}{reason}"
            )

    out.data(rows, table=table)
    return EXIT_OK


async def _rollback(
    stub: config_pb2_grpc.ConfigServiceStub, channel: grpc.aio.Channel, args: argparse.Namespace, out: Output
) -> int:
    current = await _current(stub)
    target = args.revision or current.parent
    if not target:
        raise InvalidArgument("revision", f"revision {current.number} has none before it; name one")
    if target == current.number:
        raise InvalidArgument("revision", f"revision {target} is the current one")
    earlier = await _current(stub, target)
    manifest = resolve(json.loads(earlier.manifest_json), f"revision {target}")
    plan = await make_plan(stub, channel, manifest, f"revision {target}")
    if out.table:
        _say_plan(plan, out)
    if plan["refused"]:
        raise InvalidArgument("revision", "; ".join(plan["refused"]))
    return await _apply(stub, channel, plan, args.bake, out, rollback_to=target)


# --- the supervisor's side (`tidemesh up`) ------------------------------------------------------


def controller_for(supervisor: Any, manifest: Manifest) -> Any:
    """The `ConfigController` `tidemesh up` runs beside `supervisor` (started from `manifest`)."""
    from mesh.manifest import plan_arguments, record
    from mesh.supervisor import build_plan
    from mesh.supervisor._apply import ConfigController
    from mesh.supervisor._gate import GateLimits

    def planner(document: Any, state_dir: Path, ports: Any) -> Any:
        return build_plan(state_dir, **plan_arguments(resolve(document, "the change")), reuse_ports=ports)

    def recorder(plan: Any, document: Any) -> None:
        record(plan, resolve(document, "the change"))

    def limits(document: Any) -> GateLimits:
        lanes = resolve(document, "the change").classes.lanes()
        return GateLimits(wait_bounds_s={name: lane.wait_bound_seconds for name, lane in lanes.items()})

    return ConfigController(supervisor, document_of(manifest), planner, recorder, limits)
