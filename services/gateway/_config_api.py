"""ConfigService servicer: configuration revisions through the gateway (see proto/mesh/v1/config.proto).

Reading and planning need ``config.plan``; applying needs ``config.apply`` — and, in a mesh whose
current manifest names the prod preset, a fresh second factor bound to the change (its resource
is ``config:<manifest digest>``, so a token approves that one manifest only). A manifest that
an enforced policy blocks is refused unless the caller also holds ``policy.override`` (with its
own second factor). Every apply is recorded in the audit with the digests before and after.

The work is the supervisor's (`mesh.supervisor._apply`): plans and applies are relayed to it over
NATS and its progress streamed back; a call cancelled before the end asks it to roll back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats.errors
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from mesh.errors import Conflict, InvalidArgument, MeshError, NotFound, PermissionDenied, Unavailable
from mesh.fabric import CONFIG_PREFIX
from mesh.manifest import Manifest, ManifestError, kind_declarations, resolve
from mesh.policy import evaluate
from mesh.revisions import Revision, RevisionStore, digest_of
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with
from mesh.v1 import config_pb2, config_pb2_grpc
from services.gateway._audit import Auditor, surface_of
from services.gateway._auth import Principal
from services.gateway._guard import Guard

ANSWER_S = 10.0  # how long the supervisor may take to answer a plan or accept an apply
MAX_LIMIT = 200
# manifest document -> the blocking policy findings, one line each ([]: none)
PolicyCheck = Callable[[dict[str, Any]], Awaitable[list[str]]]


def _timestamp(seconds: float) -> Timestamp | None:
    if not seconds:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def revision_to_proto(revision: Revision, with_manifest: bool = False) -> config_pb2.ConfigRevision:
    return config_pb2.ConfigRevision(
        number=revision.number,
        digest=revision.digest,
        state=revision.state,
        source=revision.source,
        author=revision.author,
        created=_timestamp(revision.created),
        finished=_timestamp(revision.finished),
        parent=revision.parent,
        reason=revision.reason,
        steps=list(revision.steps),
        manifest_json=json.dumps(revision.manifest, sort_keys=True) if with_manifest else "",
    )


def _document(text: str) -> dict[str, Any]:
    if not text:
        raise InvalidArgument("manifest_json", "is required: the manifest to plan or apply, as JSON")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument("manifest_json", f"is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidArgument("manifest_json", "must be a JSON object (a manifest)")
    return document


class PolicyBlocked(Conflict):
    """An enforced policy refuses the change; `rules` names them (recorded as the audit's policy ids)."""

    def __init__(self, message: str, rules: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.rules = rules


def _manifest(document: dict[str, Any]) -> Manifest:
    try:
        return resolve(document, "manifest_json")
    except ManifestError as exc:
        raise InvalidArgument("manifest_json", str(exc)) from None


async def blocking_policies(document: dict[str, Any]) -> list[str]:
    """The enforced policies (`mesh.policy`) `document` violates, one line each."""
    return [f"{v.rule} at {v.path or 'the mesh'}: {v.message}" for v in evaluate(_manifest(document)).blocking]


class ManifestKinds:
    """The manifest's own kinds (``kinds``): checked before an apply — their types registered
    schemas, none registered already with another declaration — and registered once it is live."""

    def __init__(self, kinds: Any, store: Any) -> None:
        self._kinds = kinds  # services.gateway._sessions.Kinds: its `register` checks a declaration
        self._store = store  # mesh.fabric.KindStore

    async def check(self, manifest: Any) -> list[Any]:
        found = []
        for declaration in kind_declarations(manifest):
            where = f"kinds.{declaration.name}"
            try:
                kind = await self._kinds.register(declaration)
            except InvalidArgument as exc:
                field = exc.field.removeprefix("kind.").removeprefix("kind")
                camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), field)
                raise InvalidArgument(f"{where}.{camel}" if camel else where, exc.reason) from None
            known = await self._store.ensure(declaration.name)
            if known is not None and known != kind:
                raise Conflict(f"{where}: registered with another declaration; a manifest never changes a kind", where)
            found.append(kind)
        return found

    async def register(self, kinds: list[Any]) -> list[str]:
        """The kinds registered now (those already there are not)."""
        return [kind.name for kind in kinds if await self._store.register(kind)]


