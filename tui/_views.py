"""The model as lines of text, pane by pane: what both the full-screen panes and the linear mode
show. A line is urwid text markup (plain strings and ``(role, text)`` pairs, roles being the
palette's) with the key of what it names (a task id, a dead letter's task id), or no key for a
heading. A state is always a word and a symbol; its role only colours them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mesh.fabric import actions_for, console_path
from mesh.v1 import deadletter_pb2, task_pb2
from tui._model import DashModel, QueueRow, health_word, output_text, state_word

Markup = list[str | tuple[str, str]]
SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 16
SYMBOLS = {"ok": "✔", "warn": "▲", "error": "✖", "muted": "·", "accent": "▸"}
_TASK_ROLES = {
    "SUCCEEDED": "ok",
    "RUNNING": "accent",
    "QUEUED": "muted",
    "RETRYING": "warn",
    "CANCELLED": "muted",
    "FAILED": "error",
    "DEAD_LETTERED": "error",
}
_HEALTH_ROLES = {"alive": "ok", "draining": "warn", "dead": "error", "attached": "ok"}
_CIRCUIT_ROLES = {"closed": "ok", "half_open": "warn", "open": "error"}


@dataclass(frozen=True)
class Line:
    markup: Markup
    key: str | None = None  # what Enter acts on; None: a heading, not selectable

    @property
    def text(self) -> str:
        return "".join(part if isinstance(part, str) else part[1] for part in self.markup)


def state(word: str, role: str, width: int = 0) -> tuple[str, str]:
    return (role, f"{SYMBOLS[role]} {word}".ljust(width))


def sparkline(depths: tuple[int, ...], width: int = SPARK_WIDTH) -> str:
    """The last `width` depths, scaled to their own peak (all zero: the lowest bar)."""
    recent = depths[-width:]
    peak = max(recent, default=0)
    if not peak:
        return SPARK[0] * len(recent)
    return "".join(SPARK[min(len(SPARK) - 1, round(d / peak * (len(SPARK) - 1)))] for d in recent)


def age(seconds: float) -> str:
    if seconds < 0:
        seconds = 0
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def clock(stamp: object) -> str:
    """A protobuf Timestamp as local HH:MM:SS.mmm."""
    nanos = stamp.ToNanoseconds()  # type: ignore[attr-defined]
    seconds = nanos / 1e9
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{int(nanos % 10**9) // 10**6:03d}"


def queue_lines(model: DashModel) -> list[Line]:
    head = f"{'queue':<30} {'pending':>7} {'running':>7} {'oldest':>7} {'drain/s':>7}  recent depth"
    lines = [Line([("muted", head)])]
    rows = model.queue_rows()
    if not rows:
        lines.append(Line([("muted", "(no queues yet)" if model.status is None else "(every queue empty)")]))
    lines += [_queue_line(row) for row in rows]
    return lines


def _queue_line(row: QueueRow) -> Line:
    name = row.name if not row.tenant else f"  {row.tenant}"
    text = f"{name:<30} {row.pending:>7} {row.in_flight:>7} {age(row.oldest_age_s):>7} {row.drain_per_s:>7.1f}  "
    return Line([text, ("accent", sparkline(row.history))], key=row.name)


def worker_lines(model: DashModel, now: float) -> list[Line]:
    lines = [Line([("muted", f"{'worker':<26} {'state':<11} {'beat':>6} {'busy':>5}  pools / labels")])]
    workers = list(model.status.workers) if model.status else []
    if not workers and not model.attached:
        lines.append(Line([("muted", "(no workers)")]))
    for worker in workers:
        word = health_word(worker.health)
        beat = age(now - worker.last_heartbeat.ToNanoseconds() / 1e9) if worker.HasField("last_heartbeat") else "-"
        lines.append(
            Line(
                [
                    f"{worker.worker_id[:26]:<26} ",
                    state(word, _HEALTH_ROLES.get(word, "warn"), 11),
                    f" {beat:>6} {worker.in_flight:>2}/{worker.concurrency:<2}  {','.join(worker.pools)}",
                ],
                key=worker.worker_id,
            )
        )
    for attached in model.attached:
        labels = " ".join(f"{k}={v}" for k, v in attached.labels)
        lines.append(
            Line(
                [
                    f"{(attached.name or attached.worker_id)[:26]:<26} ",
                    state("attached", "ok", 11),
                    f" {'-':>6} {attached.in_flight:>2}/{attached.capacity:<2}  {','.join(attached.kinds)} {labels}",
                ],
                key=attached.worker_id,
            )
        )
    return lines


def task_lines(model: DashModel) -> list[Line]:
    shown = model.visible_tasks()
    lines = [Line([("muted", f"{'task':<34} {'kind':<10} {'state':<16} {'updated':<12}")])]
    if not shown:
        lines.append(Line([("muted", "(no tasks match)" if model.task_filter else "(no tasks)")]))
    for task in shown:
        word = state_word(task.state)
        lines.append(
            Line(
                [
                    f"{task.spec.task_id[:34]:<34} {task.spec.kind[:10]:<10} ",
                    state(word, _TASK_ROLES.get(word, "muted"), 16),
                    f" {clock(task.updated)}",
                ],
                key=task.spec.task_id,
            )
        )
    return lines


def task_title(model: DashModel) -> str:
    """The task pane's title, with the filter and how much of the list it keeps."""
    if not model.task_filter:
        return "Tasks"
    return f"Tasks · filter: {model.task_filter!r} ({len(model.visible_tasks())} of {len(model.tasks)})"


