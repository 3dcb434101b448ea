"""Service lifecycle: the host (gRPC + health + reflection + ops HTTP) and process entry."""

from mesh.runtime._host import HostState, ServiceHost
from mesh.runtime._main import base_parser, connect_nats, run_service

__all__ = ["HostState", "ServiceHost", "base_parser", "connect_nats", "run_service"]
