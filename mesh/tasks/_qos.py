"""QoS tier names, as users spell them in the SDK, the CLI, REST and WebSocket."""

from __future__ import annotations

from mesh.errors import InvalidArgument
from mesh.v1 import task_pb2

QOS_TIERS: dict[str, task_pb2.QosTier] = {
    "guaranteed": task_pb2.QOS_TIER_GUARANTEED,
    "best_effort": task_pb2.QOS_TIER_BEST_EFFORT,
}


def qos_tier(name: object, field: str = "qos") -> task_pb2.QosTier:
    if not isinstance(name, str) or name not in QOS_TIERS:
        raise InvalidArgument(field, f"one of: {', '.join(QOS_TIERS)}")
    return QOS_TIERS[name]
