"""`tidemesh model list|status|load|unload` and `tidemesh infer` — your models from the terminal,
through the front door (Envoy, the gateway's relay) like every other command.

``tidemesh infer MODEL --input NAME=JSON ...`` runs any model: each input is a JSON array (nested
to the tensor's shape), its datatype taken from the model's metadata; outputs print as JSON, one
object per response (a decoupled model streams several with ``--stream``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
from google.protobuf.json_format import MessageToDict

from clients.cli._exit import EXIT_OK
from clients.cli._output import Output
from clients.sdk import Client
from mesh.errors import InvalidArgument
from mesh.oip import Array
from mesh.priority import CLASS_NAMES
from mesh.v1 import inference_pb2

__all__ = ["add_model_commands", "infer_command", "model_command"]


def add_model_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    client_args: Callable[..., None],
) -> None:
    p_model = subparsers.add_parser("model", help="your models: list, status, load, unload")
    actions = p_model.add_subparsers(dest="model_action", required=True)
    p_list = actions.add_parser("list", help="every model each backend holds or could load, with its state")
    p_status = actions.add_parser("status", help="one model: ready or not, its signature and backends")
    p_status.add_argument("name")
    p_load = actions.add_parser("load", help="load a model from a backend's repositories (admin)")
    p_load.add_argument("name")
    p_load.add_argument("--backend", default="", help="e.g. triton (default: the one with the least to unload)")
    p_unload = actions.add_parser("unload", help="unload a model once its requests in flight finish (admin)")
    p_unload.add_argument("name")
    p_unload.add_argument("--backend", default="")
    for p in (p_list, p_status, p_load, p_unload):
        client_args(p)

    p_infer = subparsers.add_parser("infer", help="run a model on tensors")
    p_infer.add_argument("model")
    p_infer.add_argument(
        "--input", action="append", default=[], metavar="NAME=JSON", help="a tensor as a JSON array (repeatable)"
    )
    p_infer.add_argument("--only", action="append", default=[], metavar="NAME", help="only these outputs (repeatable)")
    p_infer.add_argument("--priority", default="standard", choices=CLASS_NAMES)
    p_infer.add_argument("--stream", action="store_true", help="every response of a decoupled model")
    client_args(p_infer, streams=True)


def _model_line(m: inference_pb2.ModelInfo) -> str:
    used = m.last_used.ToDatetime().strftime("%H:%M:%S") if m.HasField("last_used") else "-"
    reason = f"  ({m.reason})" if m.reason and m.state != "READY" else ""
    return (
        f"{m.name:<28} {m.backend:<7} {m.state:<12} {m.memory_bytes / 2**20:>7.0f} MiB "
        f"in flight {m.in_flight:<3} last used {used}{reason}"
    )


def _metadata_lines(meta: inference_pb2.ModelMetadataResponse, ready: bool) -> Iterator[str]:
    yield f"{meta.name}: {'READY' if ready else 'NOT READY'} on {', '.join(meta.backends) or 'no backend'}"
    batch = f", batches of up to {meta.max_batch_size}" if meta.max_batch_size else ""
    yield f"  {meta.platform or 'unknown platform'}{batch}{', decoupled' if meta.decoupled else ''}"
    for label, tensors in (("in ", meta.inputs), ("out", meta.outputs)):
        for t in tensors:
            yield f"  {label} {t.name} {t.datatype}{list(t.shape)}{' (optional)' if t.optional else ''}"


async def model_command(args: argparse.Namespace, client: Client) -> int:
    models, out = client.models, Output.from_args(args)
    if args.model_action == "list":
        listing = await models.list()
        out.data([MessageToDict(m) for m in listing], table=lambda: out.lines(_model_line(m) for m in listing))
    elif args.model_action == "status":
        meta = await models.metadata(args.name)
        ready = await models.ready(args.name)
        out.data(
            {"ready": ready, "metadata": MessageToDict(meta)}, table=lambda: out.lines(_metadata_lines(meta, ready))
        )
    elif args.model_action == "load":
        loaded = await models.load(args.name, args.backend)
        made_room = f" (unloaded {', '.join(loaded.unloaded)} to make room)" if loaded.unloaded else ""
        line = f"{loaded.model.name} {loaded.model.state} on {loaded.model.backend}{made_room}"
        out.data(MessageToDict(loaded), table=lambda: out.line(line))
    else:
        left = await models.unload(args.name, args.backend)
        out.data({"unloaded_from": left}, table=lambda: out.line(f"{args.name} unloaded from {', '.join(left)}"))
    return EXIT_OK


def _inputs(given: list[str]) -> dict[str, Any]:
    inputs = {}
    for entry in given:
        name, sep, text = entry.partition("=")
        if not sep or not name:
            raise InvalidArgument("--input", f"expected NAME=JSON, got {entry!r}")
        try:
            inputs[name] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"--input {name}", f"not JSON: {exc.msg}") from exc
    if not inputs:
        raise InvalidArgument("--input", "at least one tensor, e.g. --input 'X=[[1.0]]'")
    return inputs


def _printable(arrays: dict[str, Array]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value

    return {
        name: np.vectorize(plain, otypes=[object])(a).tolist() if a.dtype == object else a.tolist()
        for name, a in arrays.items()
    }


async def infer_command(args: argparse.Namespace, client: Client) -> int:
    """Output tensors as JSON (a table of tensors reads no better); a stream's responses one per line,
    stamped for people."""
    inputs, out = _inputs(args.input), Output.from_args(args)
    if args.stream:
        async for outputs in client.models.stream(args.model, inputs, args.only, args.priority):
            tensors = _printable(outputs)
            stamp = out.stamp(datetime.now(UTC))
            out.record(tensors, f"{stamp}  {json.dumps(tensors)}" if stamp else json.dumps(tensors))
        return EXIT_OK
    outputs = await client.models.infer(args.model, inputs, args.only, args.priority)
    tensors = _printable(outputs)
    out.data(tensors, table=lambda: out.line(json.dumps(tensors)))
    return EXIT_OK
