"""Which tasks each tenant has, for listing: one empty message per task on
``tm.task.<tenant>.<task_id>`` (stream TM_TASKS, kept as long as the events).

A listing index, not the record of truth (the event log is). Admission writes the entry
first and waits for its ack, so every admitted task is listed even if the broker crashes
right after; an entry whose task never got its first event (a crash in between) is skipped
by the listing and by the reconciler. Task ids the mesh assigns start with the admission
time, so newest-first is reverse id order. An entry whose subject names no well-formed task id
(stored by something other than admission) is left out of the listing; the reconciler
quarantines it.
"""

from __future__ import annotations

import contextlib

import nats.js.errors
from nats.js import JetStreamContext

from mesh.fabric._commit import GroupCommit
from mesh.fabric._subjects import TOKEN_RE

TASKS_STREAM = "TM_TASKS"
TASKS_PREFIX = "tm.task"


async def delete_subject(js: JetStreamContext, stream: str, subject: str) -> int:
    """Delete every message of `subject` in `stream`, newest first, by sequence; how many."""
    deleted = 0
    while True:
        try:
            message = await js.get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            return deleted
        assert message.seq is not None
        with contextlib.suppress(nats.js.errors.NotFoundError):  # gone meanwhile: look again
            await js.delete_msg(stream, message.seq)
            deleted += 1


class TaskIndex:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._commit = GroupCommit(js, TASKS_STREAM)

    async def add(self, tenant: str, task_id: str, *, urgent: bool = False) -> None:
        """Store the entry and wait for the broker's ack; raises nats errors as they come.
        `urgent`: an interactive task's, never held for a group commit."""
        headers = {"Nats-Msg-Id": f"{task_id}:index"}
        await self._commit.publish(f"{TASKS_PREFIX}.{tenant}.{task_id}", b"", headers, urgent=urgent)

    async def remove(self, tenant: str, task_id: str) -> None:
        """Take the entry back (one message per subject): a message delete, not a subject purge —
        NATS puts a purge on the same API subject as a whole-stream purge, which no service may send."""
        await delete_subject(self._js, TASKS_STREAM, f"{TASKS_PREFIX}.{tenant}.{task_id}")

    async def ids(self, tenant: str, after: str = "") -> list[str]:
        """Every task id of `tenant`, newest first, older than `after` (a page token) when given."""
        info = await self._js.stream_info(TASKS_STREAM, subjects_filter=f"{TASKS_PREFIX}.{tenant}.*")
        tails = (subject.rsplit(".", 1)[1] for subject in info.state.subjects or {})
        ids = sorted((tail for tail in tails if TOKEN_RE.match(tail)), reverse=True)
        return [task_id for task_id in ids if task_id < after] if after else ids

    async def page(self, tenant: str, limit: int, after: str = "") -> tuple[list[str], str]:
        """Up to `limit` task ids of `tenant`, newest first, older than `after`; and the next token."""
        ids = await self.ids(tenant, after)
        page = ids[:limit]
        return page, (page[-1] if len(ids) > limit else "")
