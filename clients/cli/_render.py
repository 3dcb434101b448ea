"""How the CLI prints an event for people: one line, stamped on the chosen clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from mesh.v1 import task_pb2


def _utc_clock(when: datetime) -> str:
    return when.strftime("%H:%M:%S.%f")[:-3]


def event_line(
    event: task_pb2.TaskEvent,
    rendered: dict[str, Any] | None = None,
    clock: Callable[[datetime], str] = _utc_clock,
) -> str:
    """One readable line; `clock` stamps the event's time (UTC) — "" leaves the stamp out."""
    stamp = clock(event.timestamp.ToDatetime())
    state = task_pb2.TaskState.Name(event.state).removeprefix("TASK_STATE_")
    parts = [stamp] if stamp else []
    parts += [f"#{event.sequence:<3}", f"{state:<10}"]
    if event.step:
        parts.append(f"step={event.step}")
    if event.partial_confidence:
        parts.append(f"conf={event.partial_confidence:.2f}")
    output = event.output
    body = output.WhichOneof("body") if event.HasField("output") else None
    if body == "text":
        parts.append(repr(output.text if len(output.text) <= 80 else output.text[:77] + "..."))
    elif body == "embedding":
        values = output.embedding.values
        head = ", ".join(f"{v:+.4f}" for v in values[:4])
        parts.append(f"embedding[{len(values)}]=[{head}, …] model={output.embedding.model}")
    elif body == "data":
        parts.append(f"{len(output.data)} bytes")
    elif body == "custom":  # a user kind's message: its fields, as the registry describes them
        fields = dict((rendered or {}).get("output", {}).get("custom", {}))
        name = str(fields.pop("@type", output.custom.type_url)).rsplit("/", 1)[-1]
        text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
        parts.append(f"{name} {text if len(text) <= 160 else text[:157] + '...'}")
    if event.HasField("error"):
        parts.append(f"error={event.error.error_class}: {event.error.message}")
    if event.final:
        parts.append("(final)")
    return "  ".join(parts)
