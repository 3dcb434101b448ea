"""What the dashboard knows, as plain state: updated from the status stream, task pages, a task's
events and the dead letters, and read by the views (`tui._views`). No terminal here.

Every update returns the changes it made as sentences (`Change`), which the linear mode
announces and the full-screen mode ignores. While paused, updates are held (the latest status
only; every event, in order) and applied on resume.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mesh.fabric import actions_for, runbook_for
from mesh.priority import class_name
from mesh.v1 import deadletter_pb2, gateway_pb2, kind_pb2, status_pb2, task_pb2

PANE_NAMES = ("queues", "workers", "tasks", "backends", "dead-letters", "alerts")  # the main view, in order

HISTORY = 30  # depth samples kept per queue, for its sparkline and drain rate
DRAIN_WINDOW_S = 10.0  # the drain rate is the fall in depth over this much history

QueueKey = tuple[str, int, str]  # pool, priority class, tenant ("": the whole lane)
ALERT_AGE_S = 30.0  # a lane whose oldest item waited longer than this raises an alert
DEPENDENCY_DOWN = "docs/runbooks/dependency-down.md"
RESOURCE_EXHAUSTION = "docs/runbooks/resource-exhaustion.md"


@dataclass(frozen=True)
class QueueRow:
    pool: str
    priority_class: int
    tenant: str
    pending: int
    in_flight: int
    oldest_age_s: float
    # Items per second the depth fell over the last DRAIN_WINDOW_S (0 while it holds or grows);
    # a pool's whole-lane rows show the scheduler's measured drain instead when it has one.
    drain_per_s: float
    history: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.pool}/{class_name(self.priority_class)}" + (f"/{self.tenant}" if self.tenant else "")


@dataclass(frozen=True)
class AttachedWorker:
    """A worker attached for user kinds (from ListKinds): its labels and the kinds it serves."""

    worker_id: str
    name: str
    kinds: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    in_flight: int
    capacity: int


@dataclass(frozen=True)
class Alert:
    """Something an operator should act on: what it is, in which state (a word; `severity` is
    "error" or "warn"), the runbook that says what to do, the CLI commands that act on it and the
    dashboard view that shows it."""

    key: str  # stable across readings: "backend/…", "worker/…", "lane/…", "dlq/<task id>"
    word: str
    severity: str
    subject: str
    runbook: str
    commands: tuple[str, ...]
    view: str


@dataclass
class DashModel:
    status: gateway_pb2.GetMeshStatusResponse | None = None
    tasks: list[task_pb2.TaskInfo] = field(default_factory=list)
    task_filter: str = ""
    dead_letters: list[deadletter_pb2.DeadLetter] = field(default_factory=list)
    attached: list[AttachedWorker] = field(default_factory=list)
    # The events of the tasks opened (detail or stream view), in sequence order.
    events: dict[str, list[task_pb2.TaskEvent]] = field(default_factory=dict)
    paused: bool = False
    alert_age_s: float = ALERT_AGE_S
    _history: dict[QueueKey, deque[tuple[float, int]]] = field(default_factory=dict)
    _held_status: tuple[gateway_pb2.GetMeshStatusResponse, float] | None = None
    _held: list[Callable[[], list[str]]] = field(default_factory=list)
    _letters_before: set[str] | None = None  # the first listing's dead letters (not new)

    # -- updates -------------------------------------------------------------------------------

    def apply_status(self, status: gateway_pb2.GetMeshStatusResponse, now: float) -> list[str]:
        if self.paused:
            self._held_status = (status, now)
            return []
        changes = _status_changes(self.status, status)
        self.status = status
        for queue in (*status.queues, *status.tenant_queues):
            key = (queue.pool, int(queue.priority_class), queue.tenant)
            samples = self._history.setdefault(key, deque(maxlen=HISTORY))
            samples.append((now, queue.pending + queue.in_flight))
        return changes

    def set_tasks(self, tasks: Iterable[task_pb2.TaskInfo]) -> list[str]:
        return self._maybe_hold(lambda: self._set_tasks(list(tasks)))

    def _set_tasks(self, tasks: list[task_pb2.TaskInfo]) -> list[str]:
        before = {task.spec.task_id: task.state for task in self.tasks}
        self.tasks = tasks
        return [
            f"task {task.spec.task_id} {state_word(task.state)}"
            for task in tasks
            if before.get(task.spec.task_id) != task.state
        ]

    def set_dead_letters(self, letters: Iterable[deadletter_pb2.DeadLetter]) -> list[str]:
        return self._maybe_hold(lambda: self._set_dead_letters(list(letters)))

    def _set_dead_letters(self, letters: list[deadletter_pb2.DeadLetter]) -> list[str]:
        known = {letter.task_id for letter in self.dead_letters}
        if self._letters_before is None:
            self._letters_before = {letter.task_id for letter in letters}
        self.dead_letters = letters
        return [
            f"dead letter {letter.task_id}: {letter.error_class} {letter.message[:60]}"
            for letter in letters
            if letter.task_id not in known
        ]

    def set_kinds(self, kinds: Iterable[kind_pb2.KindInfo]) -> None:
        by_id: dict[str, AttachedWorker] = {}
        for info in kinds:
            for worker in info.workers:
                seen = by_id.get(worker.worker_id)
                served = (*seen.kinds, info.kind.name) if seen else (info.kind.name,)
                by_id[worker.worker_id] = AttachedWorker(
                    worker.worker_id,
                    worker.worker_name,
                    served,
                    tuple(sorted(worker.labels.items())),
                    worker.in_flight,
                    worker.capacity,
                )
        self.attached = list(by_id.values())

    def open_task(self, task_id: str) -> None:
        """Start collecting `task_id`'s events (a fresh watch sends them all again)."""
        self.events[task_id] = []

    def add_event(self, event: task_pb2.TaskEvent) -> list[str]:
        return self._maybe_hold(lambda: self._add_event(event))

    def _add_event(self, event: task_pb2.TaskEvent) -> list[str]:
        events = self.events.setdefault(event.task_id, [])
        if events and (event.sequence, event.live_index) <= (events[-1].sequence, events[-1].live_index):
            return []  # already here (a resumed watch's overlap)
        events.append(event)
        return [f"task {event.task_id} {event_sentence(event)}"]

    def _maybe_hold(self, update: Callable[[], list[str]]) -> list[str]:
        if self.paused:
            self._held.append(update)
            return []
        return update()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> list[str]:
        """Un-pause and apply what arrived meanwhile; the changes it made."""
        self.paused = False
        changes: list[str] = []
        if self._held_status is not None:
            changes += self.apply_status(*self._held_status)
            self._held_status = None
        held, self._held = self._held, []
        for update in held:
            changes += update()
        return changes

    # -- reads ---------------------------------------------------------------------------------

    def visible_tasks(self) -> list[task_pb2.TaskInfo]:
        """The tasks the filter keeps: every word of it found in the id, kind, state or tenant."""
        words = self.task_filter.lower().split()
        return [task for task in self.tasks if all(word in _haystack(task) for word in words)]

    def queue_rows(self) -> list[QueueRow]:
        """Every lane, each followed by its tenants' partitions; the lanes that hold work first."""
        if self.status is None:
            return []
        measured = {s.pool: s.drain_per_s for s in self.status.scaling}
        rows = []
        for lane in sorted(self.status.queues, key=lambda lane: lane.pending + lane.in_flight == 0):
            rows.append(self._row(lane, measured.get(lane.pool)))
            partitions = [
                t for t in self.status.tenant_queues if (t.pool, t.priority_class) == (lane.pool, lane.priority_class)
            ]
            rows += [self._row(t, None) for t in sorted(partitions, key=lambda t: t.tenant)]
        return rows

    def alerts(self) -> list[Alert]:
        """What needs acting on, errors first: an open or half-open circuit, a dead or draining
        worker, a lane whose oldest item waited past `alert_age_s`, a dead letter not replayed
        ("new" when it arrived while the dashboard watched)."""
        found: list[Alert] = []
        status = self.status or gateway_pb2.GetMeshStatusResponse()
        for b in status.inference_backends:
            if b.circuit in ("open", "half_open"):
                found.append(
                    Alert(
                        f"backend/{b.instance}/{b.backend}/{b.address}",
                        b.circuit,
                        "error" if b.circuit == "open" else "warn",
                        f"inference {b.backend} {b.address} circuit {b.circuit}"
                        + (f": {b.last_error[:60]}" if b.last_error else ""),
                        DEPENDENCY_DOWN,
                        ("tidemesh status",),
                        "tidemesh dash --pane backends",
                    )
                )
        for worker in status.workers:
            word = health_word(worker.health)
            if word in ("dead", "draining"):
                found.append(
                    Alert(
                        f"worker/{worker.worker_id}",
                        word,
                        "error" if word == "dead" else "warn",
                        f"worker {worker.worker_id} {word} ({','.join(worker.pools)})",
                        DEPENDENCY_DOWN,
                        ("tidemesh status",),
                        "tidemesh dash --pane workers",
                    )
                )
        for lane in status.queues:
            if lane.pending and lane.oldest_age_s > self.alert_age_s:
                name = f"{lane.pool}/{class_name(lane.priority_class)}"
                found.append(
                    Alert(
                        f"lane/{name}",
                        "old",
                        "warn",
                        f"queue {name}: oldest waited {lane.oldest_age_s:.0f}s (> {self.alert_age_s:g}s), "
                        f"{lane.pending} pending",
                        RESOURCE_EXHAUSTION,
                        ("tidemesh status",),
                        "tidemesh dash --pane queues",
                    )
                )
        before = self._letters_before or set()
        for letter in self.dead_letters:
            if letter.replayed_as:
                continue
            klass = deadletter_pb2.FailureClass.Name(letter.classification).removeprefix("FAILURE_CLASS_")
            commands, view = actions_for(letter.task_id, letter.classification)
            new = letter.task_id not in before
            found.append(
                Alert(
                    f"dlq/{letter.task_id}",
                    "new" if new else "unreplayed",
                    "error" if new else "warn",
                    f"dead letter {letter.task_id} {klass}: {letter.message[:60]}",
                    letter.runbook or runbook_for(letter.classification),
                    tuple(letter.cli_commands) or tuple(commands),
                    letter.dashboard_view or view,
                )
            )
        return sorted(found, key=lambda alert: alert.severity != "error")

    def _row(self, queue: status_pb2.QueueStatus, measured_drain: float | None) -> QueueRow:
        samples = self._history.get((queue.pool, int(queue.priority_class), queue.tenant), deque())
        return QueueRow(
            queue.pool,
            int(queue.priority_class),
            queue.tenant,
            queue.pending,
            queue.in_flight,
            queue.oldest_age_s,
            measured_drain if measured_drain else drain_rate(list(samples)),
            tuple(depth for _, depth in samples),
        )


