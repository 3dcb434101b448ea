"""The Python client of tidemesh, over the generated gRPC stubs."""

from clients.sdk._client import TERMINAL, Client, payload_for

__all__ = ["TERMINAL", "Client", "payload_for"]
