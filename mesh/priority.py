"""Priority classes: the one vocabulary for them.

A task's `priority_class` (the proto enum) is named by its class name — what users write in the
CLI, REST and the SDK, and what a work subject's lane token says — and ordered by its urgency
(0 is the most urgent). UNSPECIFIED means standard everywhere.
"""

from __future__ import annotations

from mesh.v1 import task_pb2

# Most urgent first.
CLASS_NAMES = ("interactive", "standard", "batch")
CLASS_BY_NAME: dict[str, task_pb2.PriorityClass] = {
    "interactive": task_pb2.PRIORITY_CLASS_INTERACTIVE,
    "standard": task_pb2.PRIORITY_CLASS_STANDARD,
    "batch": task_pb2.PRIORITY_CLASS_BATCH,
}
_NAME_OF_CLASS: dict[int, str] = {int(value): name for name, value in CLASS_BY_NAME.items()}


def class_name(priority_class: int) -> str:
    """The name of a priority class; UNSPECIFIED (or unknown) is standard."""
    return _NAME_OF_CLASS.get(priority_class, "standard")


def urgency(priority_class: int) -> int:
    """0 for the most urgent class, counting up; UNSPECIFIED is standard's."""
    return CLASS_NAMES.index(class_name(priority_class))
