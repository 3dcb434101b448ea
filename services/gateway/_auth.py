"""Who is calling, and what they may do: JWT bearer tokens and API keys, checked at the gateway.

Credentials (every endpoint but health and the OpenAPI document requires one when auth is on):

- **JWT** — ``authorization: Bearer <token>``. Checked: signature (HS256 with a shared secret, or
  RS256/ES256 with a public key), ``exp`` (required), ``aud`` (must name this mesh). Claims:
  ``tenant`` (a tenant id, or ``*`` for every tenant), ``roles`` (role names, `mesh.access`: viewer,
  submitter, operator, tenant-admin, policy-admin, auditor, worker, admin, the mesh's own; and the
  earlier words read, submit, work, admin as their aliases) and ``jti`` (its id, for revocation).
- **API key** — ``authorization: ApiKey tmk_<id>_<secret>`` or ``x-api-key: tmk_<id>_<secret>``.
  Looked up by id in the KV bucket ``tm_credentials`` and checked against its SHA-256 hash; it
  carries a tenant and roles and lasts until revoked.

Revocation: ``revoked.<credential id>`` in the same bucket. Every gateway watches the bucket, so a
revoked credential is refused — and the streams it opened end — as soon as the watch delivers the
change (milliseconds on one cluster).

Browsers cannot set headers on EventSource or WebSocket: there the credential may come as the
``access_token`` query parameter. Secrets never reach logs — only credential ids do.

What a principal may do is decided by its roles (`mesh.access.RoleCatalog`, through the `Guard`);
its roles are kept by their canonical names (``read`` becomes ``viewer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import jwt
import nats.errors
import nats.js.api
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mesh.access import ANY_TENANT as ANY_TENANT  # re-exported: the gateway's modules take it from here
from mesh.access import RoleCatalog
from mesh.errors import InvalidArgument, Unauthenticated, Unavailable
from mesh.fabric import Quarantine, entry_subject
from mesh.telemetry import get_logger

log = get_logger(__name__)

CREDENTIALS_BUCKET = "tm_credentials"
API_KEY_PREFIX = "tmk_"
BUILTIN = RoleCatalog()  # the built-in roles alone: what a gateway started without custom roles knows


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its roles by canonical name (see `mesh.access`)."""

    credential_id: str
    tenant: str
    roles: frozenset[str]
    expires_at: float | None = None  # unix seconds; None: until revoked
    subject: str = ""  # who: a token's sub ("" for an API key, whose id is who)
    amr: tuple[str, ...] = ()  # how it was authenticated beyond the credential: ("otp",) after a step-up
    # A step-up token the call brought (x-tidemesh-step-up), checked only by an action that wants one.
    step_up_token: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class JwtSettings:
    key: str  # the shared secret (HS256) or a PEM public key (RS256/ES256)
    algorithms: tuple[str, ...]
    audience: str

    @classmethod
    def from_dir(cls, directory: Path, audience: str) -> JwtSettings | None:
        """``jwt.secret`` (HS256) or ``jwt.pub`` (RS256 and ES256) in `directory`, if present."""
        secret, public = directory / "jwt.secret", directory / "jwt.pub"
        if secret.exists():
            return cls(secret.read_text().strip(), ("HS256",), audience)
        if public.exists():
            return cls(public.read_text(), ("RS256", "ES256"), audience)
        return None


@dataclass(frozen=True)
class _ApiKey:
    key_id: str
    digest: str  # sha256 of the whole token, hex
    tenant: str
    roles: frozenset[str]
    name: str = ""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """(key id, token): the token is shown once; only its hash is stored."""
    key_id = secrets.token_hex(6)
    return key_id, f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(24)}"


