"""What the desktop app shows, as plain data: rows for the overview, the task list, a task's
stream and the dead letters, and each view's route. No Flet here, so every rule is unit-tested
without a window (`tests/unit/test_desktop_model.py`); the submit form is `desktop._form`.

The live state itself is the dashboard's (`tui._model.DashModel`): one model of the mesh for
both surfaces. States are always a word with a symbol (never colour alone); `tone` names the
design-token role a view may colour them with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mesh.v1 import deadletter_pb2, gateway_pb2
from tui._model import DashModel, health_word, output_text, state_word

VIEWS = ("overview", "tasks", "detail", "submit", "dead letters", "letter")

# word → (symbol, token role). Symbols differ in shape, so the state reads without colour.
_STATE_MARKS: dict[str, tuple[str, str]] = {
    "QUEUED": ("◷", "muted"),
    "RUNNING": ("▶", "accent"),
    "RETRYING": ("↻", "warn"),
    "SUCCEEDED": ("✔", "ok"),
    "FAILED": ("✖", "error"),
    "CANCELLED": ("⊘", "warn"),
    "DEAD_LETTERED": ("☠", "error"),
}
_HEALTH_MARKS = {"alive": ("●", "ok"), "draining": ("◐", "warn"), "dead": ("○", "error")}
_CIRCUIT_MARKS = {"closed": ("●", "ok"), "half_open": ("◐", "warn"), "open": ("○", "error")}


@dataclass(frozen=True)
class Mark:
    """A state as the app shows it: word and symbol together, and the role to colour it with."""

    word: str
    symbol: str
    tone: str

    @property
    def text(self) -> str:
        return f"{self.symbol} {self.word}"


def state_mark(state: int) -> Mark:
    word = state_word(state)
    symbol, tone = _STATE_MARKS.get(word, ("?", "muted"))
    return Mark(word, symbol, tone)


def health_mark(health: int) -> Mark:
    word = health_word(health)
    symbol, tone = _HEALTH_MARKS.get(word, ("?", "muted"))
    return Mark(word, symbol, tone)


def circuit_mark(circuit: str) -> Mark:
    symbol, tone = _CIRCUIT_MARKS.get(circuit, ("?", "muted"))
    return Mark(circuit or "unknown", symbol, tone)


@dataclass(frozen=True)
class QueueLine:
    name: str  # pool/class[/tenant]
    pending: int
    in_flight: int
    oldest_age_s: float

    @property
    def label(self) -> str:
        return f"queue {self.name}: {self.pending} pending, {self.in_flight} in flight, oldest {self.oldest_age_s:.0f}s"


@dataclass(frozen=True)
class WorkerLine:
    worker_id: str
    pools: str
    mark: Mark

    @property
    def label(self) -> str:
        return f"worker {self.worker_id} {self.mark.word}, pools {self.pools}"


@dataclass(frozen=True)
class BackendLine:
    name: str
    mark: Mark
    detail: str

    @property
    def label(self) -> str:
        return f"inference {self.name} circuit {self.mark.word}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Overview:
    queues: tuple[QueueLine, ...]
    workers: tuple[WorkerLine, ...]
    backends: tuple[BackendLine, ...]


def overview(model: DashModel) -> Overview:
    """The live mesh from the last status reading: every lane (and its tenants), workers, backends."""
    status = model.status or gateway_pb2.GetMeshStatusResponse()
    queues = tuple(QueueLine(row.name, row.pending, row.in_flight, row.oldest_age_s) for row in model.queue_rows())
    workers = tuple(WorkerLine(w.worker_id, ",".join(w.pools) or "-", health_mark(w.health)) for w in status.workers)
    backends = tuple(
        BackendLine(f"{b.backend} {b.address}", circuit_mark(b.circuit), b.last_error[:80])
        for b in status.inference_backends
    )
    return Overview(queues, workers, backends)


@dataclass(frozen=True)
class TaskLine:
    task_id: str
    kind: str
    tenant: str
    mark: Mark
    updated: str

    @property
    def label(self) -> str:
        return f"task {self.task_id}, {self.kind}, {self.mark.word}"


def task_lines(model: DashModel) -> list[TaskLine]:
    """The tasks the filter keeps (every word found in id, kind, state or tenant), newest first."""
    return [
        TaskLine(
            task.spec.task_id,
            task.spec.kind,
            task.spec.tenant,
            state_mark(task.state),
            _clock(task.updated.ToDatetime(tzinfo=UTC)) if task.HasField("updated") else "",
        )
        for task in model.visible_tasks()
    ]


@dataclass(frozen=True)
class StreamLine:
    """One event of a task's stream: sequence, time, state, and a partial output's confidence."""

    sequence: int
    time: str
    mark: Mark
    confidence: float | None  # a partial output's; None for a state change or the result
    text: str
    final: bool

    @property
    def label(self) -> str:
        parts = [f"#{self.sequence}", self.time, self.mark.word]
        if self.confidence is not None:
            parts.append(f"partial, confidence {self.confidence:.2f}")
        elif self.final and self.text:
            parts.append("result")
        if self.text:
            parts.append(self.text)
        return " ".join(parts)


def stream_lines(model: DashModel, task_id: str) -> list[StreamLine]:
    lines = []
    for event in model.events.get(task_id, []):
        partial = event.HasField("output") and not event.final
        text = output_text(event.output) if event.HasField("output") else ""
        if event.error.error_class:
            text = f"{event.error.error_class}: {event.error.message}"
        when = _clock(event.timestamp.ToDatetime(tzinfo=UTC)) if event.HasField("timestamp") else ""
        lines.append(
            StreamLine(
                event.sequence,
                when,
                state_mark(event.state),
                event.partial_confidence if partial else None,
                text,
                event.final,
            )
        )
    return lines


def stream_outcome(model: DashModel, task_id: str) -> Mark | None:
    """The final state of the task's stream, once its final event arrived."""
    events = model.events.get(task_id, [])
    return state_mark(events[-1].state) if events and events[-1].final else None


