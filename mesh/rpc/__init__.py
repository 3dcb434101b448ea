"""gRPC plumbing shared by every service: status mapping and channel options."""

from mesh.rpc._channel import channel
from mesh.rpc._context import ServerContext
from mesh.rpc._durations import duration
from mesh.rpc._status import abort_with, error_of_refusal, raise_from_rpc_error, refusal_of, status_of

__all__ = [
    "ServerContext",
    "abort_with",
    "channel",
    "duration",
    "error_of_refusal",
    "raise_from_rpc_error",
    "refusal_of",
    "status_of",
]
