"""Inference backends as the inference services registered them (`tm_inference` KV)."""

from __future__ import annotations

import asyncio

import nats.js.errors
from nats.js import JetStreamContext

from mesh.fabric import INFERENCE_BUCKET
from mesh.v1 import status_pb2


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
        backends.append(status_pb2.InferenceBackendStatus.FromString(entry.value))
    return sorted(backends, key=lambda b: (b.instance, b.backend, b.address))