class CredentialStore:
    """API keys and revocations in KV, mirrored in memory by a watch.

    A key this gateway has not heard of yet (another replica created it a moment ago, and the
    watch has not delivered it) is read from KV before it is refused, so a credential the mesh
    has returned works on the next call on every replica. Misses are remembered for
    `MISS_TTL_S` and read `LOOKUPS_AT_ONCE` at a time, so a flood of unknown keys costs KV
    little. If the bucket disappears (deleted by hand, a broker that lost its store), the
    store declares it again: writes are retried once on the new bucket and the watch follows it.
    A write that still cannot be recorded is `Unavailable`, never a silent success.
    """

    MISS_TTL_S = 2.0
    LOOKUPS_AT_ONCE = 16
    _MAX_MISSES = 10_000
    # How long the watch may be quiet before it checks that its bucket is still the one it follows.
    CHECK_S = 2.0

    def __init__(self, js: JetStreamContext, kv: KeyValue, replicas: int = 1) -> None:
        self._js = js
        self._kv = kv
        self._replicas = replicas
        self._keys: dict[str, _ApiKey] = {}
        self._revoked: dict[str, str] = {}  # credential id → reason
        self._listeners: list[Callable[[str, str], None]] = []
        self._watch: asyncio.Task[None] | None = None
        self._misses: dict[str, float] = {}  # key id → monotonic time until which KV is not asked again
        self._lookups: dict[str, asyncio.Future[_ApiKey | None]] = {}  # one KV read per key id at a time
        self._lookup_gate = asyncio.Semaphore(self.LOOKUPS_AT_ONCE)
        self._quarantined: set[int] = set()  # revisions of unreadable entries already recorded

    @classmethod
    async def open(cls, js: JetStreamContext, replicas: int = 1) -> CredentialStore:
        return cls(js, await _declare_bucket(js, replicas), replicas)

    async def start(self) -> None:
        ready = asyncio.Event()
        self._watch = asyncio.create_task(self._follow(ready))
        await ready.wait()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    def add_static_key(self, token: str, tenant: str, roles: Iterable[str], name: str) -> str:
        """A key known from a file (the bootstrap admin key of `tidemesh up`); returns its id."""
        key_id = _key_id_of(token)
        self._keys[key_id] = _ApiKey(key_id, _digest(token), tenant, frozenset(roles), name)
        return key_id

    def on_revoke(self, listener: Callable[[str, str], None]) -> None:
        self._listeners.append(listener)

    async def create_key(self, tenant: str, roles: Iterable[str], name: str = "") -> tuple[str, str]:
        """A new key for `tenant` with `roles` (already checked by the caller: `RoleCatalog.check_credential`)."""
        checked = sorted(roles)
        if not checked:
            raise InvalidArgument("roles", "a key holds one or more roles")
        key_id, token = new_api_key()
        digest = _digest(token)
        record = {"digest": digest, "tenant": tenant, "roles": checked, "name": name}
        await self._record("the new API key", lambda kv: kv.create(f"apikey.{key_id}", json.dumps(record).encode()))
        # Known here before the caller sees it: the next call on this replica needs no KV read.
        self._keys[key_id] = _ApiKey(key_id, digest, tenant, frozenset(checked), name)
        return key_id, token

    async def revoke(self, credential_id: str, reason: str) -> None:
        reason = reason or "revoked"
        record = {"reason": reason, "at": time.time()}
        # In force on this replica whatever KV says: failing closed here is safe; failing open is not.
        self._mark_revoked(credential_id, reason)
        await self._record(
            f"the revocation of {credential_id} (in force on this gateway only until it is)",
            lambda kv: kv.put(f"revoked.{credential_id}", json.dumps(record).encode()),
        )

    @property
    def bucket(self) -> KeyValue:
        """The credentials bucket as it is now (declared again if it went)."""
        return self._kv

    def api_key(self, key_id: str) -> _ApiKey | None:
        return self._keys.get(key_id)

    async def find_api_key(self, key_id: str) -> _ApiKey | None:
        """The key `key_id`, from memory or else from KV (bounded: see the class docstring)."""
        known = self._keys.get(key_id)
        if known is not None or self._misses.get(key_id, 0.0) > time.monotonic():
            return known
        pending = self._lookups.get(key_id)
        if pending is None:
            pending = self._lookups[key_id] = asyncio.ensure_future(self._read_key(key_id))
            pending.add_done_callback(functools.partial(self._lookup_done, key_id))
        return await asyncio.shield(pending)  # one caller giving up must not cancel the others' read

    def _lookup_done(self, key_id: str, lookup: asyncio.Future[_ApiKey | None]) -> None:
        self._lookups.pop(key_id, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved here too: every caller may have gone before it finished

    def revoked(self, credential_id: str) -> str | None:
        return self._revoked.get(credential_id)

    async def _read_key(self, key_id: str) -> _ApiKey | None:
        async with self._lookup_gate:
            try:
                record = await self._read(f"apikey.{key_id}")
                revocation = await self._read(f"revoked.{key_id}") if record is not None else None
            except (TimeoutError, nats.errors.Error) as exc:
                raise Unavailable(f"the credential store could not be read: {type(exc).__name__}: {exc}") from exc
        if record is None:
            if len(self._misses) >= self._MAX_MISSES:
                now = time.monotonic()
                self._misses = {k: until for k, until in self._misses.items() if until > now}
                if len(self._misses) >= self._MAX_MISSES:
                    self._misses.clear()
            self._misses[key_id] = time.monotonic() + self.MISS_TTL_S
            return None
        if revocation is not None:
            await self._take(f"revoked.{key_id}", *revocation)
        await self._take(f"apikey.{key_id}", *record)
        return self._keys.get(key_id)

    async def _read(self, key: str) -> tuple[bytes, int] | None:
        """The entry's value and revision, or None if there is none."""
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.NotFoundError:  # no such key, a deleted one, or no bucket at all
            return None
        return (entry.value, entry.revision or 0) if entry.value else None

    async def _record(self, what: str, write: Callable[[KeyValue], Awaitable[object]]) -> None:
        """`write` on the bucket; once more on a re-declared bucket if it has gone; else Unavailable."""
        try:
            try:
                await write(self._kv)
            except _BUCKET_GONE:
                log.warning("credential bucket %s is gone: declaring it again", CREDENTIALS_BUCKET)
                self._kv = await _declare_bucket(self._js, self._replicas)
                await write(self._kv)
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(
                f"the credential store could not record {what}: {type(exc).__name__}: {exc}; try again"
            ) from exc

    def _mark_revoked(self, credential_id: str, reason: str) -> None:
        if credential_id in self._revoked:
            return
        self._revoked[credential_id] = reason
        log.warning("credential revoked", extra={"credential_id": credential_id})
        for listener in self._listeners:
            listener(credential_id, reason)

    async def _follow(self, ready: asyncio.Event) -> None:
        """Mirror the bucket; re-open the watch when it fails, ends, or its bucket is replaced."""
        while True:
            watcher = None
            try:
                generation = await self._generation()
                if generation is None:  # the bucket is gone: declare it again, then follow the new one
                    self._kv = await _declare_bucket(self._js, self._replicas)
                    generation = await self._generation()
                watcher = await self._kv.watchall()
                while True:
                    try:
                        entry = await watcher.updates(timeout=self.CHECK_S)
                    except nats.errors.TimeoutError:
                        # A deleted bucket leaves its watch silent forever, not ended: check it is still ours.
                        if await self._generation() != generation:
                            log.warning("credential bucket %s was replaced: following the new one", CREDENTIALS_BUCKET)
                            break
                        continue
                    if entry is None:  # the initial values are in
                        ready.set()
                        continue
                    if entry is KeyValue.KeyWatcher.STOP_ITER:
                        log.warning("credential watch ended")
                        break
                    await self._take(entry.key, entry.value, entry.revision or 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("credential watch failed: %r", exc)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()
            ready.set()  # start() must not wait forever on a broker that is away
            await asyncio.sleep(self.CHECK_S / 4)

    async def _generation(self) -> object:
        """When the bucket's stream was created (None: it does not exist): a new one is a new bucket."""
        try:
            info = await self._js.stream_info(f"KV_{CREDENTIALS_BUCKET}")
        except nats.js.errors.NotFoundError:
            return None
        return info.created

    async def _take(self, key: str, value: bytes | None, revision: int) -> None:
        """`_apply` an entry; one that cannot be read is quarantined (once per revision) and the reader goes on."""
        try:
            self._apply(key, value)
        except UnreadableCredential as exc:
            if revision in self._quarantined:
                return
            subject = entry_subject(CREDENTIALS_BUCKET, key)
            if await Quarantine(self._js).set_aside(
                "credentials", subject, revision, value, exc.classification, str(exc)
            ):
                self._quarantined.add(revision)  # else tried again when the entry is next read

    def _apply(self, key: str, value: bytes | None) -> None:
        """Mirror one entry. An unreadable key record is not a key; an unreadable revocation still
        revokes (failing closed), and both raise UnreadableCredential after that."""
        kind, _, credential_id = key.partition(".")
        if not value:
            return
        try:
            record = json.loads(value)
        except ValueError as exc:  # not UTF-8 or not JSON
            if kind == "revoked":
                self._mark_revoked(credential_id, "revoked (unreadable revocation record)")
            raise UnreadableCredential("poison_input", f"{key}: not a JSON record: {exc}") from exc
        if kind == "apikey":
            key_record = _key_record(credential_id, record)
            if key_record is None:
                raise UnreadableCredential("schema_mismatch", f"{key}: not an API key record (digest, tenant, roles)")
            self._keys[credential_id] = key_record
            self._misses.pop(credential_id, None)
        elif kind == "revoked":
            reason = record.get("reason") if isinstance(record, dict) else None
            self._mark_revoked(credential_id, reason if isinstance(reason, str) and reason else "revoked")
            if not isinstance(record, dict):
                raise UnreadableCredential("schema_mismatch", f"{key}: a revocation record must be a JSON object")


class UnreadableCredential(Exception):
    """A credential-store entry that does not parse (`poison_input`) or has the wrong shape (`schema_mismatch`)."""

    def __init__(self, classification: str, error: str) -> None:
        super().__init__(error)
        self.classification = classification


def _key_record(key_id: str, record: object) -> _ApiKey | None:
    """The API key in a stored record, or None if the record does not have a key's shape."""
    if not isinstance(record, dict):
        return None
    digest, tenant, roles = record.get("digest"), record.get("tenant"), record.get("roles")
    name = record.get("name", "")
    if not (isinstance(digest, str) and isinstance(tenant, str) and isinstance(name, str) and isinstance(roles, list)):
        return None
    if not all(isinstance(role, str) for role in roles):
        return None
    return _ApiKey(key_id, digest, tenant, frozenset(roles), name)


# What a write on a bucket whose stream was deleted raises (no stream answers its subject).
_BUCKET_GONE = (nats.js.errors.NoStreamResponseError, nats.js.errors.NotFoundError)


async def _declare_bucket(js: JetStreamContext, replicas: int) -> KeyValue:
    """The credentials bucket, created if it does not exist (idempotent: every replica may call it)."""
    try:
        return await js.key_value(CREDENTIALS_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        pass
    try:
        return await js.create_key_value(
            nats.js.api.KeyValueConfig(bucket=CREDENTIALS_BUCKET, history=1, replicas=replicas)
        )
    except nats.js.errors.BadRequestError:  # another replica created it first, a moment ago
        return await js.key_value(CREDENTIALS_BUCKET)


def _key_id_of(token: str) -> str:
    body = token.removeprefix(API_KEY_PREFIX)
    key_id, _, secret = body.partition("_")
    if not token.startswith(API_KEY_PREFIX) or not key_id or not secret:
        raise Unauthenticated("malformed API key (expected tmk_<id>_<secret>)")
    return key_id


class Authenticator:
    def __init__(self, store: CredentialStore, jwt_settings: JwtSettings | None, roles: RoleCatalog = BUILTIN) -> None:
        self.store = store
        self._jwt = jwt_settings
        self.roles = roles

    async def identify(self, authorization: str = "", api_key: str = "", step_up: str = "") -> Principal:
        """`authenticate`, after reading from KV an API key this replica has not heard of yet;
        `step_up` (a step-up token, checked only where an action wants one) rides along."""
        token = api_key.strip()
        scheme, _, value = authorization.strip().partition(" ")
        if not token and scheme.lower() == "apikey":
            token = value.strip()
        if token:
            await self.store.find_api_key(_key_id_of(token))
        principal = self.authenticate(authorization, api_key)
        return replace(principal, step_up_token=step_up.strip()) if step_up else principal

    def authenticate(self, authorization: str = "", api_key: str = "") -> Principal:
        """The caller behind an ``authorization`` header value or an ``x-api-key`` value (from memory)."""
        scheme, _, value = authorization.strip().partition(" ")
        if api_key:
            return self._api_key(api_key.strip())
        if not scheme:
            raise Unauthenticated("a credential is required (authorization: Bearer <JWT> or ApiKey <key>)")
        if scheme.lower() == "bearer":
            return self._token(value.strip())
        if scheme.lower() == "apikey":
            return self._api_key(value.strip())
        raise Unauthenticated(f"unsupported authorization scheme {scheme!r} (use Bearer or ApiKey)")

    def _api_key(self, token: str) -> Principal:
        key = self.store.api_key(_key_id_of(token))
        if key is None or not hmac.compare_digest(key.digest, _digest(token)):
            raise Unauthenticated("unknown API key")
        self._check_revoked(key.key_id)
        return Principal(key.key_id, key.tenant, self.roles.canonical(key.roles))

    def _token(self, token: str) -> Principal:
        if self._jwt is None:
            raise Unauthenticated("this mesh accepts no bearer tokens (no JWT key configured)")
        try:
            claims = jwt.decode(
                token,
                self._jwt.key,
                algorithms=list(self._jwt.algorithms),
                audience=self._jwt.audience,
                options={"require": ["exp", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"token is not for audience {self._jwt.audience!r}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        tenant, roles = claims.get("tenant"), claims.get("roles")
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated("token has no tenant claim")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated("token's roles claim must be a list of strings")
        credential_id = str(claims.get("jti") or claims.get("sub") or "jwt")
        self._check_revoked(credential_id)
        held = self.roles.canonical(roles)
        if tenant == ANY_TENANT:
            # A token for every tenant holds only roles made for that (admin, auditor, a worker's …):
            # never a wide reader's or submitter's.
            narrow = sorted(name for name in held if not (role := self.roles.role(name)) or not role.for_every_tenant)
            if narrow or not held:
                raise Unauthenticated(
                    f"a token for every tenant ('*') holds only roles for every tenant; {', '.join(narrow) or 'none'} "
                    "is not one (name the token's tenant)"
                )
        subject = claims.get("sub")
        return Principal(
            credential_id, tenant, held, float(claims["exp"]), subject=subject if isinstance(subject, str) else ""
        )

    def _check_revoked(self, credential_id: str) -> None:
        reason = self.store.revoked(credential_id)
        if reason is not None:
            raise Unauthenticated(f"credential {credential_id} was revoked: {reason}")


def mint_token(
    secret: str,
    tenant: str,
    roles: Iterable[str],
    audience: str,
    ttl_s: float,
    token_id: str = "",
    catalog: RoleCatalog = BUILTIN,
) -> str:
    """An HS256 token, for `tidemesh auth token` and tests; its roles' names checked (InvalidArgument
    naming ``roles``), not where they may be held (the gateway refuses that when the token comes)."""
    now = time.time()
    claims = {
        "tenant": tenant,
        "roles": sorted(catalog.check_names(roles)),
        "aud": audience,
        "iat": int(now),
        "exp": now + ttl_s,
        "jti": token_id or secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm="HS256")