def drain_rate(samples: list[tuple[float, int]], window_s: float = DRAIN_WINDOW_S) -> float:
    """How fast depth fell over the last `window_s` of (time, depth) samples, items/s (0: it did not)."""
    if len(samples) < 2:
        return 0.0
    end_t, end_depth = samples[-1]
    start_t, start_depth = next((t, d) for t, d in samples if t >= end_t - window_s)
    if end_t <= start_t:
        return 0.0
    return max(0.0, (start_depth - end_depth) / (end_t - start_t))


def state_word(state: int) -> str:
    return task_pb2.TaskState.Name(state).removeprefix("TASK_STATE_")


def health_word(health: int) -> str:
    return status_pb2.WorkerHealth.Name(health).removeprefix("WORKER_HEALTH_").lower()


def output_text(output: task_pb2.TaskOutput) -> str:
    body = output.WhichOneof("body")
    if body == "text":
        return output.text
    if body == "embedding":
        return f"embedding[{len(output.embedding.values)}]"
    if body == "data":
        return f"{len(output.data)} bytes"
    if body == "custom":
        return output.custom.type_url.rsplit("/", 1)[-1]
    return body or ""


def event_sentence(event: task_pb2.TaskEvent) -> str:
    """One event as the linear mode announces it."""
    parts = [f"#{event.sequence}", state_word(event.state)]
    if event.HasField("output"):
        label = "result" if event.final else f"partial {event.partial_confidence:.2f}"
        parts.append(f"{label}: {output_text(event.output)}")
    if event.error.error_class:
        parts.append(f"error {event.error.error_class}: {event.error.message}")
    return " ".join(parts)


