"""Which failed calls the client tries again by itself — the one place that decides.

- UNAVAILABLE: a broker node failing over, a service restarting. Retried with backoff.
- DEADLINE_EXCEEDED: retried only for an idempotent call that still has time left.
- RESOURCE_EXHAUSTED: not retried here; it reaches the caller as `ResourceExhausted` with
  `retry_after_s`, because pacing is the caller's choice (a rate limit it keeps hitting is
  a fact it should see).
- INTERNAL, UNKNOWN and every other code: never retried. Calling a bug again does not fix
  it, and a client that retries it forever hides the bug.

One exception for resumable streams (`watch`): a stream that breaks in transport — the
gateway behind Envoy killed mid-stream comes back as INTERNAL ("RST_STREAM") or UNKNOWN
("Stream removed") — is resumed, a bounded number of times. Tidemesh never answers an
error on purpose without its ``tidemesh-error-class`` trailer, so an error that carries
one is an answer, and is final.
"""

from __future__ import annotations

import random

import grpc
import grpc.aio

_BROKEN_IN_TRANSPORT = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


def answered_by_tidemesh(exc: grpc.aio.AioRpcError) -> bool:
    """Whether the mesh itself answered with this error (rather than the transport failing)."""
    return any(key == "tidemesh-error-class" for key, _ in exc.trailing_metadata() or ())


def should_retry(exc: grpc.aio.AioRpcError, idempotent: bool = False) -> bool:
    """Whether a unary call that failed with `exc` may be tried again."""
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return True
    return code == grpc.StatusCode.DEADLINE_EXCEEDED and idempotent


def should_resume(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a resumable stream that failed with `exc` may be opened again after its last event."""
    if should_retry(exc):
        return True
    return exc.code() in _BROKEN_IN_TRANSPORT and not answered_by_tidemesh(exc)


def jittered(delay_s: float) -> float:
    """`delay_s` spread over its upper half, so many clients do not retry in step."""
    return delay_s * (0.5 + random.random() / 2)
