"""Which tasks each tenant has, for listing: one empty message per task on
``tm.task.<tenant>.<task_id>`` (stream TM_TASKS, kept as long as the events).

A listing index, not the record of truth (the event log is): it is written without
waiting for the broker's ack, so admission pays no extra round trip. Task ids the mesh
assigns start with the admission time, so newest-first is reverse id order.
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from mesh.telemetry import get_logger

log = get_logger(__name__)

TASKS_STREAM = "TM_TASKS"
TASKS_PREFIX = "tm.task"


class TaskIndex:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def add(self, tenant: str, task_id: str) -> None:
        ack = await self._js.publish_async(
            f"{TASKS_PREFIX}.{tenant}.{task_id}", b"", headers={"Nats-Msg-Id": f"{task_id}:index"}
        )
        ack.add_done_callback(_report)

    async def page(self, tenant: str, limit: int, after: str = "") -> tuple[list[str], str]:
        """Up to `limit` task ids of `tenant`, newest first, older than `after`; and the next token."""
        info = await self._js.stream_info(TASKS_STREAM, subjects_filter=f"{TASKS_PREFIX}.{tenant}.*")
        ids = sorted((subject.rsplit(".", 1)[1] for subject in info.state.subjects or {}), reverse=True)
        if after:
            ids = [task_id for task_id in ids if task_id < after]
        page = ids[:limit]
        return page, (page[-1] if len(ids) > limit else "")


def _report(ack: asyncio.Future) -> None:  # type: ignore[type-arg]
    if not ack.cancelled() and ack.exception() is not None:
        log.warning("task index entry not stored: %r", ack.exception())
