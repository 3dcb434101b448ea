"""The task domain shared by scheduler and workers: kinds, validation, ids."""

from mesh.tasks import builtin as _builtin  # noqa: F401  (declares the built-in kinds)
from mesh.tasks._chunks import split_words
from mesh.tasks._ids import assigned_at_ms, new_task_id, scoped_task_id
from mesh.tasks._payload import payload_from_json
from mesh.tasks._qos import QOS_TIERS, qos_tier
from mesh.tasks._registry import (
    CUSTOM_PAYLOAD,
    KINDS,
    TYPE_URL_PREFIX,
    KindRegistry,
    StepSpec,
    TaskKind,
    check_kind_name,
    user_pool,
)
from mesh.tasks._validate import SCHEMA_VERSION, Limits, check_task_id, validate_spec

__all__ = [
    "CUSTOM_PAYLOAD",
    "KINDS",
    "QOS_TIERS",
    "SCHEMA_VERSION",
    "TYPE_URL_PREFIX",
    "KindRegistry",
    "Limits",
    "StepSpec",
    "TaskKind",
    "assigned_at_ms",
    "check_kind_name",
    "check_task_id",
    "new_task_id",
    "payload_from_json",
    "qos_tier",
    "scoped_task_id",
    "split_words",
    "user_pool",
    "validate_spec",
]
