"""The reconciler: finish admissions that a crash cut short after the task's QUEUED event.

Admission writes a task's listing entry (TM_TASKS), then its QUEUED event, then its first
work item. A scheduler that dies between the event and the item leaves the task QUEUED
with nothing to run it; a client retry would finish the admission, but not every client
retries. The reconciler reads the listing entries once each, through one durable pull
consumer, and looks at every task as soon as it is older than a grace period: a task whose
last event is still the QUEUED event (sequence 1) gets its first work item published again.

That is safe for a task that does have its item (one queued behind a backlog): the item's
``Nats-Msg-Id`` is the same, so inside the duplicate window JetStream drops the copy; after
the window (a reconciler that was down for minutes) the event chain fences the second
runner out.

Cost: per admitted task one delivery of an empty message, one ack (a core publish) and a
256th of a batched last-event read; the re-publish only for tasks still QUEUED at the grace
period. Entries younger than the grace period are held in memory (delivered, not acked)
until they are due, so none is delivered twice; a reconciler that dies leaves them to be
redelivered to the next after `ack_wait_s`. Work per pass is bounded by `max_per_pass`
(at most `max_per_pass / every_s` tasks/s); it does not grow with the number of stored tasks.

An entry whose subject names no well-formed task id, or whose task's QUEUED event carries a
spec this mesh cannot run (an unknown kind, an invalid spec), is quarantined and acked: it is
never re-published, and the pass goes on to the other entries. An entry is acked only once
its record is stored: while the quarantine is away it stays held and is looked at again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from dataclasses import dataclass

import nats.errors
import nats.js.api as api
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from mesh.errors import InvalidArgument
from mesh.fabric import TASKS_STREAM, EventLog, Quarantine, StoredEvent, event_subject
from mesh.tasks import Limits, check_task_id, validate_spec
from mesh.telemetry import get_logger
from mesh.v1 import task_pb2
from services.scheduler._admission import Admitter

log = get_logger(__name__)

RECONCILER_CONSUMER = "tm-reconciler"


@dataclass(frozen=True)
class ReconcilePolicy:
    # Older than this, a task still QUEUED at sequence 1 may have lost its first work item.
    # Admission writes the item within milliseconds of the event; the margin covers a slow broker.
    grace_s: float = 5.0
    every_s: float = 2.0
    max_per_pass: int = 5000
    # An entry delivered to a reconciler that died is redelivered after this.
    ack_wait_s: float = 60.0
    # Failed passes in a row wait longer, up to this (a broker that is away is not hammered).
    max_backoff_s: float = 30.0


class Verdict(enum.Enum):
    """What a look at one entry decided."""

    GOOD = "good"  # a task's entry: reconcile it
    SET_ASIDE = "set_aside"  # quarantined (the record is stored): ack it, never look again
    RETRY = "retry"  # bad, but no record could be stored: keep it held, look again next pass


class Reconciler:
    def __init__(
        self, js: JetStreamContext, events: EventLog, admitter: Admitter, policy: ReconcilePolicy | None = None
    ) -> None:
        self._js = js
        self._events = events
        self._admitter = admitter
        self._policy = policy or ReconcilePolicy()
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._held: list[Msg] = []  # delivered entries not yet due, oldest first
        self._quarantine = Quarantine(js)
        self.requeued = 0  # first work items the broker stored anew
        self.settled = 0  # listing entries looked at and acked

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        if self._subscription is None:
            policy = self._policy
            await self._js.add_consumer(
                TASKS_STREAM,
                api.ConsumerConfig(
                    durable_name=RECONCILER_CONSUMER,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    deliver_policy=api.DeliverPolicy.ALL,
                    ack_wait=policy.ack_wait_s,
                    # Room for the held entries plus redeliveries of a reconciler that died.
                    max_ack_pending=2 * policy.max_per_pass,
                ),
            )
            self._subscription = await self._js.pull_subscribe_bind(RECONCILER_CONSUMER, TASKS_STREAM)
        return self._subscription

    async def run(self) -> None:
        """Reconcile every `every_s` seconds until cancelled; a failed pass is retried later, backing off."""
        failures = 0
        try:
            while True:
                try:
                    await self.run_pass()
                    failures = 0
                except Exception:  # any failure, a bug too, must not end the reconciler for good
                    failures += 1
                    log.exception("reconcile pass failed; retrying", extra={"failures": failures})
                delay_s = self._policy.every_s * 2 ** min(failures, 16)
                await asyncio.sleep(min(delay_s, max(self._policy.max_backoff_s, self._policy.every_s)))
        finally:
            # Unsubscribed here, not left to the connection's drain: a pull subscription with a
            # fetch cut short by the cancel kept nc.drain() waiting until the process was killed
            # (every scheduler stop took the supervisor's whole 10 s grace).
            subscription, self._subscription = self._subscription, None
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    async def run_pass(self, now_s: float | None = None) -> int:
        """Look at the entries that are due; returns how many tasks got their work item again
        (an item the broker already held, deduplicated by its id, is not counted)."""
        subscription = await self._subscribe()
        room = self._policy.max_per_pass - len(self._held)
        if room > 0:
            try:
                fetched = await subscription.fetch(room, timeout=0.2)
            except nats.errors.TimeoutError:
                fetched = []
            known = {msg.metadata.sequence.stream for msg in self._held}
            self._held.extend(msg for msg in fetched if msg.metadata.sequence.stream not in known)
        cutoff = (time.time() if now_s is None else now_s) - self._policy.grace_s
        due = [msg for msg in self._held if msg.metadata.timestamp.timestamp() <= cutoff]
        if not due:
            return 0
        done: set[int] = set()
        good: list[Msg] = []
        for msg in due:
            verdict = await self._check_entry(msg)
            if verdict is Verdict.SET_ASIDE:
                done.add(id(msg))
            elif verdict is Verdict.GOOD:
                good.append(msg)
            # Verdict.RETRY: stays held, unacked
        last = await self._events.last_many(msg.subject.rsplit(".", 1)[1] for msg in good)
        requeued = 0
        try:
            for msg in good:
                stored = last.get(msg.subject.rsplit(".", 1)[1])
                # None: the entry's task never got its QUEUED event (the client was never answered).
                if stored and stored.event.sequence == 1 and stored.event.state == task_pb2.TASK_STATE_QUEUED:
                    verdict = await self._check_spec(stored)
                    if verdict is Verdict.RETRY:
                        continue  # held: acked only once its record is stored
                    if verdict is Verdict.GOOD and await self._admitter.requeue(stored):
                        requeued += 1  # counted only when the broker stored a new item
                await msg.ack()
                done.add(id(msg))
                self.settled += 1
        finally:
            # An entry whose re-publish failed stays held and is looked at again next pass.
            self._held = [msg for msg in self._held if id(msg) not in done]
            self.requeued += requeued
            if requeued:
                log.info("reconciler republished first work items", extra={"tasks": requeued})
        return requeued

    async def _check_entry(self, msg: Msg) -> Verdict:
        """GOOD for an entry naming a task id; one that names none is quarantined and acked."""
        task_id = msg.subject.rsplit(".", 1)[1]
        try:
            check_task_id(task_id)
        except InvalidArgument as exc:
            error = f"listing entry names no task: {exc.field}: {exc.reason}"
            sequence = msg.metadata.sequence.stream
            aside = await self._quarantine.set_aside(
                "index", msg.subject, sequence, msg.data, "schema_mismatch", error, task_id, msg.ack
            )
            return Verdict.SET_ASIDE if aside else Verdict.RETRY
        return Verdict.GOOD

    async def _check_spec(self, queued: StoredEvent) -> Verdict:
        """GOOD if the task's QUEUED event holds a spec this mesh can run; if not, quarantine it."""
        try:
            validate_spec(queued.event.spec, _LIMITS, now_s=0.0)
        except InvalidArgument as exc:
            error = f"the task's QUEUED event cannot be run: {exc.field}: {exc.reason}"
            task_id = queued.event.task_id
            data = queued.event.SerializeToString()
            subject = event_subject(task_id)
            aside = await self._quarantine.set_aside(
                "events", subject, queued.stream_sequence, data, "schema_mismatch", error, task_id
            )
            return Verdict.SET_ASIDE if aside else Verdict.RETRY
        return Verdict.GOOD


# Deadlines are not the reconciler's to judge: one that passed is the runner's to dead-letter.
_LIMITS = Limits()
