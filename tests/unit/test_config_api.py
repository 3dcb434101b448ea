"""ConfigService's gates before a change reaches the supervisor (services.gateway._config_api): in a
mesh of the prod preset an apply wants a fresh second factor bound to that manifest's digest; an
enforced policy blocks it unless the caller asks to override and holds policy.override; bad input
names its field. The supervisor's side is a stand-in that answers like it (its real one:
tests/integration/test_config_apply.py)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pyotp
import pytest

from mesh.access import RoleCatalog, custom_role
from mesh.manifest import API_VERSION, KIND, document_of, resolve
from mesh.revisions import Revision, digest_of
from mesh.v1 import config_pb2
from services.gateway._audit import Auditor
from services.gateway._auth import Authenticator, CredentialStore
from services.gateway._config_api import ConfigApi, blocking_policies
from services.gateway._guard import Guard
from services.gateway._stepup import STEP_UP_HEADER, MemoryEntries, SecondFactors

TOKEN = "tmk_k1_config"
PROD = document_of(resolve({"apiVersion": API_VERSION, "kind": KIND, "preset": "prod"}, "t"))
RULE = {"name": "few-workers", "expression": "manifest.pools.general.workers <= 1", "mode": "enforce"}


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


class Context:
    def __init__(self, step_up: str = "") -> None:
        self._metadata = (("x-api-key", TOKEN), *(((STEP_UP_HEADER, step_up),) if step_up else ()))

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Refused(code, details)


class Revisions:
    def __init__(self, document: dict[str, Any]) -> None:
        self.revision = Revision(1, digest_of(document), document, "applied", "up")

    async def current(self) -> Revision:
        return self.revision


class Api(ConfigApi):
    """The servicer with the supervisor stood in for: every apply relayed is applied."""

    relayed: list[dict[str, Any]]

    async def _ask(self, verb: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.relayed.append(body)
        yield {"phase": "applied", "message": "revision 2 is live", "revision": 2, "final": True}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def api(current: dict[str, Any], actions: list[str]) -> tuple[Api, SecondFactors]:
    store = CredentialStore(None, None)  # type: ignore[arg-type]  (the key is known in memory)
    store.add_static_key(TOKEN, "*", ["granted"], "test")
    clock = Clock()
    factors = SecondFactors(MemoryEntries(clock), secrets.token_bytes(32), secrets.token_urlsafe(32), clock)
    guard = Guard(None, Authenticator(store, None, RoleCatalog([custom_role("granted", actions)])), None, factors)  # type: ignore[arg-type]
    servicer = Api(None, None, guard, Auditor.disabled(), policy=blocking_policies)  # type: ignore[arg-type]
    servicer._store = Revisions(current)  # type: ignore[assignment]
    servicer.relayed = []
    return servicer, factors


def request(document: dict[str, Any], override: bool = False) -> config_pb2.ApplyConfigRequest:
    return config_pb2.ApplyConfigRequest(
        manifest_json=json.dumps(document), base_digest="sha256:x", steps_digest="sha256:y", override_policies=override
    )


async def apply(servicer: Api, req: config_pb2.ApplyConfigRequest, step_up: str = "") -> list[str]:
    return [event.phase async for event in servicer.ApplyConfig(req, Context(step_up))]  # type: ignore[arg-type]


async def token_for(factors: SecondFactors, servicer: Api, action: str, resource: str) -> str:
    principal = await servicer._guard.from_grpc(Context())  # type: ignore[arg-type]
    assert principal is not None
    clock = factors._clock  # the test's own (a code is taken once per period: the next one mints)
    enrolment = await factors.enroll(principal)
    totp = pyotp.TOTP(enrolment.secret)
    await factors.confirm(principal, totp.at(clock()))
    clock.now += 30  # type: ignore[attr-defined]
    return (await factors.step_up(principal, action, resource, totp.at(clock()))).token


async def test_an_apply_in_a_prod_mesh_wants_a_second_factor_bound_to_the_manifest() -> None:
    servicer, factors = api(PROD, ["config.apply"])
    change = {**PROD, "pools": {"general": {"concurrency": 16}}}
    with pytest.raises(Refused) as refused:
        await apply(servicer, request(change))
    resource = f"config:{digest_of(change)}"
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED and resource in refused.value.details
    assert servicer.relayed == []
    token = await token_for(factors, servicer, "config.apply", resource)
    assert await apply(servicer, request(change), token) == ["applied"]
    assert [body["manifest"] for body in servicer.relayed] == [change]
    with pytest.raises(Refused, match="used already"):  # a token approves one apply, once
        await apply(servicer, request(change), token)


async def test_an_apply_outside_prod_needs_no_second_factor() -> None:
    dev = {"apiVersion": API_VERSION, "kind": KIND}
    servicer, _ = api(dev, ["config.apply"])
    assert await apply(servicer, request({**dev, "pools": {"general": {"workers": 1}}})) == ["applied"]


async def test_an_enforced_policy_blocks_unless_overridden_by_who_may() -> None:
    dev = {"apiVersion": API_VERSION, "kind": KIND, "policies": {"rules": [RULE]}}
    blocked = {**dev, "pools": {"general": {"workers": 3}}}
    servicer, _ = api(dev, ["config.apply"])
    with pytest.raises(Refused) as refused:
        await apply(servicer, request(blocked))
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION and "few-workers" in refused.value.details
    with pytest.raises(Refused) as refused:  # asking to override without policy.override
        await apply(servicer, request(blocked, override=True))
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED and "policy.override" in refused.value.details
    assert servicer.relayed == []
    allowed, factors = api(dev, ["config.apply", "policy.override"])
    with pytest.raises(Refused) as refused:  # with step-up on, the override wants its own second factor
        await apply(allowed, request(blocked, override=True))
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED and "policy.override" in refused.value.details
    token = await token_for(factors, allowed, "policy.override", f"config:{digest_of(blocked)}")
    assert await apply(allowed, request(blocked, override=True), token) == ["applied"]


@pytest.mark.parametrize(
    ("text", "field"),
    [("", "manifest_json"), ("[1]", "manifest_json"), ("{not json", "manifest_json")],
)
async def test_bad_manifests_are_refused_naming_the_field(text: str, field: str) -> None:
    servicer, _ = api({"apiVersion": API_VERSION, "kind": KIND}, ["config.apply"])
    req = config_pb2.ApplyConfigRequest(manifest_json=text, base_digest="sha256:x", steps_digest="sha256:y")
    with pytest.raises(Refused) as refused:
        await apply(servicer, req)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and field in refused.value.details
