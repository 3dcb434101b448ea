"""``python -m services.gateway`` — the public API: gRPC (+ gRPC-Web via Envoy), REST and WebSocket."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

import grpc.aio

from mesh.access import RoleCatalog, RoleError, read_roles
from mesh.audit import SIGNING_KEY_FILE as AUDIT_KEY_FILE
from mesh.audit import AuditLog, JetStreamAuditStore, Signer, declare_audit_stream
from mesh.errors import MeshError
from mesh.fabric import (
    KINDS_BUCKET,
    SESSIONS_BUCKET,
    DeadLetterStore,
    EventLog,
    KindStore,
    TaskIndex,
    await_topology,
)
from mesh.replicas import InferenceReplicas
from mesh.rpc import channel
from mesh.runtime import ServiceHost, base_parser, connect_nats, run_service
from mesh.schemas import SchemaRegistry
from mesh.telemetry import get_logger
from mesh.v1 import (
    access_pb2_grpc,
    audit_pb2_grpc,
    config_pb2_grpc,
    gateway_pb2_grpc,
    inference_pb2_grpc,
    kind_pb2_grpc,
    scheduler_pb2_grpc,
    schema_pb2_grpc,
    session_pb2_grpc,
)
from services.gateway._access import AccessApi
from services.gateway._audit import Auditor
from services.gateway._audit_api import AuditApi
from services.gateway._auth import ANY_TENANT, Authenticator, CredentialStore, JwtSettings
from services.gateway._config_api import ConfigApi, ManifestKinds, blocking_policies
from services.gateway._guard import Guard
from services.gateway._http import http_app
from services.gateway._hub import EventHub
from services.gateway._inference import InferenceRelay, ModelSignatures
from services.gateway._ratelimit import (
    DEFAULT_CREDENTIAL_BURST,
    DEFAULT_CREDENTIAL_RATE,
    DEFAULT_TENANT_BURST,
    DEFAULT_TENANT_RATE,
    RateLimiter,
)
from services.gateway._schemas import SchemaApi
from services.gateway._service import Gateway
from services.gateway._sessions import Kinds, SessionProxy
from services.gateway._stepup import BucketEntries, SecondFactors
from services.gateway._userjson import JsonCodec

log = get_logger("services.gateway")


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    # Every long-lived part is closed by the stack, in the reverse order of its start.
    async with contextlib.AsyncExitStack() as stack:
        nc = await connect_nats(args, "tidemesh-gateway")
        stack.push_async_callback(nc.drain)
        scheduler_channel = channel(args.scheduler, args.transport)
        stack.push_async_callback(scheduler_channel.close)
        js = nc.jetstream(timeout=5.0)
        await await_topology(js)  # the scheduler declares it; this user may only look
        events = await stack.enter_async_context(EventLog(js, nc))
        hub = await stack.enter_async_context(EventHub(nc, events))
        limiter = RateLimiter(args.tenant_rate, args.tenant_burst) if args.tenant_rate > 0 else None
        guard = await _guard(args, js, events)
        if guard.authenticator is not None:
            stack.push_async_callback(guard.authenticator.store.close)
        auditor = await _auditor(args, js)
        if auditor.log is not None:
            await stack.enter_async_context(auditor.log)  # timed checkpoints; the tail signed at close
        inference = None  # callers' models, through the front door, on every replica registered
        if args.inference:  # every replica registered in tm_inference, starting from the ones given
            inference = await InferenceReplicas.on_fabric(args.inference, args.transport, js)
            stack.push_async_callback(inference.close)
        gateway = Gateway(
            scheduler_pb2_grpc.SchedulerServiceStub(scheduler_channel),
            events,
            hub,
            DeadLetterStore(js, nc),
            guard=guard,
            auditor=auditor,
            limiter=limiter,
            index=TaskIndex(js),
            signatures=ModelSignatures(inference) if inference else None,
        )
        stack.push_async_callback(gateway.aclose)

        # User work: the schema registry, the kind registry, and the sessions of workers that
        # attach in any language.
        schemas = await SchemaRegistry.open(js, args.replicas)
        schema_api = SchemaApi(schemas, guard)
        kinds = KindStore(await js.key_value(KINDS_BUCKET))
        await kinds.start()
        stack.push_async_callback(kinds.close)

        async def versions_of(subject: str) -> list[int]:
            return [v.version for v in await schemas.versions(subject)]

        async def missing_subjects(subjects: list[str]) -> list[str]:
            return [subject for subject in subjects if not await versions_of(subject)]

        app = http_app(
            events,
            hub,
            admit=gateway.admit,
            cancel=gateway.cancel,
            guard=guard,
            listing=gateway.list_tasks,
            getter=gateway.get_task,
            codec=JsonCodec(kinds, schemas),
        )
        host = ServiceHost("gateway", args.grpc, args.http, http_app=app, grace_s=args.grace, transport=args.transport)
        host.add(gateway_pb2_grpc.add_GatewayServiceServicer_to_server, gateway, "mesh.v1.GatewayService")
        host.add(schema_pb2_grpc.add_SchemaServiceServicer_to_server, schema_api, "mesh.v1.SchemaService")
        host.add(audit_pb2_grpc.add_AuditServiceServicer_to_server, AuditApi(guard, auditor), "mesh.v1.AuditService")
        host.add(access_pb2_grpc.add_AccessServiceServicer_to_server, AccessApi(guard), "mesh.v1.AccessService")
        # Workers attach here and are relayed to the session hosts (worker processes), which run their steps.
        session_channels: list[grpc.aio.Channel] = []
        for target in filter(None, args.session_hosts.split(",")):
            session_channels.append(channel(target, args.transport))
            stack.push_async_callback(session_channels[-1].close)
        kind_api = Kinds(kinds, guard, js, await js.key_value(SESSIONS_BUCKET), versions_of, missing_subjects)
        host.add(kind_pb2_grpc.add_KindServiceServicer_to_server, kind_api, "mesh.v1.KindService")
        host.add(
            config_pb2_grpc.add_ConfigServiceServicer_to_server,
            ConfigApi(nc, js, guard, auditor, policy=blocking_policies, kinds=ManifestKinds(kind_api, kinds)),
            "mesh.v1.ConfigService",
        )
        if session_channels:
            proxy = SessionProxy([session_pb2_grpc.WorkerSessionServiceStub(c) for c in session_channels], guard)
            host.add(session_pb2_grpc.add_WorkerSessionServiceServicer_to_server, proxy, "mesh.v1.WorkerSessionService")
        if inference is not None:
            relay = InferenceRelay(inference, guard, auditor)
            host.add(inference_pb2_grpc.add_InferenceServiceServicer_to_server, relay, "mesh.v1.InferenceService")
        async with host:
            host.write_ready_file(Path(args.ready_file) if args.ready_file else None)
            await stop.wait()
            await host.begin_shutdown()


async def _guard(args: argparse.Namespace, js, events: EventLog) -> Guard:  # type: ignore[no-untyped-def]
    """Auth is on when --auth-dir is given: JWT key and bootstrap admin key from that folder; the
    custom roles of --roles-file beside the built-in ones (a bad file stops the gateway, naming it)."""
    credential_limiter = None
    if args.credential_rate > 0:
        credential_limiter = RateLimiter(args.credential_rate, args.credential_burst, what="credential")
    roles = RoleCatalog()
    if args.roles_file:
        try:
            roles = read_roles(Path(args.roles_file))
        except RoleError as exc:
            raise SystemExit(f"--roles-file {args.roles_file}: {exc}") from exc
    if not args.auth_dir:
        if args.step_up:
            log.warning("--step-up is not in force: auth is off")
        if roles.custom:
            log.warning("custom roles are not in force: auth is off (%d roles)", len(roles.custom))
        return Guard.disabled(events)
    directory = Path(args.auth_dir)
    store = await CredentialStore.open(js, args.replicas)
    await store.start()
    admin_key = directory / "admin.key"
    if admin_key.exists():
        store.add_static_key(admin_key.read_text().strip(), ANY_TENANT, ["admin"], "bootstrap admin")
    jwt_settings = JwtSettings.from_dir(directory, args.jwt_audience)
    second_factors = None
    if args.step_up:
        try:
            second_factors = SecondFactors.from_dir(BucketEntries(store), directory)
        except ValueError as exc:
            raise SystemExit(f"--step-up: {exc}") from exc
        try:  # used tokens recorded before their entries had a TTL expire too
            if rewritten := await second_factors.expire_used():
                log.info("used step-up tokens given a TTL", extra={"entries": rewritten})
        except MeshError as exc:  # replay-safe either way: the entries stay, another start tries again
            log.warning("used step-up tokens not given a TTL: %s", exc.message)
    log.info(
        "auth is on",
        extra={
            "jwt": bool(jwt_settings),
            "audience": args.jwt_audience,
            "custom_roles": len(roles.custom),
            "step_up": second_factors is not None,
        },
    )
    return Guard(events, Authenticator(store, jwt_settings, roles), credential_limiter, second_factors)


async def _auditor(args: argparse.Namespace, js) -> Auditor:  # type: ignore[no-untyped-def]
    """The audit is on when --audit-dir names the folder of the mesh's checkpoint signing key (read
    by path; `tidemesh up` creates it). The stream is declared here: the gateway is its writer."""
    if not args.audit_dir:
        return Auditor.disabled()
    signer = Signer.load(Path(args.audit_dir) / AUDIT_KEY_FILE)
    await declare_audit_stream(js, args.replicas)
    audit_log = AuditLog(
        JetStreamAuditStore(js),
        signer,
        checkpoint_every=args.audit_checkpoint_records,
        checkpoint_interval_s=args.audit_checkpoint_seconds,
    )
    log.info("audit is on", extra={"stream": "TM_AUDIT", "key_id": signer.key_id})
    return Auditor(audit_log)


def main() -> None:
    parser = base_parser("tidemesh gateway")
    parser.add_argument("--scheduler", required=True, help="scheduler HOST:PORT")
    parser.add_argument(
        "--inference",
        default="",
        metavar="HOST:PORT,...",
        help="inference endpoints to relay InferenceService to, the rest found as they register (empty: not served)",
    )
    parser.add_argument(
        "--tenant-rate", type=float, default=DEFAULT_TENANT_RATE, help="submits per second per tenant (0: no limit)"
    )
    parser.add_argument("--tenant-burst", type=float, default=DEFAULT_TENANT_BURST, help="a tenant's burst, in submits")
    parser.add_argument(
        "--credential-rate",
        type=float,
        default=DEFAULT_CREDENTIAL_RATE,
        help="submits per second per credential, with auth on (0: no limit)",
    )
    parser.add_argument(
        "--credential-burst", type=float, default=DEFAULT_CREDENTIAL_BURST, help="a credential's burst, in submits"
    )
    parser.add_argument("--auth-dir", default="", help="require credentials: jwt.secret or jwt.pub, admin.key here")
    parser.add_argument("--jwt-audience", default="tidemesh", help="the aud claim tokens must carry")
    parser.add_argument(
        "--step-up",
        action="store_true",
        help="sensitive actions (purge dead letters, export the audit, mint or revoke admin keys) want a fresh "
        "second factor: TOTP, totp.key and step-up.secret in --auth-dir",
    )
    parser.add_argument(
        "--roles-file",
        default="",
        help="custom roles beside the built-in ones (JSON: the manifest's roles section; `tidemesh up` writes it)",
    )
    parser.add_argument(
        "--audit-dir",
        default="",
        help="record administrative actions in the audit (TM_AUDIT), checkpoints signed with signing.key here",
    )
    parser.add_argument(
        "--audit-checkpoint-records", type=int, default=100, help="sign a checkpoint every this many records"
    )
    parser.add_argument(
        "--audit-checkpoint-seconds", type=float, default=60.0, help="and every this many seconds while one is unsigned"
    )
    parser.add_argument(
        "--session-hosts",
        default="",
        help="comma-separated HOST:PORT of the worker processes hosting worker-protocol sessions "
        "(empty: this gateway does not serve WorkerSessionService)",
    )
    run_service("gateway", parser, serve)


if __name__ == "__main__":
    main()
