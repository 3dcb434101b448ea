"""Step-up (services.gateway._stepup) over in-memory entries and a clock of the test's own: TOTP
enrolment and confirmation, codes taken once (replay-safe, also between two callers at once), and
step-up tokens — required, accepted, replayed, expired, bound to another action, resource or
credential — with the challenge on the wire (gRPC trailers, HTTP WWW-Authenticate); a used token's
entry expires once no gateway could take the token again, older entries too."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import replace

import grpc
import pyotp
import pytest

from mesh.errors import Conflict, InvalidArgument, StepUpRequired, Unauthenticated
from mesh.rpc import status_of
from mesh.rpc._status import error_from_status
from mesh.supervisor._credentials import STEP_UP_SECRET_FILE, TOTP_KEY_FILE, ensure_credentials
from services.gateway import _stepup
from services.gateway._auth import Principal
from services.gateway._http import _error
from services.gateway._stepup import TOKEN_TTL_S, USED_MARGIN_S, USED_PREFIX, MemoryEntries, SecondFactors

OPERATOR = Principal("key-ops", "acme", frozenset({"operator"}))
OTHER = Principal("key-other", "acme", frozenset({"operator"}))
PURGE, RESOURCE = "dlq.purge", "dlq:tenant=acme"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def entries(clock: Clock) -> MemoryEntries:
    return MemoryEntries(clock)


@pytest.fixture
def factors(entries: MemoryEntries, clock: Clock) -> SecondFactors:
    return SecondFactors(entries, secrets.token_bytes(32), secrets.token_urlsafe(32), clock)


def code(secret: str, clock: Clock, periods_ago: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.generate_otp(totp.timecode(clock.now) - periods_ago)


async def enrolled(factors: SecondFactors, clock: Clock, who: Principal = OPERATOR) -> str:
    """Enrol and confirm `who`; the secret. The clock moves to the next period (the confirming code is used)."""
    enrolment = await factors.enroll(who)
    await factors.confirm(who, code(enrolment.secret, clock))
    clock.now += 30
    return enrolment.secret


def test_the_files_the_plan_makes_are_the_ones_the_gateway_reads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ensure_credentials makes totp.key (32 bytes) and step-up.secret, owner-only; from_dir reads them."""
    assert (TOTP_KEY_FILE, STEP_UP_SECRET_FILE) == (_stepup.TOTP_KEY_FILE, _stepup.STEP_UP_SECRET_FILE)
    auth = ensure_credentials(tmp_path / "auth")
    assert len(base64.b64decode((auth / TOTP_KEY_FILE).read_text())) == 32
    assert all((auth / name).stat().st_mode & 0o077 == 0 for name in (TOTP_KEY_FILE, STEP_UP_SECRET_FILE))
    SecondFactors.from_dir(MemoryEntries(), auth)
    with pytest.raises(ValueError, match=r"step-up needs totp\.key, step-up\.secret"):
        SecondFactors.from_dir(MemoryEntries(), tmp_path)


async def test_enrolment_is_pending_until_a_first_code_confirms_it(factors: SecondFactors, clock: Clock) -> None:
    enrolment = await factors.enroll(OPERATOR)
    assert enrolment.operator == "key-ops" and enrolment.provisioning_uri.startswith("otpauth://totp/tidemesh:key-ops")
    with pytest.raises(Conflict, match="has no second factor"):
        await factors.step_up(OPERATOR, PURGE, RESOURCE, code(enrolment.secret, clock))
    with pytest.raises(Unauthenticated, match="wrong or too old"):
        await factors.confirm(OPERATOR, "000000" if code(enrolment.secret, clock) != "000000" else "111111")
    with pytest.raises(InvalidArgument, match="6 digits"):
        await factors.confirm(OPERATOR, "12ab")
    await factors.confirm(OPERATOR, code(enrolment.secret, clock))
    with pytest.raises(Conflict, match="nothing to confirm"):
        await factors.confirm(OPERATOR, code(enrolment.secret, clock))


async def test_the_seed_is_sealed_and_bound_to_its_operator(
    factors: SecondFactors, entries: MemoryEntries, clock: Clock
) -> None:
    """The stored record holds no secret in the clear; moved under another operator it opens for nobody."""
    secret = await enrolled(factors, clock)
    ((key, (value, _)),) = entries.values.items()
    assert secret not in value.decode() and key.startswith("totp.") and "key-ops" not in key
    await entries.put(_stepup._key("key-other"), value)  # a copied record
    with pytest.raises(Unauthenticated, match="does not open"):
        await factors.verify(OTHER, code(secret, clock))


