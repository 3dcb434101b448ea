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
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mesh.errors import Unavailable
from mesh.fabric._work import WorkQueue
from mesh.v1 import task_pb2, work_pb2

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


class KeySequencer:
    def __init__(self, js: JetStreamContext, keys: KeyValue, work: WorkQueue) -> None:
        self._js = js
        self._work = work
        self._keys = keys

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
                await self._work.put(
                    work_subject,
                    item.SerializeToString(),
                    headers={"Nats-Msg-Id": f"{spec.task_id}:step:0", "traceparent": item.traceparent},
                )
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
            item = work_pb2.WorkItem.FromString(raw.data or b"")
            if not await self._write(token, _KeyState(raw.seq or 0, True, item.spec.task_id), revision):
                continue
            await self._work.put(
                (raw.headers or {})[_WORK_SUBJECT],
                item.SerializeToString(),
                headers={"Nats-Msg-Id": f"{item.spec.task_id}:step:0", "traceparent": item.traceparent},
            )
            return

    async def _read(self, token: str) -> tuple[_KeyState, int]:
        try:
            entry = await self._keys.get(token)
        except nats.js.errors.KeyNotFoundError:
            return _KeyState(), 0
        return _KeyState(**json.loads(entry.value or b"{}")), entry.revision or 0

    async def _write(self, token: str, state: _KeyState, revision: int) -> bool:
        value = json.dumps(state.__dict__).encode()
        try:
            if revision:
                await self._keys.update(token, value, last=revision)
            else:
                await self._keys.create(token, value)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError):
            return False
        return True
