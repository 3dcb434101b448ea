"""``python -m services.inference`` — embeddings from the embedded CPU model."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from mesh.runtime import ServiceHost, base_parser, run_service
from mesh.v1 import inference_pb2_grpc
from services.inference._backend import CpuBackend
from services.inference._batcher import Batcher
from services.inference._service import Inference


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    backend = CpuBackend(threads=args.threads)
    batchers = {
        m.name: Batcher(backend, m.name, max_batch=args.max_batch, max_delay_s=args.max_delay_ms / 1000)
        for m in backend.models()
    }
    for batcher in batchers.values():
        batcher.start()
    host = ServiceHost("inference", args.grpc, args.http, grace_s=args.grace)
    host.add(
        inference_pb2_grpc.add_InferenceServiceServicer_to_server,
        Inference(backend, batchers),
        "mesh.v1.InferenceService",
    )
    try:
        async with host:
            host.write_ready_file(Path(args.ready_file) if args.ready_file else None)
            await stop.wait()
            await host.begin_shutdown()
    finally:
        for batcher in batchers.values():
            await batcher.close()
        await backend.close()


def main() -> None:
    parser = base_parser("tidemesh inference")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    run_service("inference", parser, serve)


if __name__ == "__main__":
    main()