async def test_replacing_an_active_factor_takes_a_code_of_it(factors: SecondFactors, clock: Clock) -> None:
    secret = await enrolled(factors, clock)
    with pytest.raises(InvalidArgument) as refused:
        await factors.enroll(OPERATOR)
    assert refused.value.field == "current_code"
    replaced = await factors.enroll(OPERATOR, code(secret, clock))
    assert replaced.secret != secret


async def test_a_code_is_taken_once_and_a_late_one_only_within_a_period(factors: SecondFactors, clock: Clock) -> None:
    """The confirming code cannot step up; the previous or next period's code still can (clock skew),
    two periods off cannot; a code used, or one older than the last used, is refused as replayed."""
    secret = await enrolled(factors, clock)
    clock.now -= 30
    with pytest.raises(Unauthenticated, match=r"used already \(replayed\)"):
        await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock))
    clock.now += 30
    with pytest.raises(Unauthenticated, match="wrong or too old"):
        await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock, periods_ago=2))
    with pytest.raises(Unauthenticated, match="wrong or too old"):
        await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock, periods_ago=-2))
    clock.now += 30
    await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock, periods_ago=1))  # late by a period
    await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock))
    await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock, periods_ago=-1))  # early by a period
    with pytest.raises(Unauthenticated, match="replayed"):  # older than the step just taken
        await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock))


async def test_two_callers_with_one_code_one_wins(factors: SecondFactors, clock: Clock) -> None:
    secret = await enrolled(factors, clock)
    fresh = code(secret, clock)
    results = await asyncio.gather(*(factors.verify(OPERATOR, fresh) for _ in range(2)), return_exceptions=True)
    assert sum(isinstance(r, int) for r in results) == 1
    assert sum(isinstance(r, Unauthenticated) and "replayed" in r.message for r in results) == 1


async def test_a_step_up_token_is_required_accepted_once_and_carries_otp(factors: SecondFactors, clock: Clock) -> None:
    """Required: no token is a challenge naming the action, resource and what to run; accepted: the
    principal comes back with amr otp; replayed: the same token again is a fresh challenge."""
    with pytest.raises(StepUpRequired) as required:
        await factors.approve(OPERATOR, PURGE, RESOURCE)
    assert (required.value.action, required.value.resource) == (PURGE, RESOURCE)
    assert (
        "no step-up token came" in required.value.message
        and "tidemesh auth step-up dlq.purge" in required.value.message
    )
    secret = await enrolled(factors, clock)
    minted = await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock))
    assert minted.amr == ("otp",) and minted.expires_at == clock.now + TOKEN_TTL_S
    bringing = replace(OPERATOR, step_up_token=minted.token)
    approved = await factors.approve(bringing, PURGE, RESOURCE)
    assert approved.amr == ("otp",) and approved.step_up_token == ""
    with pytest.raises(StepUpRequired, match="used already"):
        await factors.approve(bringing, PURGE, RESOURCE)


@pytest.mark.parametrize(
    ("action", "resource", "who", "words"),
    [
        ("audit.export", "audit", OPERATOR, "approves dlq.purge on dlq:tenant=acme, not this"),
        (PURGE, "dlq:tenant=globex", OPERATOR, "approves dlq.purge on dlq:tenant=acme, not this"),
        (PURGE, RESOURCE, OTHER, "minted for another credential"),
    ],
)
async def test_a_token_is_bound_to_its_action_resource_and_credential(
    factors: SecondFactors, clock: Clock, action: str, resource: str, who: Principal, words: str
) -> None:
    secret = await enrolled(factors, clock)
    minted = await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock))
    with pytest.raises(StepUpRequired, match=words) as refused:
        await factors.approve(replace(who, step_up_token=minted.token), action, resource)
    assert (refused.value.action, refused.value.resource) == (action, resource)
    await factors.approve(replace(OPERATOR, step_up_token=minted.token), PURGE, RESOURCE)  # still good for its own


async def test_an_expired_or_forged_token_is_a_challenge(factors: SecondFactors, clock: Clock) -> None:
    secret = await enrolled(factors, clock)
    minted = await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock))
    clock.now += TOKEN_TTL_S
    with pytest.raises(StepUpRequired, match="expired"):
        await factors.approve(replace(OPERATOR, step_up_token=minted.token), PURGE, RESOURCE)
    head, body, _ = minted.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "act": "audit.export"}).encode()).rstrip(b"=").decode()
    with pytest.raises(StepUpRequired, match="does not verify"):
        await factors.approve(replace(OPERATOR, step_up_token=f"{head}.{forged}.x"), "audit.export", "audit")


