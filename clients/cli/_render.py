"""How the CLI prints events: readable lines with timestamps, or one JSON object per line."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.json_format import MessageToDict

from mesh.v1 import task_pb2


def event_json(event: task_pb2.TaskEvent, rendered: dict[str, Any] | None = None) -> str:
    """One JSON line; `rendered` is the event as JSON with its user messages resolved (`Client.to_dict`)."""
    return json.dumps(rendered if rendered is not None else MessageToDict(event), separators=(",", ":"))


def event_line(event: task_pb2.TaskEvent, rendered: dict[str, Any] | None = None) -> str:
    stamp = event.timestamp.ToDatetime().strftime("%H:%M:%S.%f")[:-3]
    state = task_pb2.TaskState.Name(event.state).removeprefix("TASK_STATE_")
    parts = [stamp, f"#{event.sequence:<3}", f"{state:<10}"]
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