@dataclass(frozen=True)
class LetterLine:
    task_id: str
    kind: str
    tenant: str
    reason: str  # classification and message
    replayed_as: str

    @property
    def label(self) -> str:
        done = f", replayed as {self.replayed_as}" if self.replayed_as else ""
        return f"dead letter {self.task_id}, {self.kind}: {self.reason}{done}"


def letter_line(letter: deadletter_pb2.DeadLetter) -> LetterLine:
    return LetterLine(
        letter.task_id,
        letter.spec.kind,
        letter.spec.tenant,
        f"{deadletter_pb2.FailureClass.Name(letter.classification).removeprefix('FAILURE_CLASS_')} "
        f"{letter.error_class}: {letter.message[:80]}",
        ", ".join(letter.replayed_as),
    )


def letter_lines(model: DashModel) -> list[LetterLine]:
    return [letter_line(letter) for letter in model.dead_letters]


def replay_question(letter: LetterLine) -> str:
    """What the confirmation says: what a replay touches."""
    return (
        f"Replay dead letter {letter.task_id} ({letter.kind}, tenant {letter.tenant})? It runs again as a new "
        f"task, {letter.task_id}-r; repeating a replay is harmless."
    )


# Where each view lives: the app's route (the URL path in a browser, `tidemesh desktop --open`).
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a task id, as the mesh spells one
_VIEW_ROUTES = {"overview": "/", "tasks": "/tasks", "submit": "/submit", "dead letters": "/dlq"}


def route_for(view: str, item: str = "") -> str:
    """The route of a view (`detail` and `letter` name their task)."""
    if view == "detail":
        return f"/tasks/{item}"
    if view == "letter":
        return f"/dlq/{item}"
    return _VIEW_ROUTES[view]


def parse_route(route: str) -> tuple[str, str]:
    """(view, task id) of a route: ``/``, ``/tasks``, ``/tasks/ID``, ``/submit``, ``/dlq``, ``/dlq/ID``
    (the leading slash optional, a query ignored). Raises ValueError saying what routes there are."""
    path = route.split("?", 1)[0].strip().strip("/")
    parts = path.split("/") if path else []
    views = {route.strip("/"): view for view, route in _VIEW_ROUTES.items()}
    if len(parts) <= 1 and (parts[0] if parts else "") in views:
        return views[parts[0] if parts else ""], ""
    if len(parts) == 2 and parts[0] in ("tasks", "dlq") and _ID.match(parts[1]):
        return ("detail" if parts[0] == "tasks" else "letter"), parts[1]
    raise ValueError(
        f"no view at {route!r}: the app has /, tasks, tasks/TASK_ID, submit, dlq and dlq/TASK_ID "
        "(a task id is 1 to 64 of A-Z a-z 0-9 _ -)"
    )


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
