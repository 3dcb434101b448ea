"""How the CLI prints events: readable lines with timestamps, or one JSON object per line."""

from __future__ import annotations

import json

from google.protobuf.json_format import MessageToDict

from mesh.v1 import task_pb2


def event_json(event: task_pb2.TaskEvent) -> str:
    return json.dumps(MessageToDict(event), separators=(",", ":"))


def event_line(event: task_pb2.TaskEvent) -> str:
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
    if event.HasField("error"):
        parts.append(f"error={event.error.error_class}: {event.error.message}")
    if event.final:
        parts.append("(final)")
    return "  ".join(parts)
