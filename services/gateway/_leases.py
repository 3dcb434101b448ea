"""The credential each open stream runs under, so it can be refreshed in-band or cut off.

A stream opened with a credential holds a lease. The lease ends when its credential expires
without a refresh, or at once when the credential is revoked; `guarded` then ends the stream
with UNAUTHENTICATED and the reason. A refresh (a WebSocket `refresh` frame, the
RefreshStreamCredential RPC for gRPC, POST /v1/streams/{id}/refresh for SSE) swaps in a new
credential of the same tenant without interrupting the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from mesh.errors import NotFound, PermissionDenied, Unauthenticated
from services.gateway._auth import ANY_TENANT, CredentialStore, Principal

T = TypeVar("T")


class StreamLease:
    def __init__(self, stream_id: str, principal: Principal) -> None:
        self.stream_id = stream_id
        self.principal = principal
        self._ended: str | None = None
        self._changed = asyncio.Event()

    def refresh(self, principal: Principal) -> None:
        same_scope = principal.tenant in (self.principal.tenant, ANY_TENANT)
        if not same_scope or not principal.roles >= (self.principal.roles - {"admin"}):  # canonical names
            raise PermissionDenied("a refresh must keep the stream's tenant and roles")
        self.principal = principal
        self._changed.set()

    def end(self, reason: str) -> None:
        self._ended = reason
        self._changed.set()

    async def ended(self) -> str:
        """Wait until the lease ends; the reason."""
        while True:
            if self._ended is not None:
                return self._ended
            expires_at = self.principal.expires_at
            self._changed.clear()
            timeout = None if expires_at is None else max(0.0, expires_at - time.time())
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                if self.principal.expires_at == expires_at:
                    return "credential expired; refresh it in-band before it does"


class Leases:
    """Open streams by id, so that a refresh or a revocation reaches them."""

    def __init__(self, store: CredentialStore) -> None:
        self._open: dict[str, StreamLease] = {}
        store.on_revoke(self._revoked)

    @contextlib.contextmanager
    def hold(self, principal: Principal) -> Iterator[StreamLease]:
        lease = StreamLease(secrets.token_hex(8), principal)
        self._open[lease.stream_id] = lease
        try:
            yield lease
        finally:
            self._open.pop(lease.stream_id, None)

    def refresh(self, stream_id: str, principal: Principal) -> StreamLease:
        lease = self._open.get(stream_id)
        if lease is None:
            raise NotFound(f"no open stream {stream_id!r} on this gateway")
        lease.refresh(principal)
        return lease

    def _revoked(self, credential_id: str, reason: str) -> None:
        for lease in list(self._open.values()):
            if lease.principal.credential_id == credential_id:
                lease.end(f"credential {credential_id} was revoked: {reason}")


async def guarded(stream: AsyncIterator[T], lease: StreamLease | None) -> AsyncIterator[T]:
    """The items of `stream` while `lease` lasts; then Unauthenticated with the reason.

    However this ends (the lease, the stream, or the caller cancelled or closed), the pending
    read of `stream` is cancelled and awaited first: left running, it would keep the stream's
    resources, and the caller's ``stream.aclose()`` would fail with "asynchronous generator
    is already running".
    """
    if lease is None:
        async for item in stream:
            yield item
        return
    ended = asyncio.create_task(lease.ended())
    following: asyncio.Future[T] | None = None
    try:
        while True:
            following = asyncio.ensure_future(anext(stream))
            await asyncio.wait({following, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                raise Unauthenticated(ended.result())
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            following = None
            yield item
    finally:
        await _stop(following, ended)


async def _stop(*futures: asyncio.Future[Any] | None) -> None:
    """Cancel `futures` and wait until they have finished, without raising what they raised."""
    pending = [future for future in futures if future is not None]
    for future in pending:
        future.cancel()
    if pending:
        await asyncio.wait(pending)
    for future in pending:
        if not future.cancelled():
            future.exception()  # retrieved, so asyncio does not log it as never retrieved
