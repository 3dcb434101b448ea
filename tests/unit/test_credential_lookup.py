"""A key this gateway has not heard of is read from KV once, not once per request; misses are
remembered briefly; a KV that cannot answer is Unavailable, not "unknown API key"."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats.errors
import nats.js.errors
import pytest

from mesh.errors import Unauthenticated, Unavailable
from services.gateway._auth import Authenticator, CredentialStore, _digest
from services.gateway._guard import Guard
from services.gateway._http import _error_body
from services.gateway._userjson import JsonCodec
from services.gateway._websocket import WebSocketSession


class FakeKV:
    """The two KV calls a lookup makes, counted; `broken` makes every read time out."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.reads: list[str] = []
        self.broken = False

    async def get(self, key: str) -> Any:
        self.reads.append(key)
        await asyncio.sleep(0)  # let concurrent lookups pile up behind the first
        if self.broken:
            raise nats.errors.TimeoutError
        if key not in self.values:
            raise nats.js.errors.KeyNotFoundError
        return type("Entry", (), {"value": self.values[key], "revision": 1})()


def _store(kv: FakeKV) -> CredentialStore:
    return CredentialStore(js=None, kv=kv)  # type: ignore[arg-type]


async def test_a_key_created_elsewhere_is_read_from_kv_and_then_known() -> None:
    """A key in KV but not yet in memory authenticates; many concurrent first calls cost one read."""
    kv = FakeKV()
    token = "tmk_abc123_secret"
    kv.values["apikey.abc123"] = json.dumps({"digest": _digest(token), "tenant": "acme", "roles": ["read"]}).encode()
    authenticator = Authenticator(_store(kv), None)
    principals = await asyncio.gather(*(authenticator.identify(api_key=token) for _ in range(50)))
    assert {p.tenant for p in principals} == {"acme"}
    assert kv.reads == ["apikey.abc123", "revoked.abc123"]
    await authenticator.identify(f"ApiKey {token}")
    assert len(kv.reads) == 2


async def test_unknown_keys_are_refused_and_remembered_for_a_while() -> None:
    """An unknown key is refused after one read; asking again within the miss TTL reads nothing."""
    kv = FakeKV()
    authenticator = Authenticator(_store(kv), None)
    for _ in range(20):
        with pytest.raises(Unauthenticated, match="unknown API key"):
            await authenticator.identify(api_key="tmk_nope00_secret")
    assert kv.reads == ["apikey.nope00"]


async def test_a_revoked_key_read_from_kv_is_refused() -> None:
    """A lookup reads the key's revocation too: a key created and revoked elsewhere stays refused."""
    kv = FakeKV()
    token = "tmk_gone11_secret"
    kv.values["apikey.gone11"] = json.dumps({"digest": _digest(token), "tenant": "acme", "roles": ["read"]}).encode()
    kv.values["revoked.gone11"] = json.dumps({"reason": "leaked"}).encode()
    with pytest.raises(Unauthenticated, match="revoked: leaked"):
        await Authenticator(_store(kv), None).identify(api_key=token)


async def test_a_kv_that_cannot_answer_is_unavailable() -> None:
    """When KV times out the caller hears UNAVAILABLE (try again), not that its key is unknown."""
    kv = FakeKV()
    kv.broken = True
    with pytest.raises(Unavailable, match="could not be read"):
        await Authenticator(_store(kv), None).identify(api_key="tmk_abc123_secret")


async def test_a_websocket_refresh_accepts_a_key_only_kv_knows() -> None:
    """A WebSocket `refresh` frame with a key minted on another replica (in KV, not yet in memory)
    swaps the connection's credential instead of answering "unknown API key"."""
    kv = FakeKV()
    old, new = "tmk_old111_secret", "tmk_new222_secret"
    for token, key_id in ((old, "old111"), (new, "new222")):
        record = {"digest": _digest(token), "tenant": "acme", "roles": ["read"]}
        kv.values[f"apikey.{key_id}"] = json.dumps(record).encode()
    guard = Guard(None, Authenticator(_store(kv), None))  # type: ignore[arg-type]
    principal = await guard.authenticate(api_key=old)
    session = WebSocketSession(None, None, None, None, None, JsonCodec(), _error_body, guard, principal)  # type: ignore[arg-type]
    with guard.lease(principal) as lease:
        session._lease = lease
        await session._handle(json.dumps({"op": "refresh", "id": "r1", "api_key": new}))
        assert lease is not None and lease.principal.credential_id == "new222"
    assert session._outbox.get_nowait() == {"type": "refreshed", "id": "r1", "expires_at": None}
