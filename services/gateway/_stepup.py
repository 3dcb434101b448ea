"""Step-up for sensitive actions: a TOTP second factor per operator, and step-up tokens bound to one
action on one resource.

An operator (an API key, or a token's ``sub``) enrols a TOTP authenticator (RFC 6238, `pyotp`):
`enroll` makes a seed and shows it once, `confirm` makes it active with a first code. Before a
sensitive action (`SENSITIVE`) the gateway wants a **step-up token**: `step_up` checks a fresh code
and mints one — HS256, signed with the auth dir's ``step-up.secret``, lasting `TOKEN_TTL_S`,
carrying ``amr: ["otp"]`` and the one action and resource it approves — which the call then brings
in ``x-tidemesh-step-up``. `approve` takes it once: another action or resource, another credential,
an expired or a used token is refused with a fresh challenge (`StepUpRequired`). A used token is
remembered (``stepup.<jti>``) only as long as it could be brought again: the entry carries a
per-message TTL — the token's expiry plus `USED_MARGIN_S` — and the broker removes it then;
`expire_used` gives such a TTL to entries written before there was one (at the gateway's start).

Replay-safe: a code is taken once — each seed remembers the last time step it accepted, and a
code of that step or before is refused, across replicas (the record is updated on its revision).
Seeds are stored like credentials, in ``tm_credentials`` (``totp.<operator digest>``), sealed with
AES-256-GCM under the auth dir's ``totp.key`` and bound to their operator; never logged, shown
only once to the operator who enrols.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import jwt
import nats.errors
import nats.js.errors
import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mesh.access import action_named
from mesh.errors import Conflict, InvalidArgument, StepUpRequired, Unauthenticated, Unavailable
from mesh.telemetry import get_logger
from services.gateway._auth import CredentialStore, Principal

log = get_logger(__name__)

TOTP_KEY_FILE = "totp.key"  # 32 random bytes, base64: seals the seeds
STEP_UP_SECRET_FILE = "step-up.secret"  # signs step-up tokens
TOKEN_TTL_S = 120.0
TOKEN_AUDIENCE = "tidemesh-step-up"
ISSUER = "tidemesh"
STEP_UP_HEADER = "x-tidemesh-step-up"
USED_PREFIX = "stepup."  # a used token's entry: stepup.<jti>
# How long a used token's entry outlives the token: each gateway checks expiry on its own clock,
# so one whose clock runs behind by less than this still finds the entry and refuses the replay.
USED_MARGIN_S = 60.0
_TTL_DISABLED = 10166  # JetStream's "per-message TTL is disabled" (a bucket made without allow_msg_ttl)
# The actions that want a fresh second factor, and when (the handler asks `approve` then).
SENSITIVE = {
    "dlq.purge": "always",
    "audit.export": "always",
    "policy.override": "always",
    "config.apply": "in a mesh of the prod preset",
    "auth.key.create": "when the new key holds admin",
    "auth.revoke": "when the credential revoked is an admin's API key",
}


class Entries(Protocol):
    """The KV seam: entries with revisions (the credentials bucket; `MemoryEntries` in unit tests)."""

    async def get(self, key: str) -> tuple[bytes, int] | None: ...
    # Conflict if it exists; `ttl_s`: the broker removes the entry that long after it is written.
    async def create(self, key: str, value: bytes, ttl_s: float | None = None) -> None: ...
    # Conflict if it moved on from `revision`.
    async def update(self, key: str, value: bytes, revision: int, ttl_s: float | None = None) -> None: ...
    async def put(self, key: str, value: bytes) -> None: ...
    async def scan(self, prefix: str) -> list[tuple[str, bytes, int]]: ...  # (key, value, revision) under prefix


class BucketEntries:
    """`Entries` on the credentials bucket (the store's, re-declared if it goes)."""

    def __init__(self, store: CredentialStore) -> None:
        self._store = store
        self._ttl_refused = False  # the bucket takes no per-message TTL: said once, entries kept without

    async def get(self, key: str) -> tuple[bytes, int] | None:
        try:
            entry = await self._store.bucket.get(key)
        except nats.js.errors.NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the credential store could not be read: {type(exc).__name__}") from exc
        return (entry.value, entry.revision or 0) if entry.value else None

    def _ttl(self, ttl_s: float | None) -> int | None:
        """Whole seconds (JetStream's unit), at least 1; None when there is none or the bucket refused one."""
        return None if ttl_s is None or self._ttl_refused else max(1, math.ceil(ttl_s))

    def _refused_ttl(self, exc: nats.js.errors.APIError) -> bool:
        if getattr(exc, "err_code", None) != _TTL_DISABLED or self._ttl_refused:
            return False
        self._ttl_refused = True
        log.warning(
            "the credentials bucket takes no per-message TTL: used step-up tokens are kept without one "
            "(declare tm_credentials again to have them expire)"
        )
        return True

    async def create(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        try:
            try:
                await self._store.bucket.create(key, value, msg_ttl=self._ttl(ttl_s))
            except nats.js.errors.KeyWrongLastSequenceError:
                raise
            except nats.js.errors.APIError as exc:
                if not self._refused_ttl(exc):
                    raise
                await self._store.bucket.create(key, value)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise Conflict(f"{key} exists") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the credential store could not record it: {type(exc).__name__}") from exc

    async def update(self, key: str, value: bytes, revision: int, ttl_s: float | None = None) -> None:
        bucket = self._store.bucket
        try:
            ttl = self._ttl(ttl_s)
            if ttl is None:
                await bucket.update(key, value, last=revision)
            else:
                # nats-py 2.16's public update takes no TTL; _update is what it and create call.
                await bucket._update(key, value, last=revision, msg_ttl=ttl)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise Conflict(f"{key} changed meanwhile") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the credential store could not record it: {type(exc).__name__}") from exc

    async def scan(self, prefix: str) -> list[tuple[str, bytes, int]]:
        """The live entries whose key starts with `prefix` (which ends in a dot: a token of the key)."""
        found: list[tuple[str, bytes, int]] = []
        try:
            watcher = await self._store.bucket.watch(f"{prefix}>", ignore_deletes=True)
            try:
                while (entry := await watcher.updates(timeout=5.0)) is not None:  # type: ignore[no-untyped-call]
                    if entry.value:
                        found.append((entry.key, entry.value, entry.revision or 0))
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the credential store could not be read: {type(exc).__name__}") from exc
        return found

    async def put(self, key: str, value: bytes) -> None:
        try:
            await self._store.bucket.put(key, value)
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the credential store could not record it: {type(exc).__name__}") from exc


class MemoryEntries:
    """`Entries` in memory, for unit tests; an entry with a TTL is gone once `clock` passes it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.values: dict[str, tuple[bytes, int]] = {}
        self.expires: dict[str, float] = {}  # key → when the broker would remove it
        self._revision = 0
        self._clock = clock

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, at in self.expires.items() if at <= now]:
            del self.expires[key], self.values[key]

    async def get(self, key: str) -> tuple[bytes, int] | None:
        self._expire()
        return self.values.get(key)

    def _set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._revision += 1
        self.values[key] = (value, self._revision)
        self.expires.pop(key, None)
        if ttl_s is not None:
            self.expires[key] = self._clock() + max(1, math.ceil(ttl_s))

    async def create(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._expire()
        if key in self.values:
            raise Conflict(f"{key} exists")
        self._set(key, value, ttl_s)

    async def update(self, key: str, value: bytes, revision: int, ttl_s: float | None = None) -> None:
        self._expire()
        if key not in self.values or self.values[key][1] != revision:
            raise Conflict(f"{key} changed meanwhile")
        self._set(key, value, ttl_s)

    async def put(self, key: str, value: bytes) -> None:
        self._set(key, value)

    async def scan(self, prefix: str) -> list[tuple[str, bytes, int]]:
        self._expire()
        return [(key, value, revision) for key, (value, revision) in self.values.items() if key.startswith(prefix)]


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32: shown once, to the operator enrolling
    provisioning_uri: str  # otpauth://totp/…, for an authenticator app's QR code
    operator: str


@dataclass(frozen=True)
class StepUpToken:
    token: str
    expires_at: float
    amr: tuple[str, ...] = ("otp",)


def operator_of(principal: Principal) -> str:
    """Who enrols a second factor: an API key's id, or a token's subject."""
    return principal.subject or principal.credential_id


def _key(operator: str) -> str:
    return f"totp.{hashlib.sha256(operator.encode()).hexdigest()[:40]}"


class SecondFactors:
    """TOTP enrolment, verification and step-up tokens of one gateway (see the module docstring)."""

    def __init__(
        self, entries: Entries, seal_key: bytes, token_secret: str, clock: Callable[[], float] = time.time
    ) -> None:
        if len(seal_key) != 32:
            raise ValueError("the TOTP sealing key must be 32 bytes (AES-256)")
        self._entries = entries
        self._aead = AESGCM(seal_key)
        self._secret = token_secret
        self._clock = clock

    @classmethod
    def from_dir(cls, entries: Entries, directory: Path) -> SecondFactors:
        """The sealing key and token secret in `directory` (an auth dir `tidemesh up` made)."""
        missing = [name for name in (TOTP_KEY_FILE, STEP_UP_SECRET_FILE) if not (directory / name).exists()]
        if missing:
            raise ValueError(f"step-up needs {', '.join(missing)} in {directory} (`tidemesh up` creates them)")
        seal_key = base64.b64decode((directory / TOTP_KEY_FILE).read_text().strip())
        return cls(entries, seal_key, (directory / STEP_UP_SECRET_FILE).read_text().strip())

    # -- the seed -----------------------------------------------------------------------------

    def _seal(self, operator: str, seed: str) -> str:
        nonce = secrets.token_bytes(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, seed.encode(), _key(operator).encode())).decode()

    def _unseal(self, operator: str, sealed: str) -> str:
        raw = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], _key(operator).encode()).decode()
        except InvalidTag as exc:  # another operator's record, or another mesh's key
            raise Unauthenticated("the second factor on record does not open with this mesh's key") from exc

    async def _record(self, operator: str) -> tuple[dict[str, object], int] | None:
        found = await self._entries.get(_key(operator))
        if found is None:
            return None
        value, revision = found
        record = json.loads(value)
        return (record, revision) if isinstance(record, dict) else None

    async def enroll(self, principal: Principal, current_code: str = "") -> Enrolment:
        """A new seed for the caller (pending until `confirm`). One already active is replaced only
        with a code of it (`current_code`): a stolen key alone cannot swap the second factor."""
        operator = operator_of(principal)
        found = await self._record(operator)
        if found is not None and found[0].get("state") == "active":
            if not current_code:
                raise InvalidArgument(
                    "current_code", "a second factor is enrolled already: give a code of it to replace it"
                )
            await self.verify(principal, current_code, "current_code")
        seed = pyotp.random_base32()
        record = {"sealed": self._seal(operator, seed), "state": "pending", "last_step": 0, "at": self._clock()}
        await self._entries.put(_key(operator), json.dumps(record).encode())
        uri = pyotp.TOTP(seed).provisioning_uri(name=operator, issuer_name=ISSUER)
        return Enrolment(seed, uri, operator)

    async def confirm(self, principal: Principal, code: str) -> None:
        """Make the pending seed active with its first code."""
        operator = operator_of(principal)
        found = await self._record(operator)
        if found is None or found[0].get("state") != "pending":
            raise Conflict("nothing to confirm: enrol first (`tidemesh auth enroll`)")
        await self._take(operator, found, code, "code", activate=True)

    async def verify(self, principal: Principal, code: str, field: str = "code") -> int:
        """The time step of `code`, a fresh code of the caller's active seed, now used up."""
        operator = operator_of(principal)
        found = await self._record(operator)
        if found is None or found[0].get("state") != "active":
            raise Conflict(
                f"credential {principal.credential_id} has no second factor: enrol one (`tidemesh auth enroll`)"
            )
        return await self._take(operator, found, code, field)

    async def _take(
        self, operator: str, found: tuple[dict[str, object], int], code: str, field: str, activate: bool = False
    ) -> int:
        """Check `code` and record its step, on the record's revision: of two callers with one code, one wins."""
        if not code.isdigit() or len(code) != 6:
            raise InvalidArgument(field, "a one-time code is 6 digits")
        for _ in range(3):
            record, revision = found
            totp = pyotp.TOTP(self._unseal(operator, str(record["sealed"])))
            now = self._clock()
            # This period, or one either side (an authenticator's clock a little behind or ahead).
            steps = [totp.timecode(now) + offset for offset in (0, -1, 1)]
            step = next((s for s in steps if hmac.compare_digest(totp.generate_otp(s), code)), None)
            if step is None:
                raise Unauthenticated(f"{field}: the one-time code is wrong or too old")
            last = record.get("last_step", 0)
            if isinstance(last, int) and step <= last:
                raise Unauthenticated(f"{field}: this one-time code was used already (replayed); wait for the next")
            taken = {**record, "last_step": step, **({"state": "active"} if activate else {})}
            try:
                await self._entries.update(_key(operator), json.dumps(taken).encode(), revision)
                return step
            except Conflict:  # another replica took a code meanwhile: read again and check again
                again = await self._record(operator)
                if again is None:
                    raise Conflict("the second factor was removed meanwhile: enrol again") from None
                found = again
        raise Unavailable("the second factor is changing too fast to take this code; try again", retry_after_s=1.0)

    # -- step-up tokens ----------------------------------------------------------------------

    async def step_up(self, principal: Principal, action: str, resource: str, code: str) -> StepUpToken:
        """A token approving `action` on `resource` once, for `TOKEN_TTL_S`, after a fresh code."""
        action_named(action)
        if not resource:
            raise InvalidArgument("resource", "name what the action is on, as the challenge gave it")
        await self.verify(principal, code)
        now = self._clock()
        expires_at = now + TOKEN_TTL_S
        claims = {
            "sub": operator_of(principal),
            "cid": principal.credential_id,
            "amr": ["otp"],
            "act": action,
            "res": resource,
            "aud": TOKEN_AUDIENCE,
            "iat": int(now),
            "exp": expires_at,
            "jti": secrets.token_hex(12),
        }
        return StepUpToken(jwt.encode(claims, self._secret, algorithm="HS256"), expires_at)

    async def approve(self, principal: Principal, action: str, resource: str) -> Principal:
        """`principal` with ``amr`` ``otp``, if it brings a step-up token for `action` on `resource`
        that has not been used; else StepUpRequired saying what is missing."""
        how = f"`tidemesh auth step-up {action} --resource {resource}`"

        def challenge(why: str) -> StepUpRequired:
            return StepUpRequired(f"{action} on {resource} needs a fresh second factor: {why}; {how}", action, resource)

        if not principal.step_up_token:
            raise challenge("no step-up token came with the call")
        try:
            claims = jwt.decode(
                principal.step_up_token,
                self._secret,
                algorithms=["HS256"],
                audience=TOKEN_AUDIENCE,
                # Issue and expiry are checked on this gateway's clock (a test's own, in unit tests).
                options={"require": ["exp", "aud", "jti"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise challenge(f"the step-up token does not verify ({exc})") from None
        if float(claims["exp"]) <= self._clock():
            raise challenge("the step-up token expired")
        if claims.get("cid") != principal.credential_id:
            raise challenge("the step-up token was minted for another credential")
        if (claims.get("act"), claims.get("res")) != (action, resource):
            raise challenge(f"the step-up token approves {claims.get('act')} on {claims.get('res')}, not this")
        # Kept while a gateway could still take the token (see USED_MARGIN_S), then removed by the broker.
        kept_s = float(claims["exp"]) - self._clock() + USED_MARGIN_S
        try:
            await self._entries.create(
                f"{USED_PREFIX}{claims['jti']}", json.dumps({"exp": claims["exp"]}).encode(), ttl_s=kept_s
            )
        except Conflict:
            raise challenge("the step-up token was used already") from None
        amr = tuple(a for a in claims.get("amr", ()) if isinstance(a, str))
        return replace(principal, amr=amr, step_up_token="")

    async def expire_used(self) -> int:
        """Give every used token's entry a TTL ending `USED_MARGIN_S` after its token's expiry (one
        long expired: a second), written again on its revision; entries from before TTLs existed
        are removed so. How many were rewritten; one another gateway rewrote meanwhile is left."""
        rewritten = 0
        now = self._clock()
        for key, value, revision in await self._entries.scan(USED_PREFIX):
            try:
                expires_at = float(json.loads(value)["exp"])
            except (ValueError, KeyError, TypeError):
                expires_at = now  # unreadable: no token could be checked against it; let it go soon
            try:
                await self._entries.update(key, value, revision, ttl_s=max(1.0, expires_at + USED_MARGIN_S - now))
            except Conflict:
                continue
            rewritten += 1
        return rewritten