class ConfigApi(config_pb2_grpc.ConfigServiceServicer):
    def __init__(
        self,
        nc: Nats,
        js: JetStreamContext,
        guard: Guard,
        auditor: Auditor,
        policy: PolicyCheck | None = None,
        kinds: ManifestKinds | None = None,
    ) -> None:
        self._nc = nc
        self._js = js
        self._guard = guard
        self._auditor = auditor
        self._policy = policy
        self._kinds = kinds
        self._store: RevisionStore | None = None

    async def _revisions(self) -> RevisionStore:
        if self._store is None:
            self._store = await RevisionStore.open(self._js, create=False)
        return self._store

    async def _ask(self, verb: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Relay `body` to the supervisor; its answers until the final one."""
        request_id = secrets.token_hex(12)
        answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_answer(msg: Msg) -> None:
            with contextlib.suppress(ValueError):
                answers.put_nowait(json.loads(msg.data))

        sub = await self._nc.subscribe(f"{CONFIG_PREFIX}.progress.{request_id}", cb=on_answer)
        final = False
        try:
            await self._nc.publish(f"{CONFIG_PREFIX}.{verb}", json.dumps({**body, "id": request_id}).encode())
            first = True
            while True:
                try:
                    answer = await asyncio.wait_for(answers.get(), ANSWER_S if first else None)
                except TimeoutError:
                    raise Unavailable(
                        "no supervisor answered: configuration changes need a mesh started by `tidemesh up`"
                    ) from None
                first = False
                final = bool(answer.get("final"))
                yield answer
                if final:
                    return
        finally:
            if not final and verb == "apply":  # the caller went away: the supervisor rolls back
                with contextlib.suppress(nats.errors.Error):
                    await self._nc.publish(f"{CONFIG_PREFIX}.abort.{request_id}", b"")
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def GetConfig(self, request: config_pb2.GetConfigRequest, context: Context) -> config_pb2.GetConfigResponse:
        try:
            self._guard.check(await self._guard.from_grpc(context), "config.plan")
            store = await self._revisions()
            revision = await (store.get(request.revision) if request.revision else store.current())
            if revision is None:
                raise NotFound(f"no revision {request.revision or 'is current'} (`tidemesh config history`)")
        except MeshError as exc:
            await abort_with(context, exc)
        return config_pb2.GetConfigResponse(revision=revision_to_proto(revision, with_manifest=True))

    async def ListRevisions(
        self, request: config_pb2.ListRevisionsRequest, context: Context
    ) -> config_pb2.ListRevisionsResponse:
        try:
            self._guard.check(await self._guard.from_grpc(context), "config.plan")
            if request.limit > MAX_LIMIT:
                raise InvalidArgument("limit", f"at most {MAX_LIMIT}")
            revisions = await (await self._revisions()).list(request.limit or 50)
        except MeshError as exc:
            await abort_with(context, exc)
        return config_pb2.ListRevisionsResponse(revisions=[revision_to_proto(r) for r in revisions])

    async def PlanConfig(
        self, request: config_pb2.PlanConfigRequest, context: Context
    ) -> config_pb2.PlanConfigResponse:
        try:
            self._guard.check(await self._guard.from_grpc(context), "config.plan")
            document = _document(request.manifest_json)
            answers = [answer async for answer in self._ask("plan", {"manifest": document})]
            answer = answers[-1]
            if answer.get("phase") != "planned":
                raise InvalidArgument("manifest_json", answer.get("message", "the supervisor could not plan it"))
            current = await (await self._revisions()).current()
        except MeshError as exc:
            await abort_with(context, exc)
        found = answer["rollout"]
        return config_pb2.PlanConfigResponse(
            current=revision_to_proto(current) if current else None,
            steps=[
                config_pb2.RolloutStep(action=s["action"], component=s["name"], cost=s["cost"]) for s in found["steps"]
            ],
            refused=found["refused"],
            steps_digest=found["digest"],
            manifest_digest=digest_of(document),
        )

    async def ApplyConfig(
        self, request: config_pb2.ApplyConfigRequest, context: Context
    ) -> AsyncIterator[config_pb2.ApplyConfigResponse]:
        resource = "config"
        try:
            principal = await self._guard.from_grpc(context)
            surface = surface_of(context.invocation_metadata())
            try:
                self._guard.check(principal, "config.apply")
            except PermissionDenied as exc:
                await self._auditor.refused(principal, "config.apply", resource, surface, exc)
                raise
            document = _document(request.manifest_json)
            if request.bake_seconds < 0 or request.bake_seconds > 3600:
                raise InvalidArgument("bake_seconds", "must be between 0 (30 s) and 3600")
            if not request.base_digest or not request.steps_digest:
                raise InvalidArgument("base_digest", "is required: apply what `tidemesh config plan` wrote")
            resource = f"config:{digest_of(document)}"
            async with self._auditor.action(principal, "config.apply", resource, surface) as act:
                current = await (await self._revisions()).current()
                if current is not None and current.manifest.get("preset") == "prod":
                    act.approved(await self._guard.approve(principal, "config.apply", resource))
                try:
                    overridden = await self._check_policies(principal, document, resource, request.override_policies)
                except PolicyBlocked as exc:
                    await self._auditor.refused(principal, "config.apply", resource, surface, exc, exc.rules)
                    raise
                declared = await self._kinds.check(_manifest(document)) if self._kinds is not None else []
                await act.allowed(before=request.base_digest)
                body = {
                    "manifest": document,
                    "baseDigest": request.base_digest,
                    "stepsDigest": request.steps_digest,
                    "bakeSeconds": request.bake_seconds or 30.0,
                    "source": "rollback" if request.rollback_to else "apply",
                    "author": principal.credential_id if principal else "anonymous",
                }
                last: dict[str, Any] = {}
                async for answer in self._ask("apply", body):
                    last = answer
                    if answer.get("phase") == "refused":
                        raise Conflict(answer.get("message", "refused"))
                    if answer.get("phase") == "applied" and declared and self._kinds is not None:
                        created = await self._kinds.register(declared)
                        if created:
                            answer = {
                                **answer,
                                "message": f"{answer.get('message', '')}; kinds registered: {', '.join(created)}",
                            }
                    yield config_pb2.ApplyConfigResponse(
                        phase=answer.get("phase", ""),
                        message=answer.get("message", ""),
                        revision=int(answer.get("revision", 0)),
                        component=answer.get("component", ""),
                        final=bool(answer.get("final")),
                        at=_timestamp(float(answer.get("at", 0.0))),
                    )
                if last.get("phase") == "applied":
                    note = f" past enforced policies ({'; '.join(overridden)})" if overridden else ""
                    act.done(f"revision {last.get('revision')} applied{note}", after=digest_of(document))
                else:
                    act.failed(f"revision {last.get('revision')} rolled back: {last.get('message', '')}")
        except MeshError as exc:
            await abort_with(context, exc)

    async def _check_policies(
        self, principal: Principal | None, document: dict[str, Any], resource: str, override: bool
    ) -> list[str]:
        """The blocking policies the caller goes past (with `override`); Conflict naming them without."""
        if self._policy is None:
            return []
        blocking = await self._policy(document)
        if not blocking:
            return []
        if not override:
            raise PolicyBlocked(
                "enforced policies block this change: " + "; ".join(blocking) + " (policy.override with "
                "--override-policies goes ahead)",
                tuple(line.split(" ", 1)[0] for line in blocking),
            )
        self._guard.check(principal, "policy.override")
        await self._guard.approve(principal, "policy.override", resource)
        return blocking