def backend_lines(model: DashModel) -> list[Line]:
    lines = [Line([("muted", f"{'backend':<28} {'circuit':<13} {'load':>7} {'latency':>9}  resident models")])]
    backends = list(model.status.inference_backends) if model.status else []
    if not backends:
        lines.append(Line([("muted", "(no inference backends)")]))
    for b in backends:
        load = f"{b.in_flight}/{b.capacity}" + (f"+{b.waiting}" if b.waiting else "")
        gpus = [d for d in b.devices if d.kind == "gpu"]
        devices = "  " + " ".join(f"gpu{d.index} {d.utilization:.0%}" for d in gpus) if gpus else ""
        lines.append(
            Line(
                [
                    f"{(b.backend + ' ' + b.address)[:28]:<28} ",
                    state(b.circuit, _CIRCUIT_ROLES.get(b.circuit, "warn"), 13),
                    f" {load:>7} {b.latency_ms:>7.1f}ms  {', '.join(b.models) or '(none)'}{devices}",
                ],
                key=f"{b.instance}/{b.backend}/{b.address}",
            )
        )
    return lines


def alert_lines(model: DashModel) -> list[Line]:
    """Each alert: its state word and symbol, what it is and its runbook; under it, the CLI
    commands that act on it and the dashboard view that shows it."""
    alerts = model.alerts()
    if not alerts:
        return [Line([state("ok", "ok"), ("muted", " nothing to act on")])]
    lines = []
    for alert in alerts:
        lines.append(
            Line(
                [state(alert.word, alert.severity, 12), f" {alert.subject[:84]:<84}  runbook {alert.runbook}"],
                key=alert.key,
            )
        )
        lines.append(Line([("muted", f"{'':14}act: {' · '.join(alert.commands)} · view: {alert.view}")]))
    return lines


def alert_title(model: DashModel) -> str:
    count = len(model.alerts())
    return f"Alerts ({count})" if count else "Alerts"


def dead_letter_lines(model: DashModel) -> list[Line]:
    lines = [Line([("muted", f"{'dead at':<12} {'task':<34} {'kind':<8} {'class':<18} message")])]
    if not model.dead_letters:
        lines.append(Line([("muted", "(no dead letters)")]))
    for letter in model.dead_letters:
        klass = deadletter_pb2.FailureClass.Name(letter.classification).removeprefix("FAILURE_CLASS_")
        replayed = f"  replayed as {', '.join(letter.replayed_as)}" if letter.replayed_as else ""
        lines.append(
            Line(
                [
                    f"{clock(letter.dead_at)} {letter.task_id[:34]:<34} {letter.spec.kind[:8]:<8} ",
                    ("error", f"{klass[:18]:<18}"),
                    f" {letter.message[:60]}{replayed}",
                ],
                key=letter.task_id,
            )
        )
    return lines


