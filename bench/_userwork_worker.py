"""The bench's `bench.echo` user kind, served by one SDK worker process:
``tidemesh worker run bench._userwork_worker:worker`` with `TIDEMESH_BENCH_GENERATED` naming the
folder `bench/_userwork.py` compiled `bench/proto` into (the messages are generated at run time)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.environ["TIDEMESH_BENCH_GENERATED"])

from benchecho.v1.benchecho_pb2 import EchoRequest, EchoResult

from clients.sdk import TaskContext, Worker

KIND = "bench.echo"

worker = Worker(name="bench-userwork", labels={"lang": "python"}, capacity=64)


@worker.task(KIND, input=EchoRequest, output=EchoResult)
async def echo(request: EchoRequest, ctx: TaskContext) -> EchoResult:
    """What the built-in `echo` step does: the text back, unchanged."""
    return EchoResult(text=request.text)
