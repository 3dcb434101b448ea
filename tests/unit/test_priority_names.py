"""One vocabulary for priority classes: names, urgency, and UNSPECIFIED as standard."""

from __future__ import annotations

from mesh.priority import CLASS_BY_NAME, CLASS_NAMES, class_name, urgency
from mesh.v1 import task_pb2


def test_names_and_classes_round_trip_most_urgent_first() -> None:
    assert [class_name(CLASS_BY_NAME[name]) for name in CLASS_NAMES] == list(CLASS_NAMES)
    assert [urgency(CLASS_BY_NAME[name]) for name in CLASS_NAMES] == [0, 1, 2]


def test_unspecified_and_unknown_classes_are_standard() -> None:
    assert class_name(task_pb2.PRIORITY_CLASS_UNSPECIFIED) == "standard" == class_name(99)
    assert urgency(task_pb2.PRIORITY_CLASS_UNSPECIFIED) == urgency(task_pb2.PRIORITY_CLASS_STANDARD)
    assert set(CLASS_BY_NAME.values()) == set(task_pb2.PriorityClass.values()) - {task_pb2.PRIORITY_CLASS_UNSPECIFIED}
