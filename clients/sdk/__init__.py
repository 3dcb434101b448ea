"""The Python client of tidemesh, over the generated gRPC stubs: `Client` submits and watches
tasks, `Worker` runs your own task kinds (see `clients.sdk._worker`)."""

from clients.sdk._client import TERMINAL, Client, payload_for, task_state
from clients.sdk._worker import Fatal, LocalRun, Retryable, TaskContext, TaskDefinition, Worker, pack, run_local, unpack

__all__ = [
    "TERMINAL",
    "Client",
    "Fatal",
    "LocalRun",
    "Retryable",
    "TaskContext",
    "TaskDefinition",
    "Worker",
    "pack",
    "payload_for",
    "run_local",
    "task_state",
    "unpack",
]
