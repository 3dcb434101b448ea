"""Worker registry: registration, heartbeats, dead-worker detection."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mesh.v1 import status_pb2


@dataclass
class _Entry:
    status: status_pb2.WorkerStatus
    last_seen: float
    running: list[str] = field(default_factory=list)
    ack_subjects: list[str] = field(default_factory=list)
    reaped: bool = False


class WorkerRegistry:
    """Workers that miss heartbeats for `dead_after_s` are reported DEAD.

    A dead worker's in-flight items are handed back at once: `reap` returns their
    ack subjects, and the scheduler naks them so JetStream redelivers now rather than
    when the ack-wait lapses. The event chain's fencing makes a wrongly-presumed-dead
    worker (paused, partitioned) harmless: its next write is refused.
    """

    def __init__(self, heartbeat_interval_s: float = 2.0, dead_after_s: float = 6.0) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self.dead_after_s = dead_after_s
        self._workers: dict[str, _Entry] = {}

    def register(self, status: status_pb2.WorkerStatus, now: float | None = None) -> None:
        self.heartbeat(status, [], now)

    def heartbeat(
        self,
        status: status_pb2.WorkerStatus,
        running: list[str],
        now: float | None = None,
        ack_subjects: list[str] | None = None,
    ) -> None:
        now = time.time() if now is None else now
        copy = status_pb2.WorkerStatus()
        copy.CopyFrom(status)
        self._workers[status.worker_id] = _Entry(copy, now, list(running), list(ack_subjects or ()))

    def reap(self, now: float | None = None) -> list[str]:
        """Ack subjects held by workers that just crossed into DEAD (each reported once)."""
        now = time.time() if now is None else now
        subjects: list[str] = []
        for entry in self._workers.values():
            if entry.status.health == status_pb2.WORKER_HEALTH_DRAINING:
                continue  # left on purpose, holding nothing
            if not entry.reaped and now - entry.last_seen > self.dead_after_s:
                entry.reaped = True
                subjects += entry.ack_subjects
        return subjects

    def snapshot(self, now: float | None = None) -> list[status_pb2.WorkerStatus]:
        now = time.time() if now is None else now
        result = []
        for entry in self._workers.values():
            status = status_pb2.WorkerStatus()
            status.CopyFrom(entry.status)
            status.last_heartbeat.FromNanoseconds(int(entry.last_seen * 1e9))
            if status.health == status_pb2.WORKER_HEALTH_DRAINING:
                if now - entry.last_seen > self.dead_after_s:
                    continue  # it stopped cleanly: no longer listed
            elif now - entry.last_seen > self.dead_after_s:
                status.health = status_pb2.WORKER_HEALTH_DEAD
            elif status.health == status_pb2.WORKER_HEALTH_UNSPECIFIED:
                status.health = status_pb2.WORKER_HEALTH_ALIVE
            result.append(status)
        return sorted(result, key=lambda w: w.worker_id)

    def forget_dead(self, older_than_s: float = 300.0, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for worker_id in [w for w, e in self._workers.items() if now - e.last_seen > older_than_s]:
            del self._workers[worker_id]
