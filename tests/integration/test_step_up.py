"""Step-up on a real mesh with step-up on (endpoints.public.auth.stepUp: required): a purge without
a second factor is UNAUTHENTICATED with the RFC 9470 challenge and audited as refused; an operator
enrols TOTP, steps up and purges, and the audit names amr otp; a used token and a used code are
refused, a token for another resource too; an admin key needs a step-up, a viewer key does not;
the CLI answers a challenge by itself with $TIDEMESH_OTP, and `tidemesh dash` asks for a code in a
prompt (in tmux); on a bare nats-server, a used token's entry expires by the broker's per-message TTL."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import grpc.aio
import nats.js.api
import pyotp
import pytest
from nats.aio.client import Client as NATS

from clients.sdk import Client
from clients.sdk._client import mesh_channel
from mesh.errors import StepUpRequired, Unauthenticated
from mesh.fabric._deadletters import DeadLetterStore
from mesh.rpc import raise_from_rpc_error
from mesh.supervisor import MeshSecurity, Supervisor, admin_key, build_plan
from mesh.v1 import audit_pb2, audit_pb2_grpc, deadletter_pb2, gateway_pb2, gateway_pb2_grpc
from services.gateway._auth import CredentialStore
from services.gateway._stepup import USED_PREFIX, BucketEntries
from tests.conftest import eventually
from tests.integration.conftest import Secured
from tests.integration.test_dash import REPO, TMUX, Tmux

pytestmark = pytest.mark.integration

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")
TENANT = "stepped"


@dataclass(frozen=True)
class Stepped(Secured):
    nats_servers: str = ""


@pytest.fixture(scope="module")
async def stepped(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stepped]:
    """A mesh with auth and step-up on (no workers: nothing here runs a task)."""
    state = tmp_path_factory.mktemp("stepped")
    plan = build_plan(state, public_port=0, workers=0, auth=True, step_up=True)
    async with Supervisor(plan):
        yield Stepped(f"127.0.0.1:{plan.public_port}", admin_key(state), "", state, plan.nats_servers)


def _code(secret: str, periods_ahead: int = 0) -> str:
    """A code of `secret` for this period (or one ahead: the gateway takes one period either side)."""
    totp = pyotp.TOTP(secret)
    return totp.generate_otp(totp.timecode(time.time()) + periods_ahead)


async def _operator(mesh: Secured, roles: list[str] | None = None, tenant: str = TENANT) -> tuple[str, str, str]:
    """A key, enrolled and confirmed (this period's code used up): (key id, key, TOTP secret)."""
    key_id, key = await mesh.key(tenant, roles or ["operator"])
    async with Client(mesh.endpoint, tenant=tenant, credential=key) as client:
        enrolment = await client.enroll_totp()
        await client.confirm_totp(_code(enrolment.secret))
    return key_id, key, enrolment.secret


async def _audit(mesh: Secured, credential_id: str) -> list[Any]:
    async with mesh_channel(mesh.endpoint, mesh.admin) as channel:
        request = audit_pb2.ListAuditRecordsRequest(credential_id=credential_id, limit=100)
        try:
            return list((await audit_pb2_grpc.AuditServiceStub(channel).ListAuditRecords(request, timeout=10)).records)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)


