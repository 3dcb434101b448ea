"""Dead letters: the diagnosis record of every task that exhausted its retries or failed fatally.

Records live in the TM_DLQ stream, one subject per task (``tm.dlq.<task_id>``); the
last message on a subject is the record's current version (a replay appends a
new version naming the replay). Each new dead letter is also announced on
``tm.alert.dead_letter`` for alerting.

A message on a record's subject that is no `DeadLetter` of that task is quarantined and
deleted when read, so the version before it is the record again and listing goes on.
"""

from __future__ import annotations

import hashlib
import json
import re
import traceback

import google.protobuf.message
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from mesh.errors import Unavailable
from mesh.fabric._index import delete_subject
from mesh.fabric._quarantine import Quarantine
from mesh.telemetry import get_logger
from mesh.v1 import deadletter_pb2

log = get_logger(__name__)

DLQ_STREAM = "TM_DLQ"
DLQ_PREFIX = "tm.dlq"
ALERT_SUBJECT = "tm.alert.dead_letter"
# Label on a replayed task's spec naming the task it replays (the id chain).
REPLAY_OF_LABEL = "tidemesh.replay_of"

_CLASSES: dict[str, deadletter_pb2.FailureClass] = {
    "invalid_input": deadletter_pb2.FAILURE_CLASS_POISON_INPUT,
    "schema_mismatch": deadletter_pb2.FAILURE_CLASS_SCHEMA_MISMATCH,
    "timeout": deadletter_pb2.FAILURE_CLASS_TIMEOUT,
    "resource_exhausted": deadletter_pb2.FAILURE_CLASS_RESOURCE_EXHAUSTION,
    "dependency_down": deadletter_pb2.FAILURE_CLASS_DEPENDENCY_DOWN,
    "child_failed": deadletter_pb2.FAILURE_CLASS_DEPENDENCY_DOWN,
    "bug": deadletter_pb2.FAILURE_CLASS_BUG,
}


def classify(error_class: str) -> deadletter_pb2.FailureClass:
    """The failure class of a step error class; anything unrecognised is treated as a bug."""
    return _CLASSES.get(error_class, deadletter_pb2.FAILURE_CLASS_BUG)


def runbook_for(classification: int) -> str:
    slug = deadletter_pb2.FailureClass.Name(classification).removeprefix("FAILURE_CLASS_").lower().replace("_", "-")
    return f"docs/runbooks/{slug}.md"


# A replay runs the same input again: pointless for input that can never succeed (its runbook says
# fix the producer), worth it once capacity, a dependency, a deadline or a fixed bug allows.
_NOT_REPLAYABLE = frozenset({deadletter_pb2.FAILURE_CLASS_POISON_INPUT})


CONSOLE_VIEWS = ("tasks", "dlq")  # the web console's pages of one record (clients/web/src/console)


def console_path(view: str, task_id: str) -> str:
    """The web console's page of a task (``tasks``) or a dead letter (``dlq``) on the public port."""
    if view not in CONSOLE_VIEWS:
        raise ValueError(f"no console view {view!r}: one of {', '.join(CONSOLE_VIEWS)}")
    return f"/console/{view}/{task_id}"


def actions_for(task_id: str, classification: int) -> tuple[list[str], str]:
    """The CLI commands that act on a dead letter (as its runbook takes them) and its dashboard view."""
    commands = [f"tidemesh dlq show {task_id}"]
    if classification not in _NOT_REPLAYABLE:
        commands.append(f"tidemesh dlq replay {task_id}")
    commands.append(f"tidemesh dlq purge {task_id}")
    return commands, f"tidemesh dash --dlq {task_id}"


def fingerprint(error_class: str, message: str, exc: BaseException | None = None) -> str:
    """Same shape of failure → same fingerprint: the exception type and the functions it passed
    through, or else the error class and the message with its numbers and ids masked."""
    if exc is not None:
        frames = [
            f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_code.co_name}"
            for f, _ in traceback.walk_tb(exc.__traceback__)
        ]
        parts = [type(exc).__qualname__, *frames]
    else:
        parts = [error_class, re.sub(r"[0-9a-z]{20,}|\d+", "#", message)[:200]]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# Bad versions set aside in one read before giving up on a record (a flood of junk on one subject).
_BAD_VERSIONS = 8


def _subject(task_id: str) -> str:
    return f"{DLQ_PREFIX}.{task_id}"


