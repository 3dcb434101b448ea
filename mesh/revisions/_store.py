"""Configuration revisions, kept in NATS (KV bucket ``tm_config``).

Every manifest the mesh has run is a numbered revision: the one `tidemesh up` started from, each
`tidemesh config apply`, each rollback. A revision records its manifest (secrets are references
only, so it holds none), its digest, who asked for it and how it ended. ``current`` names the
revision the mesh runs; it moves only when an apply has passed its health gate, by compare-and-set,
so two applies can never both win. The supervisor writes (it is the one that rolls changes out);
the gateway reads, for ``tidemesh config history``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import nats.errors
import nats.js.errors
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from mesh.errors import Conflict, Unavailable
from mesh.fabric import CONFIG_BUCKET

State = Literal["applying", "applied", "rolled-back", "failed", "superseded"]
CURRENT_KEY = "current"
MAX_REVISIONS = 1000  # kept in the bucket; older ones age out (the audit keeps their digests)


def digest_of(document: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of a manifest document in canonical JSON: what plans and revisions compare."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Revision:
    number: int
    digest: str
    manifest: dict[str, Any]
    state: State
    source: str  # up, apply, rollback
    author: str = ""  # the credential that asked (the supervisor itself for `up`)
    created: float = field(default_factory=time.time)
    finished: float = 0.0
    parent: int = 0  # the revision it replaced
    reason: str = ""  # why it ended as it did (the gate's finding, a refusal)
    steps: tuple[str, ...] = ()  # what applying it did, one line each

    def to_json(self, with_manifest: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = list(self.steps)
        if not with_manifest:
            del data["manifest"]
        return data

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Revision:
        return Revision(**{**data, "steps": tuple(data.get("steps", ()))})


def _key(number: int) -> str:
    return f"rev.{number:08d}"


class RevisionStore:
    """The revisions bucket: `open` declares it (the supervisor) or finds it (readers)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, replicas: int = 1, create: bool = True) -> RevisionStore:
        try:
            return cls(await js.key_value(CONFIG_BUCKET))
        except nats.js.errors.BucketNotFoundError:
            if not create:
                raise Unavailable(
                    "no configuration revisions are kept yet (the mesh was not started by `tidemesh up`)"
                ) from None
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the revisions bucket cannot be read: {exc}") from exc
        config = api.KeyValueConfig(bucket=CONFIG_BUCKET, history=1, replicas=replicas)
        return cls(await js.create_key_value(config))

    async def _read(self, key: str) -> tuple[dict[str, Any], int] | None:
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the revisions bucket cannot be read: {exc}") from exc
        if entry.value is None:
            return None
        return json.loads(entry.value), entry.revision or 0

    async def get(self, number: int) -> Revision | None:
        found = await self._read(_key(number))
        return Revision.from_json(found[0]) if found else None

    async def current(self) -> Revision | None:
        found = await self._read(CURRENT_KEY)
        return await self.get(int(found[0]["revision"])) if found else None

    async def list(self, limit: int = 50) -> list[Revision]:
        """The newest `limit` revisions, newest first."""
        try:
            keys = [k for k in await self._kv.keys() if k.startswith("rev.")]
        except nats.js.errors.NoKeysError:
            return []
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the revisions bucket cannot be read: {exc}") from exc
        found = []
        for key in sorted(keys, reverse=True)[:limit]:
            entry = await self._read(key)
            if entry:
                found.append(Revision.from_json(entry[0]))
        return found

    async def begin(
        self, manifest: dict[str, Any], source: str, author: str = "", parent: int = 0, state: State = "applying"
    ) -> Revision:
        """A new revision numbered after the newest (created, never overwritten: a race loses)."""
        newest = await self.list(limit=1)
        number = (newest[0].number if newest else 0) + 1
        revision = Revision(number, digest_of(manifest), manifest, state, source, author, parent=parent)
        try:
            await self._kv.create(_key(number), json.dumps(revision.to_json()).encode())
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise Conflict(f"revision {number} was taken by another apply; plan again") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the revisions bucket cannot be written: {exc}") from exc
        if number > MAX_REVISIONS:
            await self._kv.purge(_key(number - MAX_REVISIONS))
        return revision

    async def finish(self, revision: Revision, state: State, reason: str = "", steps: tuple[str, ...] = ()) -> Revision:
        ended = replace(revision, state=state, reason=reason, steps=steps or revision.steps, finished=time.time())
        await self._kv.put(_key(revision.number), json.dumps(ended.to_json()).encode())
        return ended

    async def make_current(self, revision: Revision) -> None:
        """`revision` is what the mesh runs now (the previous current one: superseded)."""
        found = await self._read(CURRENT_KEY)
        value = json.dumps({"revision": revision.number, "digest": revision.digest}).encode()
        try:
            if found is None:
                await self._kv.create(CURRENT_KEY, value)
            else:
                await self._kv.update(CURRENT_KEY, value, last=found[1])
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise Conflict("the current revision moved during this apply") from exc
        if found is not None and int(found[0]["revision"]) != revision.number:
            previous = await self.get(int(found[0]["revision"]))
            if previous is not None and previous.state == "applied":
                await self.finish(previous, "superseded", f"by revision {revision.number}")
