"""Per-key ordering: tasks with the same (tenant, ordering key) run one at a time, in order.

Such a task's first work item is parked on the key's own subject of the
TM_ORDERED stream instead of the work queue. A KV entry per key holds a cursor
(the stream sequence of the item released last) and whether that item is still
running. `advance` releases the next parked item when the key is free;
`release` frees the key when its running task has SUCCEEDED or was CANCELLED
and advances it. Both are compare-and-set loops on the KV revision, so
admission and workers racing on one key release each item exactly once.

A task that FAILED keeps its key: later tasks of that key do not overtake it.
Different keys are independent, so they run in parallel.

Bad messages do not jam a key: a parked message that is no work item is quarantined and
the cursor moves past it; a key entry that does not parse is quarantined and rebuilt from
the key's parked items and their tasks' last events (`_rebuild`), then written back over it
(compare-and-set on the bad entry's revision), so a key is rebuilt once, not at every step.
A task's last event is read through `EventLog`, which sets junk events aside and reads the
good one before them: an unreadable event never counts as a task that let its key go.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import google.protobuf.message
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.kv import KeyValue

from mesh.errors import Unavailable
from mesh.fabric._events import EventLog
from mesh.fabric._quarantine import Quarantine, entry_subject
from mesh.fabric._work import WorkQueue
from mesh.telemetry import get_logger
from mesh.v1 import task_pb2, work_pb2

log = get_logger(__name__)

ORDERED_STREAM = "TM_ORDERED"
ORDERED_PREFIX = "tm.ord"
ORDER_KEYS_BUCKET = "tm_order_keys"
_RACES = 50
_WORK_SUBJECT = "Tm-Work-Subject"


def key_token(tenant: str, ordering_key: str) -> str:
    """`<tenant>.<digest>`: safe as a subject tail and as a KV key, whatever the key's characters."""
    return f"{tenant}.{hashlib.sha256(ordering_key.encode()).hexdigest()[:32]}"


@dataclass(frozen=True)
class _KeyState:
    cursor: int = 0
    busy: bool = False
    task_id: str = ""

    @classmethod
    def parse(cls, value: bytes | None) -> _KeyState:
        """The state in a stored entry; ValueError if it is not one."""
        doc = json.loads(value or b"{}")
        if not isinstance(doc, dict) or set(doc) - {"cursor", "busy", "task_id"}:
            raise ValueError("not a key state object (cursor, busy, task_id)")
        state = cls(**doc)
        if not (isinstance(state.cursor, int) and isinstance(state.busy, bool) and isinstance(state.task_id, str)):
            raise ValueError("cursor, busy and task_id must be an integer, a boolean and a string")
        return state


class _BadParked(Exception):
    def __init__(self, classification: str, error: str) -> None:
        super().__init__(error)
        self.classification = classification


def _parked_item(raw: RawStreamMsg) -> tuple[work_pb2.WorkItem, str]:
    """The parked work item in a TM_ORDERED message and the work subject it is bound for; else _BadParked."""
    try:
        item = work_pb2.WorkItem.FromString(raw.data or b"")
    except google.protobuf.message.DecodeError as exc:
        raise _BadParked("poison_input", f"not a WorkItem: {exc}") from exc
    subject = (raw.headers or {}).get(_WORK_SUBJECT, "")
    if not item.spec.task_id or not subject:
        raise _BadParked("schema_mismatch", f"a parked item needs spec.task_id and the {_WORK_SUBJECT} header")
    return item, subject


