"""Who is calling, and what they may do: JWT bearer tokens and API keys, checked at the gateway.

Credentials (every endpoint but health and the OpenAPI document requires one when auth is on):

- **JWT** — ``authorization: Bearer <token>``. Checked: signature (HS256 with a shared secret, or
  RS256/ES256 with a public key), ``exp`` (required), ``aud`` (must name this mesh). Claims:
  ``tenant`` (a tenant id, or ``*`` for an admin), ``roles`` (``submit``, ``read``, ``admin``) and
  ``jti`` (its id, for revocation).
- **API key** — ``authorization: ApiKey tmk_<id>_<secret>`` or ``x-api-key: tmk_<id>_<secret>``.
  Looked up by id in the KV bucket ``tm_credentials`` and checked against its SHA-256 hash; it
  carries a tenant and roles and lasts until revoked.

Revocation: ``revoked.<credential id>`` in the same bucket. Every gateway watches the bucket, so a
revoked credential is refused — and the streams it opened end — as soon as the watch delivers the
change (milliseconds on one cluster).

Browsers cannot set headers on EventSource or WebSocket: there the credential may come as the
``access_token`` query parameter. Secrets never reach logs — only credential ids do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import jwt
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mesh.errors import InvalidArgument, PermissionDenied, Unauthenticated
from mesh.telemetry import get_logger

log = get_logger(__name__)

CREDENTIALS_BUCKET = "tm_credentials"
ROLES = ("submit", "read", "admin")
ANY_TENANT = "*"
API_KEY_PREFIX = "tmk_"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    credential_id: str
    tenant: str
    roles: frozenset[str]
    expires_at: float | None = None  # unix seconds; None: until revoked

    def may(self, role: str, tenant: str | None = None) -> bool:
        if "admin" in self.roles:
            return True
        return role in self.roles and (tenant is None or tenant == self.tenant)


def authorize(principal: Principal | None, role: str, tenant: str | None = None) -> None:
    """Raise PermissionDenied unless `principal` may act as `role` on `tenant` (None: auth is off)."""
    if principal is None:
        return
    if role not in principal.roles and "admin" not in principal.roles:
        raise PermissionDenied(f"credential {principal.credential_id} lacks the {role!r} role")
    if tenant is not None and not principal.may(role, tenant):
        raise PermissionDenied(f"credential {principal.credential_id} may not act for tenant {tenant!r}")


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


def check_roles(roles: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(roles)
    unknown = chosen - set(ROLES)
    if unknown or not chosen:
        raise InvalidArgument("roles", f"one or more of {', '.join(ROLES)}; got {sorted(chosen)}")
    return chosen


class CredentialStore:
    """API keys and revocations in KV, mirrored in memory by a watch."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._keys: dict[str, _ApiKey] = {}
        self._revoked: dict[str, str] = {}  # credential id → reason
        self._listeners: list[Callable[[str, str], None]] = []
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, js: JetStreamContext, replicas: int = 1) -> CredentialStore:
        import nats.js.api as api

        try:
            kv = await js.key_value(CREDENTIALS_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(api.KeyValueConfig(bucket=CREDENTIALS_BUCKET, history=1, replicas=replicas))
        return cls(kv)

    async def start(self) -> None:
        watcher = await self._kv.watchall()
        ready = asyncio.Event()
        self._watch = asyncio.create_task(self._follow(watcher, ready))
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
        key_id, token = new_api_key()
        record = {"digest": _digest(token), "tenant": tenant, "roles": sorted(check_roles(roles)), "name": name}
        await self._kv.create(f"apikey.{key_id}", json.dumps(record).encode())
        self._keys[key_id] = _ApiKey(key_id, record["digest"], tenant, frozenset(record["roles"]), name)
        return key_id, token

    async def revoke(self, credential_id: str, reason: str) -> None:
        record = {"reason": reason or "revoked", "at": time.time()}
        await self._kv.put(f"revoked.{credential_id}", json.dumps(record).encode())
        self._mark_revoked(credential_id, record["reason"])

    def api_key(self, key_id: str) -> _ApiKey | None:
        return self._keys.get(key_id)

    def revoked(self, credential_id: str) -> str | None:
        return self._revoked.get(credential_id)

    def _mark_revoked(self, credential_id: str, reason: str) -> None:
        if credential_id in self._revoked:
            return
        self._revoked[credential_id] = reason
        log.warning("credential revoked", extra={"credential_id": credential_id})
        for listener in self._listeners:
            listener(credential_id, reason)

    async def _follow(self, watcher, ready: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                async for entry in watcher:
                    if entry is None:  # the initial values are in
                        ready.set()
                        continue
                    self._apply(entry.key, entry.value)
                log.warning("credential watch ended")
            except Exception as exc:
                log.warning("credential watch failed: %r", exc)
            # Re-open the watch, keeping what we know; an ended watcher must not be spun on.
            ready.set()
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                watcher = await self._kv.watchall()

    def _apply(self, key: str, value: bytes | None) -> None:
        kind, _, credential_id = key.partition(".")
        if not value:
            return
        record = json.loads(value)
        if kind == "apikey":
            self._keys[credential_id] = _ApiKey(
                credential_id, record["digest"], record["tenant"], frozenset(record["roles"]), record.get("name", "")
            )
        elif kind == "revoked":
            self._mark_revoked(credential_id, record.get("reason", "revoked"))


def _key_id_of(token: str) -> str:
    body = token.removeprefix(API_KEY_PREFIX)
    key_id, _, secret = body.partition("_")
    if not token.startswith(API_KEY_PREFIX) or not key_id or not secret:
        raise Unauthenticated("malformed API key (expected tmk_<id>_<secret>)")
    return key_id


class Authenticator:
    def __init__(self, store: CredentialStore, jwt_settings: JwtSettings | None) -> None:
        self.store = store
        self._jwt = jwt_settings

    def authenticate(self, authorization: str = "", api_key: str = "") -> Principal:
        """The caller behind an ``authorization`` header value or an ``x-api-key`` value."""
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
        return Principal(key.key_id, key.tenant, key.roles)

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
        if tenant == ANY_TENANT and "admin" not in roles:
            raise Unauthenticated("only an admin token may name every tenant")
        return Principal(credential_id, tenant, frozenset(roles), float(claims["exp"]))

    def _check_revoked(self, credential_id: str) -> None:
        reason = self.store.revoked(credential_id)
        if reason is not None:
            raise Unauthenticated(f"credential {credential_id} was revoked: {reason}")


def mint_token(secret: str, tenant: str, roles: Iterable[str], audience: str, ttl_s: float, token_id: str = "") -> str:
    """An HS256 token, for `tidemesh auth token` and tests."""
    now = time.time()
    claims = {
        "tenant": tenant,
        "roles": sorted(check_roles(roles)),
        "aud": audience,
        "iat": int(now),
        "exp": now + ttl_s,
        "jti": token_id or secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm="HS256")
