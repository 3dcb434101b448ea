"""``python -m services.inference`` — embeddings from Triton and/or the embedded CPU model."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
from pathlib import Path

from mesh.fabric import INFERENCE_BUCKET, await_topology
from mesh.model_repository import MODEL_REPOSITORY, config_name
from mesh.priority import CLASS_NAMES
from mesh.runtime import ServiceHost, base_parser, connect_nats, run_service
from mesh.v1 import inference_pb2_grpc
from services.inference._backend import CpuBackend, InferenceBackend
from services.inference._batcher import Batchers
from services.inference._breaker import CircuitBreaker
from services.inference._devices import Devices
from services.inference._registry import publish_backends
from services.inference._residency import MIB
from services.inference._router import MAX_WAIT_S, MAX_WAITING, SPILL_AFTER_S, Router
from services.inference._service import Inference


def _backends(args: argparse.Namespace, devices: Devices) -> list[InferenceBackend]:
    backends: list[InferenceBackend] = []
    kinds = frozenset(
        {"cpu", "gpu"}
        if args.triton_devices == "gpu" or (args.triton_devices == "auto" and devices.has_gpu)
        else {"cpu"}
    )
    for address in args.triton:
        from services.inference._triton import TritonBackend  # only the Triton path needs tritonclient

        backends.append(
            TritonBackend(
                address,
                capacity=args.triton_capacity,
                transport=args.transport,
                device_kinds=kinds,
                repositories=[MODEL_REPOSITORY, *args.model_repository],
                config_name=config_name(),
            )
        )
    if not args.no_cpu:
        backends.append(CpuBackend(threads=args.threads, processes=args.cpu_mode == "process"))
    if not backends:
        raise SystemExit("no backend: give --triton or drop --no-cpu")
    return backends


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    instance = f"{socket.gethostname()}-{os.getpid()}"
    devices = Devices()
    router = Router(
        _backends(args, devices),
        probe_interval_s=args.probe_interval,
        breaker=lambda: CircuitBreaker(threshold=3, reset_s=args.breaker_reset),
        memory_budget_bytes=int(args.model_memory_budget_mb * MIB),
        default_model_bytes=int(args.default_model_memory_mb * MIB),
        spill_after_s=_spill_bounds(args.spill_after_ms),
        max_wait_s=args.max_wait_ms / 1000,
        max_waiting=args.max_waiting,
    )
    async with contextlib.AsyncExitStack() as stack:  # what starts later stops earlier
        await router.start()
        stack.push_async_callback(router.close)
        batchers = await stack.enter_async_context(
            Batchers(router, max_batch=args.max_batch, max_delay_s=args.max_delay_ms / 1000)
        )
        host = ServiceHost("inference", args.grpc, args.http, grace_s=args.grace, transport=args.transport)
        host.add(
            inference_pb2_grpc.add_InferenceServiceServicer_to_server,
            Inference(router, batchers, instance, args.default_model),
            "mesh.v1.InferenceService",
        )
        await stack.enter_async_context(host)
        if args.register:  # after the host: the entries carry the port it serves on
            nc = await connect_nats(args, "tidemesh-inference")
            stack.push_async_callback(nc.drain)
            js = nc.jetstream(timeout=5.0)
            await await_topology(js, streams=(f"KV_{INFERENCE_BUCKET}",))  # the scheduler declares it
            kv = await js.key_value(INFERENCE_BUCKET)
            endpoint = args.advertise or f"127.0.0.1:{host.grpc_port}"
            registration = asyncio.create_task(publish_backends(kv, router, instance, endpoint, devices))
            stack.push_async_callback(_cancel, registration)
        host.write_ready_file(Path(args.ready_file) if args.ready_file else None)
        await stop.wait()
        await host.begin_shutdown()


def _spill_bounds(text: str) -> tuple[float, ...]:
    """``interactive=0,standard=100,batch=1000`` (ms) as seconds by urgency; unnamed classes keep
    their defaults."""
    bounds = dict(zip(CLASS_NAMES, SPILL_AFTER_S, strict=True))
    for entry in filter(None, text.split(",")):
        name, _, value = entry.partition("=")
        try:
            if name not in bounds:
                raise ValueError(name)
            bounds[name] = float(value) / 1000
        except ValueError as exc:
            raise SystemExit(
                f"--spill-after-ms: expected CLASS=MS with CLASS in {', '.join(CLASS_NAMES)}, got {entry!r}"
            ) from exc
    return tuple(bounds[name] for name in CLASS_NAMES)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> None:
    parser = base_parser("tidemesh inference")
    parser.add_argument("--threads", type=int, default=1, help="CPU model workers (the CPU backend's capacity)")
    parser.add_argument(
        "--cpu-mode",
        choices=["process", "thread"],
        default="process",
        help="run the CPU model in worker processes (default: no GIL shared with the service) or threads",
    )
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--default-model", default="all-minilm-l6-v2")
    parser.add_argument(
        "--triton", action="append", default=[], metavar="HOST:PORT", help="a Triton gRPC endpoint (repeatable)"
    )
    parser.add_argument("--triton-capacity", type=int, default=4, help="model calls in flight per Triton")
    parser.add_argument(
        "--model-memory-budget-mb",
        type=float,
        default=0.0,
        help="memory a backend that loads models on request may fill; past it the least recently used "
        "idle models are unloaded (0: no budget)",
    )
    parser.add_argument(
        "--default-model-memory-mb",
        type=float,
        default=256.0,
        help="what a model counts against the budget when its config declares no memory_mb parameter",
    )
    parser.add_argument(
        "--spill-after-ms",
        default="",
        metavar="CLASS=MS,...",
        help="how long a call of each class may expect to wait for a full Triton before it spills to the CPU "
        "model (default interactive=0,standard=100,batch=1000)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=MAX_WAIT_S * 1000,
        help="refuse a call (RESOURCE_EXHAUSTED, with a retry-after) that would expect to queue longer than this",
    )
    parser.add_argument(
        "--max-waiting", type=int, default=MAX_WAITING, help="refuse a call when this many already queue per backend"
    )
    parser.add_argument(
        "--triton-devices",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="what Triton's models can run on: auto (a GPU where NVML finds one, and the CPU), cpu, or gpu (and cpu)",
    )
    parser.add_argument(
        "--model-repository",
        action="append",
        type=Path,
        default=[],
        help="a user model repository Triton serves (repeatable): read for what each model needs before it loads",
    )
    parser.add_argument("--no-cpu", action="store_true", help="no embedded CPU backend (and so no fallback)")
    parser.add_argument("--probe-interval", type=float, default=1.0, help="seconds between backend health probes")
    parser.add_argument("--breaker-reset", type=float, default=5.0, help="seconds a failing backend rests")
    parser.add_argument(
        "--advertise", default="", metavar="HOST:PORT", help="the endpoint others call (default 127.0.0.1:<grpc port>)"
    )
    parser.add_argument("--no-register", dest="register", action="store_false", help="do not register backends in NATS")
    run_service("inference", parser, serve)


if __name__ == "__main__":
    main()
