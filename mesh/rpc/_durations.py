"""`google.protobuf.Duration` from seconds: retry-after hints, heartbeat intervals, windows."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration


def duration(seconds: float) -> Duration:
    value = Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value