class KeySequencer:
    def __init__(self, js: JetStreamContext, keys: KeyValue, work: WorkQueue, events: EventLog) -> None:
        self._js = js
        self._work = work
        self._keys = keys
        self._quarantine = Quarantine(js)
        self._events = events

    async def park(self, item: work_pb2.WorkItem, work_subject: str) -> None:
        """Queue a task's first step (bound for `work_subject`) behind the earlier tasks of its key."""
        spec = item.spec
        token = key_token(spec.tenant, spec.ordering_key)
        try:
            await self._js.publish(
                f"{ORDERED_PREFIX}.{token}",
                item.SerializeToString(),
                headers={"Nats-Msg-Id": f"{spec.task_id}:ordered", _WORK_SUBJECT: work_subject},
            )
        except nats.errors.Error as exc:  # any broker failure: retryable for the caller
            raise Unavailable(f"ordered queue did not store the task: {exc}") from exc
        await self.advance(token)

    async def release(self, spec: task_pb2.TaskSpec, state: int) -> None:
        """Free the key held by `spec` if it ended in a state that lets the next task go."""
        if not spec.ordering_key or state not in (task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_CANCELLED):
            return
        token = key_token(spec.tenant, spec.ordering_key)
        for _ in range(_RACES):
            current, revision = await self._read(token)
            if not current.busy or current.task_id != spec.task_id:
                break  # not holding the key (never released, or released already)
            if await self._write(token, _KeyState(current.cursor, False, ""), revision):
                break
        await self.advance(token)

    async def take_over(self, holder_task_id: str, item: work_pb2.WorkItem, work_subject: str) -> bool:
        """Give the key held by `holder_task_id` (a dead-lettered task) to its replay and start the
        replay at once, so it keeps the original's place in the key's order."""
        spec = item.spec
        token = key_token(spec.tenant, spec.ordering_key)
        for _ in range(_RACES):
            current, revision = await self._read(token)
            if not (current.busy and current.task_id == holder_task_id):
                return False
            if await self._write(token, _KeyState(current.cursor, True, spec.task_id), revision):
                await self._work.put_item(item, work_subject)
                return True
        return False

    async def advance(self, token: str) -> None:
        """Release the next parked task of the key if the key is free."""
        subject = f"{ORDERED_PREFIX}.{token}"
        for _ in range(_RACES):
            current, revision = await self._read(token)
            if current.busy:
                return
            try:
                raw = await self._js.get_msg(ORDERED_STREAM, seq=current.cursor + 1, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                return
            try:
                item, work_subject = _parked_item(raw)
            except _BadParked as bad:
                # Set aside, then step the cursor past it: the key's next task is not held up.
                sequence = raw.seq or 0
                if not await self._quarantine.set_aside(
                    "ordered", subject, sequence, raw.data, bad.classification, str(bad)
                ):
                    return  # no record holds it yet: the next advance tries again
                await self._write(token, _KeyState(sequence, False, ""), revision)
                continue
            if not await self._write(token, _KeyState(raw.seq or 0, True, item.spec.task_id), revision):
                continue
            await self._work.put_item(item, work_subject)
            return

    async def _read(self, token: str) -> tuple[_KeyState, int]:
        try:
            entry = await self._keys.get(token)
        except nats.js.errors.KeyNotFoundError:
            return _KeyState(), 0
        revision = entry.revision or 0
        try:
            return _KeyState.parse(entry.value), revision
        except (ValueError, TypeError) as exc:
            subject = entry_subject(ORDER_KEYS_BUCKET, token)
            error = f"key state: {exc}"
            if not await self._quarantine.set_aside(
                "order_keys", subject, revision, entry.value, "poison_input", error
            ):
                raise Unavailable(
                    f"ordering key {token}: its state is unreadable and could not be quarantined"
                ) from exc
        state = await self._rebuild(token)
        # Written back at once, so the next step reads it instead of scanning the key again. If
        # another writer replaced the entry meanwhile, revision 0 makes the caller's write fail
        # (the entry exists) and its compare-and-set loop reads theirs.
        return state, await self._write(token, state, revision)

    async def _rebuild(self, token: str) -> _KeyState:
        """The key's state as its parked items' tasks show it: the cursor after the last task that
        let the key go, held by a task that runs, retries or failed; stops at one still QUEUED."""
        subject = f"{ORDERED_PREFIX}.{token}"
        state, sequence = _KeyState(), 0
        while True:
            try:
                raw = await self._js.get_msg(ORDERED_STREAM, seq=sequence + 1, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            sequence = raw.seq or sequence + 1
            try:
                item, _ = _parked_item(raw)
            except _BadParked:
                state = _KeyState(sequence, False, "")  # no task: `advance` would step past it too
                continue
            stored = await self._events.last(item.spec.task_id)
            last = stored.event.state if stored is not None else None
            if last == task_pb2.TASK_STATE_QUEUED:
                break  # not released yet (a copy already released is deduplicated or fenced)
            # None: the task has no events left (expired with the stream's retention).
            if last in (None, task_pb2.TASK_STATE_SUCCEEDED, task_pb2.TASK_STATE_CANCELLED):
                state = _KeyState(sequence, False, "")
            else:
                state = _KeyState(sequence, True, item.spec.task_id)
        log.warning("ordering key state rebuilt", extra={"key": token, "cursor": state.cursor, "busy": state.busy})
        return state

    async def _write(self, token: str, state: _KeyState, revision: int) -> int:
        """Store `state` over `revision` (0: create); its new revision, or 0 if the entry moved on."""
        value = json.dumps(state.__dict__).encode()
        try:
            if revision:
                return await self._keys.update(token, value, last=revision)
            return await self._keys.create(token, value)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError):
            return 0
