"""gRPC plumbing shared by every service: status mapping and channel options."""

from mesh.rpc._channel import channel
from mesh.rpc._context import ServerContext
from mesh.rpc._durations import duration
from mesh.rpc._status import abort_with, raise_from_rpc_error, status_of

__all__ = ["ServerContext", "abort_with", "channel", "duration", "raise_from_rpc_error", "status_of"]
