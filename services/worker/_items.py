"""The work item a runner reads and the one it writes next: checked on the way in, built on the way out."""

from __future__ import annotations

import google.protobuf.message

from mesh.errors import InvalidArgument
from mesh.tasks import KINDS, Limits, check_task_id, validate_spec
from mesh.v1 import task_pb2, work_pb2

_LIMITS = Limits()


class PoisonMessage(Exception):
    """A message the mesh cannot run: `poison_input` (not a work item at all) or
    `schema_mismatch` (a work item whose spec or step is not one this mesh knows)."""

    def __init__(
        self, classification: str, error: str, task_id: str = "", item: work_pb2.WorkItem | None = None
    ) -> None:
        super().__init__(f"{classification}: {error}")
        self.classification = classification
        self.error = error
        self.task_id = task_id
        self.item = item  # the decoded item, for a schema mismatch


def check_work_item(data: bytes | None) -> work_pb2.WorkItem:
    """The work item in `data`, checked so that running it cannot fail on its shape; else PoisonMessage."""
    try:
        item = work_pb2.WorkItem.FromString(data or b"")
    except google.protobuf.message.DecodeError as exc:
        raise PoisonMessage("poison_input", f"not a WorkItem: {exc}") from exc
    spec = item.spec
    try:
        check_task_id(spec.task_id, "spec.task_id")
        # The deadline is not checked here: one that passed while queued is the runner's to
        # dead-letter as a timeout, not a malformed item.
        validate_spec(spec, _LIMITS, now_s=0.0)
    except InvalidArgument as exc:
        raise PoisonMessage("schema_mismatch", f"{exc.field}: {exc.reason}", spec.task_id, item) from exc
    steps = len(KINDS[spec.kind].steps)
    if not 0 <= item.step_index < steps:
        error = f"step_index: {item.step_index} is out of range for kind {spec.kind!r}"
        raise PoisonMessage("schema_mismatch", error, spec.task_id, item)
    return item


def next_item(
    item: work_pb2.WorkItem, sequence: int, stream_sequence: int, outputs: list[task_pb2.TaskOutput]
) -> work_pb2.WorkItem:
    """The work item of the step after `item`'s, fenced on the chain as it stands after that step."""
    following = work_pb2.WorkItem(
        spec=item.spec,
        step_index=item.step_index + 1,
        last_event_sequence=sequence,
        last_event_stream_sequence=stream_sequence,
        carry=outputs,
        traceparent=item.traceparent,
        admitted=item.admitted,
    )
    following.enqueued.GetCurrentTime()
    return following
