"""Quarantine: messages the mesh could not parse or validate, set aside with their raw bytes.

A bad message must not stop the readers behind it (a lane's fetch loop, a task's
event chain), nor come back forever. Whoever finds one records it here, then takes
it out of the way (a work item is terminated on its consumer, an event removed
from its chain). A record is a JSON document on ``tm.quarantine.<source>`` in the
TM_QUARANTINE stream:

    source           where it was found: ``work``, ``events``, ``ordered`` (TM_ORDERED), ``index``
                     (TM_TASKS), ``deadletters`` (TM_DLQ), or a KV bucket's reader: ``credentials``,
                     ``inference``, ``order_keys``
    subject          the subject it was stored on (``$KV.<bucket>.<key>`` for a KV entry)
    stream_sequence  its sequence in that stream, a KV entry's revision (0 if unknown)
    classification   ``poison_input`` (undecodable) or ``schema_mismatch`` (decodes, but not valid)
    error            why it was refused
    task_id          the task it names, if it could be read
    quarantined_at   when, RFC 3339 UTC
    raw_b64          the message's bytes, base64

Records are deduplicated per (source, stream sequence), so every reader that trips
over the same message makes one record. Each new record is announced on
``tm.alert.quarantine`` (core NATS; the record without its bytes), counted in
``tidemesh_quarantined_total`` and logged — never with the payload.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from mesh.errors import Unavailable
from mesh.fabric._subjects import QUARANTINE_ALERT_SUBJECT, QUARANTINE_PREFIX, QUARANTINE_STREAM, quarantine_subject
from mesh.telemetry import METRICS, get_logger

CLASSIFICATIONS = ("poison_input", "schema_mismatch")
log = get_logger(__name__)


@dataclass(frozen=True)
class QuarantineRecord:
    source: str
    subject: str
    stream_sequence: int
    classification: str
    error: str
    task_id: str
    quarantined_at: str
    raw: bytes

    def to_json(self) -> dict[str, object]:
        """The record as stored, bytes in base64."""
        return {**self.summary(), "raw_b64": base64.b64encode(self.raw).decode()}

    def summary(self) -> dict[str, object]:
        """The record without its bytes: what alerts and logs carry."""
        return {
            "source": self.source,
            "subject": self.subject,
            "stream_sequence": self.stream_sequence,
            "classification": self.classification,
            "error": self.error,
            "task_id": self.task_id,
            "quarantined_at": self.quarantined_at,
        }

    @classmethod
    def from_json(cls, data: bytes) -> QuarantineRecord:
        doc = json.loads(data)
        return cls(
            source=doc["source"],
            subject=doc["subject"],
            stream_sequence=int(doc["stream_sequence"]),
            classification=doc["classification"],
            error=doc["error"],
            task_id=doc.get("task_id", ""),
            quarantined_at=doc["quarantined_at"],
            raw=base64.b64decode(doc["raw_b64"]),
        )


class Quarantine:
    def __init__(self, js: JetStreamContext, nc: Client | None = None) -> None:
        self._js = js
        # Readers that hold only a JetStream context alert through its connection.
        self._nc = nc if nc is not None else getattr(js, "_nc", None)

    async def record_entry(
        self, source: str, bucket: str, key: str, revision: int, value: bytes | None, classification: str, error: str
    ) -> QuarantineRecord:
        """`record` for a KV entry: its subject is ``$KV.<bucket>.<key>``, its sequence its revision."""
        return await self.record(source, f"$KV.{bucket}.{key}", revision, value, classification, error)

    async def record(
        self,
        source: str,
        subject: str,
        stream_sequence: int,
        data: bytes | None,
        classification: str,
        error: str,
        task_id: str = "",
    ) -> QuarantineRecord:
        """Store the record durably (once per source and sequence), then alert, count and log.

        Raises Unavailable if the record could not be stored: the caller must then leave the
        message where it is."""
        if classification not in CLASSIFICATIONS:
            raise ValueError(f"classification must be one of {CLASSIFICATIONS}, got {classification!r}")
        record = QuarantineRecord(
            source=source,
            subject=subject,
            stream_sequence=stream_sequence,
            classification=classification,
            error=error[:1000],
            task_id=task_id,
            quarantined_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            raw=data or b"",
        )
        headers = {"Nats-Msg-Id": f"{source}:{stream_sequence}"} if stream_sequence else None
        try:
            ack = await self._js.publish(
                quarantine_subject(source), json.dumps(record.to_json()).encode(), headers=headers
            )
        except nats.errors.Error as exc:  # any broker failure: retryable for the caller
            raise Unavailable(f"quarantine refused the record: {exc}") from exc
        if ack.duplicate:
            return record  # another reader set this message aside already
        METRICS.quarantined.labels(source, classification).inc()
        log.error("message quarantined", extra=record.summary())
        if self._nc is None:
            return record
        try:
            await self._nc.publish(QUARANTINE_ALERT_SUBJECT, json.dumps(record.summary()).encode())
        except nats.errors.Error:
            log.warning("quarantine alert not published", exc_info=True)  # the record is stored
        return record

    async def list(self, source: str = "", limit: int = 1000) -> list[QuarantineRecord]:
        """Stored records, oldest first, of one source or all."""
        filter_subject = quarantine_subject(source) if source else f"{QUARANTINE_PREFIX}.>"
        try:
            info = await self._js.stream_info(QUARANTINE_STREAM, subjects_filter=filter_subject)
        except nats.js.errors.NotFoundError:
            return []
        records: list[QuarantineRecord] = []
        sequence = info.state.first_seq
        while sequence and sequence <= info.state.last_seq and len(records) < limit:
            try:
                raw = await self._js.get_msg(QUARANTINE_STREAM, seq=sequence, subject=filter_subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            records.append(QuarantineRecord.from_json(raw.data or b"{}"))
            sequence = (raw.seq or sequence) + 1
        return records
