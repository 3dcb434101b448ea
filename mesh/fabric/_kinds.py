"""The mesh-wide store of user kinds: a KV bucket every service follows into its `KindRegistry`.

`KindService.RegisterKind` writes a declaration once (KV `create`, so two gateways registering
the same name at once cannot both win); the scheduler, the gateways and the worker-session
hosts read it. A name this process has not heard of yet is read from KV before it is refused,
so a kind works on every replica as soon as its registration returned.
"""

from __future__ import annotations

import asyncio
import contextlib

import google.protobuf.message
import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from mesh.errors import Conflict, Unavailable
from mesh.tasks._registry import KINDS, KindRegistry, TaskKind
from mesh.telemetry import get_logger
from mesh.v1 import kind_pb2

log = get_logger(__name__)

KINDS_BUCKET = "tm_kinds"
# Attached worker sessions, as their gateways record them (entries expire unless refreshed).
SESSIONS_BUCKET = "tm_sessions"
SESSION_ENTRY_TTL_S = 15.0


class KindStore:
    def __init__(self, kv: KeyValue, registry: KindRegistry = KINDS) -> None:
        self._kv = kv
        self._registry = registry
        self._watch: asyncio.Task[None] | None = None

    async def register(self, kind: TaskKind) -> bool:
        """Store `kind` mesh-wide; False if the same declaration is there, Conflict if another is."""
        if kind.name in self._registry and self._registry[kind.name].builtin:
            raise Conflict(f"kind {kind.name!r} is a built-in kind")
        data = kind.declaration().SerializeToString(deterministic=True)
        try:
            await self._kv.create(kind.name, data)
        except nats.js.errors.KeyWrongLastSequenceError:
            known = await self.ensure(kind.name)
            if known != kind:
                raise Conflict(f"kind {kind.name!r} is registered with another declaration") from None
            return False
        except nats.errors.Error as exc:
            raise Unavailable(f"kind store did not answer: {exc}") from exc
        self._registry.register(kind)
        return True

    async def ensure(self, name: str) -> TaskKind | None:
        """The kind `name`, from this process's registry or else from the store (None: no such kind)."""
        known = self._registry.get(name)
        if known is not None:
            return known
        try:
            entry = await self._kv.get(name)
        except nats.js.errors.KeyNotFoundError:
            return None
        except nats.errors.Error as exc:
            raise Unavailable(f"kind store did not answer: {exc}") from exc
        return self._take(name, entry.value)

    async def load(self) -> list[TaskKind]:
        """Every stored user kind, taken into the registry."""
        try:
            names = await self._kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        except nats.errors.Error as exc:
            raise Unavailable(f"kind store did not answer: {exc}") from exc
        kinds = [await self.ensure(name) for name in names]
        return [kind for kind in kinds if kind is not None]

    def _take(self, name: str, value: bytes | None) -> TaskKind | None:
        try:
            kind = TaskKind.from_declaration(kind_pb2.KindDeclaration.FromString(value or b""))
        except (google.protobuf.message.DecodeError, ValueError) as exc:
            log.warning("unreadable kind declaration in the store", extra={"kind": name[:64], "error": str(exc)})
            return None
        with contextlib.suppress(Conflict):  # a built-in name in the store is never taken
            self._registry.register(kind)
        return self._registry.get(name)

    async def start(self) -> None:
        """Load what is stored and follow new registrations."""
        await self.load()
        self._watch = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            watcher = None
            try:
                watcher = await self._kv.watchall(ignore_deletes=True)
                async for entry in watcher:
                    if entry is not None and entry.value:
                        self._take(entry.key, entry.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker restart: watch again (ensure() reads through meanwhile)
                log.warning("kind watch failed: %r", exc)
                await asyncio.sleep(1.0)
            finally:
                # Unsubscribed, not only abandoned: a watch left subscribed keeps taking messages
                # nobody reads, and the connection's drain at exit waits on them (past the grace).
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