def dead_letter_detail(letter: deadletter_pb2.DeadLetter) -> list[Line]:
    klass = deadletter_pb2.FailureClass.Name(letter.classification).removeprefix("FAILURE_CLASS_")
    facts = [
        ("task", letter.task_id),
        ("kind", f"{letter.spec.kind} (tenant {letter.spec.tenant})"),
        ("diagnosis", f"{klass}: {letter.error_class}"),
        ("message", letter.message),
        ("step", f"{letter.step}, {letter.attempts} attempts on {', '.join(letter.worker_ids) or '-'}"),
        ("fingerprint", letter.fingerprint),
        ("trace", letter.trace_id or "-"),
        ("runbook", letter.runbook or "-"),
        ("replayed as", ", ".join(letter.replayed_as) or "-"),
    ]
    # The record's own commands (older records have none: the same rule, applied here).
    commands = list(letter.cli_commands) or actions_for(letter.task_id, letter.classification)[0]
    facts += [("from the CLI" if i == 0 else "", command) for i, command in enumerate(commands)]
    facts.append(("web console", letter.console_path or console_path("dlq", letter.task_id)))
    return [Line([("muted", f"{name:<13}"), value], key=letter.task_id) for name, value in facts]


def task_facts(task: task_pb2.TaskInfo | None, task_id: str) -> list[Line]:
    if task is None:
        return [Line([("muted", f"task {task_id}")])]
    word = state_word(task.state)
    return [
        Line(
            [
                ("muted", "task "),
                f"{task_id}  {task.spec.kind}  tenant {task.spec.tenant}  attempt {task.attempt}  ",
                state(word, _TASK_ROLES.get(word, "muted")),
            ]
        )
    ]


def timeline_lines(events: list[task_pb2.TaskEvent]) -> list[Line]:
    """Every event of a task: the state changes with step, worker, and partials' confidence."""
    lines = [Line([("muted", f"{'seq':>5}  {'time':<12}  {'state':<16} {'step':<12} detail")])]
    if not events:
        lines.append(Line([("muted", "(waiting for events)")]))
    for event in events:
        word = state_word(event.state)
        detail = []
        if event.HasField("output"):
            label = "result" if event.final else f"partial {event.partial_confidence:.2f}"
            detail.append(f"{label}: {output_text(event.output)[:60]}")
        if event.error.error_class:
            detail.append(f"{event.error.error_class}: {event.error.message[:60]}")
        if event.worker_id:
            detail.append(f"on {event.worker_id}")
        lines.append(
            Line(
                [
                    f"{_seq(event):>5}  {clock(event.timestamp):<12}  ",
                    state(word, _TASK_ROLES.get(word, "muted"), 16),
                    f" {event.step[:12]:<12} {'  '.join(detail)}",
                ],
                key=str(event.sequence),
            )
        )
    return lines


def stream_lines(events: list[task_pb2.TaskEvent]) -> list[Line]:
    """A task's partial outputs as they arrived, then how it ended."""
    lines = [Line([("muted", f"{'seq':>5}  {'time':<12}  {'confidence':>10}  output")])]
    partials = [e for e in events if e.HasField("output") and not e.final]
    for event in partials:
        lines.append(
            Line(
                [
                    f"{_seq(event):>5}  {clock(event.timestamp):<12}  {event.partial_confidence:>10.2f}  ",
                    ("accent", output_text(event.output)),
                ],
                key=str(event.sequence),
            )
        )
    final = next((e for e in events if e.final), None)
    if final is None:
        waiting = "streaming…" if events else "waiting for the task's first event…"
        lines.append(Line([("muted", f"({waiting} {len(partials)} partial outputs so far)")]))
    else:
        word = state_word(final.state)
        lines.append(
            Line(
                [
                    ("muted", f"{_seq(final):>5}  {clock(final.timestamp):<12}  "),
                    state(f"ended {word}", _TASK_ROLES.get(word, "muted")),
                    f" after {len(partials)} partial outputs",
                ],
                key=str(final.sequence),
            )
        )
    return lines


def _seq(event: task_pb2.TaskEvent) -> str:
    return f"{event.sequence}.{event.live_index}" if event.live_index else str(event.sequence)


def announce(sentence: str, now: float) -> str:
    """A change as the linear mode appends it."""
    return time.strftime("%H:%M:%S", time.localtime(now)) + " " + sentence