def _haystack(task: task_pb2.TaskInfo) -> str:
    return f"{task.spec.task_id} {task.spec.kind} {state_word(task.state)} {task.spec.tenant}".lower()


def _status_changes(
    before: gateway_pb2.GetMeshStatusResponse | None, after: gateway_pb2.GetMeshStatusResponse
) -> list[str]:
    """What moved between two readings, as sentences: lane depths, worker health, circuits."""
    old = before or gateway_pb2.GetMeshStatusResponse()
    changes = []
    old_lanes = {(q.pool, q.priority_class): q for q in old.queues}
    for lane in after.queues:
        was = old_lanes.get((lane.pool, lane.priority_class))
        if was is None or (was.pending, was.in_flight) != (lane.pending, lane.in_flight):
            changes.append(
                f"queue {lane.pool}/{class_name(lane.priority_class)}: {lane.pending} pending, "
                f"{lane.in_flight} in flight"
            )
    old_workers = {w.worker_id: w.health for w in old.workers}
    for worker in after.workers:
        if old_workers.get(worker.worker_id) != worker.health:
            changes.append(f"worker {worker.worker_id} {health_word(worker.health)}")
    gone = set(old_workers) - {w.worker_id for w in after.workers}
    changes += [f"worker {worker_id} gone" for worker_id in sorted(gone)]
    old_circuits = {(b.instance, b.backend, b.address): b.circuit for b in old.inference_backends}
    for backend in after.inference_backends:
        if old_circuits.get((backend.instance, backend.backend, backend.address)) != backend.circuit:
            changes.append(f"inference {backend.backend} {backend.address} circuit {backend.circuit}")
    return changes