async def test_a_purge_without_a_second_factor_is_challenged_and_audited(stepped: Secured) -> None:
    """UNAUTHENTICATED, www-authenticate insufficient_user_authentication naming the action and resource;
    nothing purged; the audit says refused, UNAUTHENTICATED."""
    key_id, key = await stepped.key(TENANT, ["operator"])
    async with mesh_channel(stepped.endpoint, key) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.PurgeDeadLetters(gateway_pb2.PurgeDeadLettersRequest(tenant=TENANT), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    trailers = dict(refused.value.trailing_metadata() or ())
    assert trailers["www-authenticate"].startswith('Bearer error="insufficient_user_authentication"')
    assert (trailers["tidemesh-step-up-action"], trailers["tidemesh-step-up-resource"]) == (
        "dlq.purge",
        f"dlq:tenant={TENANT}",
    )
    (record,) = await _audit(stepped, key_id)
    assert (record.action, record.decision, record.outcome) == ("dlq.purge", "refused", "refused")
    assert record.detail.startswith("UNAUTHENTICATED: dlq.purge on dlq:tenant=stepped needs a fresh second factor")


async def test_an_operator_steps_up_purges_once_and_the_audit_names_otp(stepped: Secured) -> None:
    """Accepted: the token purges, the records carry amr otp. Replayed: the same token again, and a
    code already used, are refused. Bound: a token for one dead letter does not purge the tenant."""
    key_id, key, secret = await _operator(stepped)
    async with Client(stepped.endpoint, tenant=TENANT, credential=key) as client:
        with pytest.raises(StepUpRequired) as challenge:
            await client.purge_dead_letters(tenant=TENANT)
        fresh = _code(secret, 1)
        stepped_up = await client.step_up(challenge.value.action, challenge.value.resource, fresh)
        assert list(stepped_up.amr) == ["otp"]
        assert await client.purge_dead_letters(tenant=TENANT, step_up=stepped_up.token) == 0
        with pytest.raises(StepUpRequired, match="used already"):
            await client.purge_dead_letters(tenant=TENANT, step_up=stepped_up.token)
        with pytest.raises(Unauthenticated, match="replayed"):
            await client.step_up("dlq.purge", f"dlq:tenant={TENANT}", fresh)
    records = [r for r in await _audit(stepped, key_id) if r.outcome != "refused"]
    assert [(r.action, r.outcome, list(r.actor.amr)) for r in records] == [
        ("dlq.purge", "succeeded", ["otp"]),
        ("dlq.purge", "started", ["otp"]),
    ]
    _, other, other_secret = await _operator(stepped)
    async with Client(stepped.endpoint, tenant=TENANT, credential=other) as client:
        one = await client.step_up("dlq.purge", "dlq:some-task", _code(other_secret, 1))
        with pytest.raises(StepUpRequired, match=r"approves dlq\.purge on dlq:some-task, not this"):
            await client.purge_dead_letters(tenant=TENANT, step_up=one.token)


async def test_an_admin_key_wants_a_step_up_a_viewer_key_does_not(stepped: Secured) -> None:
    """The bootstrap admin enrols too; minting an admin key is challenged, a viewer key is not."""
    async with Client(stepped.endpoint, credential=stepped.admin) as admin:
        assert (await admin.create_api_key(TENANT, ["viewer"])).api_key
        with pytest.raises(StepUpRequired) as challenge:
            await admin.create_api_key("*", ["admin"], name="second admin")
        assert (challenge.value.action, challenge.value.resource) == ("auth.key.create", "tenant:*")
        enrolment = await admin.enroll_totp()
        await admin.confirm_totp(_code(enrolment.secret))
        token = (await admin.step_up("auth.key.create", "tenant:*", _code(enrolment.secret, 1))).token
        assert (await admin.create_api_key("*", ["admin"], name="second admin", step_up=token)).api_key


async def test_the_cli_answers_a_challenge_with_the_code_from_the_environment(stepped: Secured) -> None:
    """`tidemesh dlq purge --tenant T --yes` meets the challenge, takes $TIDEMESH_OTP, steps up and
    purges (exit 0); without a code and without a terminal it says how to give one (exit 2)."""
    _, key, secret = await _operator(stepped)

    async def purge(otp: str) -> tuple[int, str, str]:
        env = {**os.environ, "TIDEMESH_API_KEY": key, "TIDEMESH_OTP": otp}
        process = await asyncio.create_subprocess_exec(
            TIDEMESH, "dlq", "purge", "--tenant", TENANT, "--yes", "--endpoint", stepped.endpoint,
            "--state-dir", str(stepped.state), "-o", "json",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, _, err = await purge("")
    assert code == 2 and "a one-time code is needed" in err and "TIDEMESH_OTP" in err
    code, out, err = await purge(_code(secret, 1))
    assert code == 0 and '"purged": 0' in out, err
    assert "dlq.purge on dlq:tenant=stepped wants a fresh second factor" in err


async def _record_dead_letter(mesh: Stepped, task_id: str) -> None:
    """A dead letter of TENANT on record, written as the scheduler would (no worker runs here)."""
    letter = deadletter_pb2.DeadLetter(
        task_id=task_id,
        classification=deadletter_pb2.FAILURE_CLASS_POISON_INPUT,
        error_class="invalid_input",
        message="bad input",
        attempts=1,
    )
    letter.spec.task_id, letter.spec.kind, letter.spec.tenant = task_id, "echo", TENANT
    async with await MeshSecurity(mesh.state).connect_nats(mesh.nats_servers, "cli", "test-step-up") as nc:
        await DeadLetterStore(nc.jetstream(), nc).record(letter, alert=False)


def _wrong(secret: str) -> str:
    """A code the gateway takes for no period it accepts now."""
    totp = pyotp.TOTP(secret)
    accepted = {totp.generate_otp(totp.timecode(time.time()) + offset) for offset in range(-2, 3)}
    return next(code for code in (f"{n:06d}" for n in range(0, 10**6, 7919)) if code not in accepted)


@pytest.fixture
def dash_tmux() -> Iterator[Tmux]:
    """A tmux server of the test's own (test_dash's), killed after it."""
    server = Tmux(f"tidemesh-step-up-{uuid.uuid4().hex[:8]}")
    try:
        yield server
    finally:
        subprocess.run([TMUX, "-L", server.socket, "kill-server"], capture_output=True, timeout=10, check=False)


async def test_the_dashboard_asks_for_a_code_and_purges_with_it(stepped: Stepped, dash_tmux: Tmux) -> None:
    """`tidemesh dash` on a mesh with step-up on: D on a dead letter, Right, Enter; the challenge opens
    the prompt for a code with the cursor in its field; a wrong code is said on the field; a good one
    purges the record (gone from the mesh)."""
    tmux = dash_tmux
    _, key, secret = await _operator(stepped)
    task_id = f"dash-purge-{uuid.uuid4().hex[:8]}"
    await _record_dead_letter(stepped, task_id)
    command = [TIDEMESH, "dash", "--endpoint", stepped.endpoint, "--state-dir", str(stepped.state), "--tenant", TENANT]
    # The key through the environment tmux's server starts with, never its argv.
    started = await asyncio.create_subprocess_exec(
        TMUX, "-L", tmux.socket, "new-session", "-d", "-s", "dash", "-x", "160", "-y", "48", "-c", str(REPO),
        shlex.join(command), env={**os.environ, "TIDEMESH_API_KEY": key, "TIDEMESH_OTP": ""},
    )  # fmt: skip
    assert await asyncio.wait_for(started.wait(), 10) == 0
    tmux.wait_for(rf"{task_id}")
    tmux.keys("Tab", "Tab", "Tab", "Tab")
    tmux.wait_for(r"> Dead letters <")
    tmux.keys("D")
    tmux.wait_for(rf"Purge the dead letter of {task_id}\?")
    tmux.keys("Right", "Enter")
    tmux.wait_for(r"dlq\.purge on dlq:\S+ wants a fresh second factor")
    x, y = tmux.cursor()
    assert tmux.screen().splitlines()[y][:x].endswith("One-time code: "), "the cursor sits in the field"
    tmux.keys(_wrong(secret), "Enter")
    tmux.wait_for(r"error: code: the one-time code is wrong or too old")
    tmux.keys(_code(secret, 1), "Enter")
    tmux.wait_for(rf"purged the dead letter of {task_id}")
    async with Client(stepped.endpoint, tenant=TENANT, credential=key) as client:
        assert task_id not in [letter.task_id for letter in await client.dead_letters(limit=100)]
    tmux.keys("q")


async def test_seeds_codes_and_tokens_never_reach_the_logs_or_the_bucket_in_the_clear(stepped: Stepped) -> None:
    """After an enrolment, a step-up and a purge, no log line holds the TOTP secret, the code or the
    token, the credentials bucket holds the seed sealed only, and the used token's entry carries a TTL."""
    _, key, secret = await _operator(stepped)
    fresh = _code(secret, 1)
    async with Client(stepped.endpoint, tenant=TENANT, credential=key) as client:
        token = (await client.step_up("dlq.purge", f"dlq:tenant={TENANT}", fresh)).token
        await client.purge_dead_letters(tenant=TENANT, step_up=token)
    logs = "".join(path.read_text() for path in (stepped.state / "logs").glob("*.log"))
    assert logs and secret not in logs and token not in logs and f'"{fresh}"' not in logs
    async with await MeshSecurity(stepped.state).connect_nats(stepped.nats_servers, "cli", "test-step-up") as nc:
        kv = await nc.jetstream().key_value("tm_credentials")
        values = [(await kv.get(name)).value or b"" for name in await kv.keys() if name.startswith("totp.")]
        used = [name for name in await kv.keys() if name.startswith(USED_PREFIX)]
        ttls = [
            (await nc.jetstream().get_last_msg("KV_tm_credentials", f"$KV.tm_credentials.{name}")).headers or {}
            for name in used
        ]
    assert values and not any(secret.encode() in value for value in values)
    # Each used token's entry goes when no gateway could take it: its lifetime (120 s) and the margin (60 s).
    assert used and all(0 < int(headers.get("Nats-TTL", "0")) <= 180 for headers in ttls), ttls


async def test_used_token_entries_expire_on_the_broker(nc: NATS) -> None:
    """On the credentials bucket as the gateway declares it: an entry created with a TTL, and one
    written without and given a TTL on its revision, are gone after it; scan lists what is live; a
    bucket made without per-message TTLs still records the entry (kept without one)."""
    js = nc.jetstream()
    entries = BucketEntries(await CredentialStore.open(js))
    run = os.urandom(4).hex()
    fresh, legacy = f"{USED_PREFIX}{run}-fresh", f"{USED_PREFIX}{run}-legacy"
    await entries.create(fresh, b'{"exp": 0}', ttl_s=1.0)
    await entries.put(legacy, b'{"exp": 0}')
    listed = {key: revision for key, _, revision in await entries.scan(USED_PREFIX)}
    assert fresh in listed and legacy in listed
    await entries.update(legacy, b'{"exp": 0}', listed[legacy], ttl_s=1.0)

    async def gone() -> bool:
        return await entries.get(fresh) is None and await entries.get(legacy) is None

    await eventually(gone, timeout_s=10, what="the TTL'd entries removed by the broker")
    assert not {key for key, _, _ in await entries.scan(USED_PREFIX)} & {fresh, legacy}

    bucket = f"stepup_nottl_{run}"
    await js.add_stream(
        nats.js.api.StreamConfig(
            name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"], max_msgs_per_subject=1, allow_rollup_hdrs=True
        )
    )
    try:
        store = SimpleNamespace(bucket=await js.key_value(bucket))  # BucketEntries reads .bucket alone
        plain = BucketEntries(store)  # type: ignore[arg-type]
        await plain.create(fresh, b'{"exp": 0}', ttl_s=1.0)
        assert await plain.get(fresh) is not None
    finally:
        await js.delete_stream(f"KV_{bucket}")