class DeadLetterStore:
    def __init__(self, js: JetStreamContext, nc: Client) -> None:
        self._js = js
        self._nc = nc

    async def record(self, letter: deadletter_pb2.DeadLetter, alert: bool = True, fence: int = 0) -> int:
        """Store the record (idempotent per task and version) and raise the alert; its stream sequence.

        `fence` (a first version stored before its task's final event, at the chain position that
        event follows) joins the dedup id, so a version withdrawn after losing that race does not
        swallow the one another writer stores later. `alert=False` leaves the alert to `alert`."""
        version = len(letter.replayed_as)
        msg_id = f"{letter.task_id}:dlq:{version}" + (f"@{fence}" if fence else "")
        try:
            ack = await self._js.publish(
                _subject(letter.task_id), letter.SerializeToString(), headers={"Nats-Msg-Id": msg_id}
            )
        except nats.errors.Error as exc:  # any broker failure: retryable for the caller
            raise Unavailable(f"dead-letter store refused the record: {exc}") from exc
        if alert and version == 0 and not ack.duplicate:
            await self.alert(letter)
        return ack.seq

    async def withdraw(self, task_id: str, sequence: int) -> None:
        """Remove a version stored for a task that did not end dead-lettered after all (its chain
        moved on), so no record is left to replay; a failure is logged, never raised."""
        try:
            await self._js.delete_msg(DLQ_STREAM, sequence)
        except nats.js.errors.NotFoundError:
            pass  # gone already
        except nats.errors.Error:
            log.warning("could not withdraw a dead letter", extra={"task_id": task_id}, exc_info=True)

    async def alert(self, letter: deadletter_pb2.DeadLetter) -> None:
        """Announce a new dead letter on ``tm.alert.dead_letter``."""
        alert = {
            "task_id": letter.task_id,
            "tenant": letter.spec.tenant,
            "kind": letter.spec.kind,
            "classification": deadletter_pb2.FailureClass.Name(letter.classification),
            "error_class": letter.error_class,
            "message": letter.message,
            "runbook": letter.runbook,
            "cli_commands": list(letter.cli_commands),
            "dashboard_view": letter.dashboard_view,
            "console_path": letter.console_path,
            "trace_id": letter.trace_id,
        }
        await self._nc.publish(ALERT_SUBJECT, json.dumps(alert).encode())

    async def get(self, task_id: str) -> deadletter_pb2.DeadLetter | None:
        """The current record of `task_id`; a bad last message is set aside and the one before read."""
        subject = _subject(task_id)
        for _ in range(_BAD_VERSIONS):
            try:
                raw = await self._js.get_last_msg(DLQ_STREAM, subject)
            except nats.js.errors.NotFoundError:
                return None
            try:
                letter = deadletter_pb2.DeadLetter.FromString(raw.data or b"")
            except google.protobuf.message.DecodeError as exc:
                classification, error = "poison_input", f"not a DeadLetter: {exc}"
            else:
                if letter.task_id == task_id:
                    return letter
                classification, error = "schema_mismatch", f"task_id: {letter.task_id!r} is not the task of its subject"
            if not await self._set_aside(subject, raw.seq or 0, raw.data, classification, error, task_id):
                return None
        return None

    async def _set_aside(
        self, subject: str, sequence: int, data: bytes | None, classification: str, error: str, task_id: str
    ) -> bool:
        """Quarantine a bad record version, then delete it; False if it could not be taken away."""
        return await Quarantine(self._js, self._nc).set_aside(
            "deadletters",
            subject,
            sequence,
            data,
            classification,
            error,
            task_id,
            lambda: self._js.delete_msg(DLQ_STREAM, sequence),
        )

    async def list(self, tenant: str = "", limit: int = 100) -> list[deadletter_pb2.DeadLetter]:
        """Current records, newest first, optionally for one tenant."""
        info = await self._js.stream_info(DLQ_STREAM, subjects_filter=f"{DLQ_PREFIX}.>")
        letters = []
        for subject in info.state.subjects or {}:
            letter = await self.get(subject[len(DLQ_PREFIX) + 1 :])
            if letter is not None and (not tenant or letter.spec.tenant == tenant):
                letters.append(letter)
        letters.sort(key=lambda letter: letter.dead_at.ToNanoseconds(), reverse=True)
        return letters[: limit or None]

    async def purge(self, task_id: str = "", tenant: str = "") -> int:
        targets = [task_id] if task_id else [letter.task_id for letter in await self.list(tenant, limit=0)]
        purged = 0
        for target in targets:
            if await self.get(target) is not None:
                await delete_subject(self._js, DLQ_STREAM, _subject(target))  # see TaskIndex.remove
                purged += 1
        return purged
