"""The task domain shared by scheduler and workers: kinds, validation, ids."""

from mesh.tasks._catalog import KINDS, Kind, Step, kind_of
from mesh.tasks._chunks import split_words
from mesh.tasks._ids import new_task_id, scoped_task_id
from mesh.tasks._payload import payload_from_json
from mesh.tasks._qos import QOS_TIERS, qos_tier
from mesh.tasks._validate import SCHEMA_VERSION, Limits, check_task_id, validate_spec

__all__ = [
    "KINDS",
    "QOS_TIERS",
    "SCHEMA_VERSION",
    "Kind",
    "Limits",
    "Step",
    "check_task_id",
    "kind_of",
    "new_task_id",
    "payload_from_json",
    "qos_tier",
    "scoped_task_id",
    "split_words",
    "validate_spec",
]
