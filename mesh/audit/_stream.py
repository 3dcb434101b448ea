"""The audit stream: ``TM_AUDIT``, subjects ``tm.audit.record.<n>`` and ``tm.audit.checkpoint.<n>``.

It is created with ``deny_delete`` and ``deny_purge`` and without roll-ups: the server itself
refuses to delete a message or purge the stream, and an update cannot take either back
(nats-server: "stream configuration update can not cancel deny message deletes"). An update
could still shorten its limits (``max_msgs: 1`` drops the records before the last), so no
service's NATS user may update it (`mesh.security._nats`): the gateway may create it (create of
an existing stream never changes it) and append; the operators' admin user alone could delete
the whole stream — which verification against a kept checkpoint shows.

The stream has no age or size limit: records stay until an operator archives them.
"""

from __future__ import annotations

import nats.js.api as api
import nats.js.errors
from nats.js import JetStreamContext

from mesh.errors import Unavailable
from mesh.telemetry import get_logger

log = get_logger(__name__)

AUDIT_STREAM = "TM_AUDIT"
AUDIT_PREFIX = "tm.audit"
RECORD_PREFIX = f"{AUDIT_PREFIX}.record"
CHECKPOINT_PREFIX = f"{AUDIT_PREFIX}.checkpoint"


def record_subject(seq: int) -> str:
    return f"{RECORD_PREFIX}.{seq}"


def checkpoint_subject(seq: int) -> str:
    return f"{CHECKPOINT_PREFIX}.{seq}"


def audit_stream_config(replicas: int = 1) -> api.StreamConfig:
    return api.StreamConfig(
        name=AUDIT_STREAM,
        description="tidemesh audit: hash-chained records and signed checkpoints (append-only)",
        subjects=[f"{AUDIT_PREFIX}.>"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        num_replicas=replicas,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
    )


def tamper_resistant(config: api.StreamConfig) -> list[str]:
    """What a stream config lacks to hold the audit (empty: nothing)."""
    missing = []
    if not config.deny_delete:
        missing.append("deny_delete is off")
    if not config.deny_purge:
        missing.append("deny_purge is off")
    if config.allow_rollup_hdrs:
        missing.append("roll-ups are allowed")
    if f"{AUDIT_PREFIX}.>" not in (config.subjects or []):
        missing.append(f"it does not take {AUDIT_PREFIX}.>")
    for limit in ("max_msgs", "max_bytes", "max_msgs_per_subject"):
        if (getattr(config, limit) or -1) > 0:
            missing.append(f"{limit} is limited")
    if config.max_age:
        missing.append("max_age is limited")
    return missing


async def declare_audit_stream(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the audit stream unless it exists; use an existing one only if it still holds
    everything it is sent and refuses deletion (else Unavailable: the audit must not start on a
    stream that could lose its records)."""
    try:
        await js.add_stream(audit_stream_config(replicas))
        return
    except nats.js.errors.BadRequestError:  # it exists with another config (replicas, a later version's)
        pass
    try:
        info = await js.stream_info(AUDIT_STREAM)
    except nats.js.errors.NotFoundError as exc:
        raise Unavailable(f"the audit stream {AUDIT_STREAM} could neither be created nor found") from exc
    missing = tamper_resistant(info.config)
    if missing:
        raise Unavailable(f"the audit stream {AUDIT_STREAM} is not append-only: {'; '.join(missing)}")
    log.info("audit stream exists with another config; it is append-only, so it is used as it is")
