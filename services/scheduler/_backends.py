"""Inference backends as the inference services registered them (`tm_inference` KV).

An entry that is no `InferenceBackendStatus` is quarantined and deleted (if it has not been
replaced meanwhile), so one bad entry neither fails GetMeshStatus for everyone nor comes back
at every read; the services re-register their real entries on their own schedule.
"""

from __future__ import annotations

import asyncio
import contextlib

import google.protobuf.message
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mesh.fabric import INFERENCE_BUCKET, Quarantine, entry_subject
from mesh.telemetry import get_logger
from mesh.v1 import status_pb2

log = get_logger(__name__)


async def inference_backends(js: JetStreamContext) -> list[status_pb2.InferenceBackendStatus]:
    """Every registered backend, by instance then backend; expired entries are already gone."""
    try:
        kv = await js.key_value(INFERENCE_BUCKET)
        keys = await kv.keys()
    except (nats.js.errors.NoKeysError, nats.js.errors.BucketNotFoundError):
        return []
    entries = await asyncio.gather(*(kv.get(key) for key in keys), return_exceptions=True)
    backends = []
    for entry in entries:
        if isinstance(entry, BaseException) or not entry.value:
            continue  # deleted or expired between keys() and get()
        try:
            backends.append(status_pb2.InferenceBackendStatus.FromString(entry.value))
        except google.protobuf.message.DecodeError as exc:
            await _set_aside(js, kv, entry, f"not an InferenceBackendStatus: {exc}")
    return sorted(backends, key=lambda b: (b.instance, b.backend, b.address))


async def _set_aside(js: JetStreamContext, kv: KeyValue, entry: KeyValue.Entry, error: str) -> None:
    revision = entry.revision or 0
    subject = entry_subject(INFERENCE_BUCKET, entry.key)

    async def remove() -> None:
        # Only the revision read: an entry replaced meanwhile is a live backend's, left alone.
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await kv.delete(entry.key, last=revision)

    await Quarantine(js).set_aside("inference", subject, revision, entry.value, "poison_input", error, remove=remove)