async def test_a_step_up_names_a_declared_action_and_a_resource(factors: SecondFactors, clock: Clock) -> None:
    secret = await enrolled(factors, clock)
    with pytest.raises(InvalidArgument) as unknown:
        await factors.step_up(OPERATOR, "dlq.prge", RESOURCE, code(secret, clock))
    assert unknown.value.field == "action"
    with pytest.raises(InvalidArgument) as missing:
        await factors.step_up(OPERATOR, PURGE, "", code(secret, clock))
    assert missing.value.field == "resource"


def test_the_challenge_on_the_wire_grpc_and_http() -> None:
    """UNAUTHENTICATED with www-authenticate (RFC 9470's insufficient_user_authentication) and the
    action and resource, read back as StepUpRequired; HTTP 401 with WWW-Authenticate."""
    challenge = StepUpRequired('dlq.purge on dlq:tenant=acme needs a "fresh" second factor', PURGE, RESOURCE)
    code_, trailers = status_of(challenge)
    assert code_ == grpc.StatusCode.UNAUTHENTICATED
    header = dict(trailers)["www-authenticate"]
    assert header.startswith('Bearer error="insufficient_user_authentication"') and 'acr_values="otp"' in header
    assert 'needs a \\"fresh\\" second factor' in header and f'resource="{RESOURCE}"' in header
    back = error_from_status(code_, challenge.message, dict(trailers))
    assert isinstance(back, StepUpRequired) and (back.action, back.resource) == (PURGE, RESOURCE)
    response = _error(challenge)
    assert response.status == 401 and response.headers["WWW-Authenticate"] == header


async def test_a_used_tokens_entry_expires_once_no_gateway_could_take_the_token(
    factors: SecondFactors, entries: MemoryEntries, clock: Clock
) -> None:
    """The entry that refuses a replay lives the token's lifetime plus the clock margin, then the
    broker removes it; the token is refused all along (used, then expired), and nothing stays."""
    secret = await enrolled(factors, clock)
    minted = await factors.step_up(OPERATOR, PURGE, RESOURCE, code(secret, clock))
    clock.now += 30
    bringing = replace(OPERATOR, step_up_token=minted.token)
    await factors.approve(bringing, PURGE, RESOURCE)
    (used,) = [key for key in entries.values if key.startswith(USED_PREFIX)]
    assert entries.expires[used] == pytest.approx(minted.expires_at + USED_MARGIN_S, abs=1.0)
    clock.now = minted.expires_at - 1
    with pytest.raises(StepUpRequired, match="used already"):
        await factors.approve(bringing, PURGE, RESOURCE)
    clock.now = minted.expires_at + USED_MARGIN_S - 2
    assert await entries.get(used) is not None  # a gateway whose clock is behind still finds it
    clock.now = minted.expires_at + USED_MARGIN_S + 1
    assert await entries.get(used) is None and not await entries.scan(USED_PREFIX)
    with pytest.raises(StepUpRequired, match="expired"):
        await factors.approve(bringing, PURGE, RESOURCE)
    assert [key for key in entries.values if key.startswith("totp.")]  # the seed is no such entry


async def test_entries_written_without_a_ttl_are_given_one(
    factors: SecondFactors, entries: MemoryEntries, clock: Clock
) -> None:
    """expire_used: a live token's entry until its expiry plus the margin, a long-expired one's in a
    second, an unreadable one's after the margin; an entry rewritten meanwhile is left to its writer."""
    secret = await enrolled(factors, clock)
    await entries.put(f"{USED_PREFIX}live", json.dumps({"exp": clock.now + 100}).encode())
    await entries.put(f"{USED_PREFIX}old", json.dumps({"exp": clock.now - 86_400}).encode())
    await entries.put(f"{USED_PREFIX}junk", b"not json")
    assert not entries.expires
    assert await factors.expire_used() == 3
    assert entries.expires == {
        f"{USED_PREFIX}live": clock.now + 100 + USED_MARGIN_S,
        f"{USED_PREFIX}old": clock.now + 1,
        f"{USED_PREFIX}junk": clock.now + USED_MARGIN_S,
    }
    clock.now += 100 + USED_MARGIN_S
    assert not await entries.scan(USED_PREFIX)
    await factors.verify(OPERATOR, code(secret, clock))  # the seed's record was not touched

    class Moving(MemoryEntries):
        async def update(self, key: str, value: bytes, revision: int, ttl_s: float | None = None) -> None:
            await self.put(key, value)  # another gateway got there first
            await super().update(key, value, revision, ttl_s)

    moving = Moving(clock)
    await moving.put(f"{USED_PREFIX}raced", b'{"exp": 0}')
    assert await SecondFactors(moving, secrets.token_bytes(32), "s", clock).expire_used() == 0
