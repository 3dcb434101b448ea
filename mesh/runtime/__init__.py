"""Service lifecycle: the host (gRPC + health + reflection + ops HTTP) and process entry."""

from mesh.runtime._host import HostState, ServiceHost
from mesh.runtime._main import base_parser, connect_nats, run_service
from mesh.runtime._restart import RESTART_REASON_ENV, announce_restart, restart_reason

__all__ = [
    "RESTART_REASON_ENV",
    "HostState",
    "ServiceHost",
    "announce_restart",
    "base_parser",
    "connect_nats",
    "restart_reason",
    "run_service",
]
