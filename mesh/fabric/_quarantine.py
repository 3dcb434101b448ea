"""Quarantine: messages the mesh could not parse or validate, set aside with their raw bytes.

A bad message must not stop the readers behind it (a lane's fetch loop, a task's
event chain), nor come back forever. Whoever finds one records it here, then takes
it out of the way (a work item is terminated on its consumer, an event removed
from its chain): `Quarantine.set_aside` does both. A record is a message on
``tm.quarantine.<source>`` in the TM_QUARANTINE stream whose body is the bad message's
bytes and whose ``Tm-Quarantine`` header is a JSON object (ASCII, one line):

    source           where it was found: ``work``, ``events``, ``ordered`` (TM_ORDERED), ``index``
                     (TM_TASKS), ``deadletters`` (TM_DLQ), or a KV bucket's reader: ``credentials``,
                     ``inference``, ``order_keys``
    subject          the subject it was stored on (``$KV.<bucket>.<key>`` for a KV entry)
    stream_sequence  its sequence in that stream, a KV entry's revision (0 if unknown)
    classification   ``poison_input`` (undecodable) or ``schema_mismatch`` (decodes, but not valid)
    error            why it was refused
    task_id          the task it names, if it could be read
    quarantined_at   when, RFC 3339 UTC
    raw_length       the bad message's length in bytes
    raw_sha256       the sha256 of all of those bytes, hex
    truncated        true if the body keeps only the first bytes: the bad message plus this header
                     did not fit the server's max_payload (its own headers counted against it too)

The bytes travel as the body, not inside a JSON document (base64 grew them by a third, so a
message over ~786 KB made a record over NATS's 1 MiB limit: the record was refused and the
bad message was never set aside). Records are deduplicated per (source, stream sequence),
so every reader that trips over the same message makes one record. Each new record is
announced on ``tm.alert.quarantine`` (core NATS; the header's object) , counted in
``tidemesh_quarantined_total`` and logged — never with the payload.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from mesh.errors import MeshError, Unavailable
from mesh.fabric._subjects import QUARANTINE_ALERT_SUBJECT, QUARANTINE_PREFIX, QUARANTINE_STREAM, quarantine_subject
from mesh.telemetry import METRICS, get_logger

CLASSIFICATIONS = ("poison_input", "schema_mismatch")
RECORD_HEADER = "Tm-Quarantine"
log = get_logger(__name__)

# What the NATS protocol adds around a message's headers ("NATS/1.0\r\n", "Name: value\r\n", "\r\n"),
# with room to spare for the server's own accounting.
_HEADER_OVERHEAD = 256
_DEFAULT_MAX_PAYLOAD = 1024 * 1024


def entry_subject(bucket: str, key: str) -> str:
    """The subject a KV entry is recorded under."""
    return f"$KV.{bucket}.{key}"


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
    raw_length: int = -1  # -1: all of `raw`
    raw_sha256: str = ""
    truncated: bool = False

    def summary(self) -> dict[str, object]:
        """The record without its bytes: what the header, alerts and logs carry."""
        return {
            "source": self.source,
            "subject": self.subject,
            "stream_sequence": self.stream_sequence,
            "classification": self.classification,
            "error": self.error,
            "task_id": self.task_id,
            "quarantined_at": self.quarantined_at,
            "raw_length": len(self.raw) if self.raw_length < 0 else self.raw_length,
            "raw_sha256": self.raw_sha256 or hashlib.sha256(self.raw).hexdigest(),
            "truncated": self.truncated,
        }

    @classmethod
    def from_stored(cls, raw: RawStreamMsg) -> QuarantineRecord:
        """A stored record: its header and body, or a JSON body with ``raw_b64`` (records before the header)."""
        header = (raw.headers or {}).get(RECORD_HEADER)
        if header is not None:
            doc, data = json.loads(header), raw.data or b""
        else:
            doc = json.loads(raw.data or b"{}")
            data = base64.b64decode(doc.get("raw_b64", ""))
        return cls(
            source=doc["source"],
            subject=doc["subject"],
            stream_sequence=int(doc["stream_sequence"]),
            classification=doc["classification"],
            error=doc["error"],
            task_id=doc.get("task_id", ""),
            quarantined_at=doc["quarantined_at"],
            raw=data,
            raw_length=int(doc.get("raw_length", len(data))),
            raw_sha256=doc.get("raw_sha256", "") or hashlib.sha256(data).hexdigest(),
            truncated=bool(doc.get("truncated", False)),
        )


class Quarantine:
    def __init__(self, js: JetStreamContext, nc: Client | None = None) -> None:
        self._js = js
        # Readers that hold only a JetStream context alert through its connection.
        self._nc = nc if nc is not None else getattr(js, "_nc", None)

    async def set_aside(
        self,
        source: str,
        subject: str,
        stream_sequence: int,
        data: bytes | None,
        classification: str,
        error: str,
        task_id: str = "",
        remove: Callable[[], Awaitable[object]] | None = None,
    ) -> bool:
        """Record the message durably (once per source and sequence; alerted, counted and logged),
        then take it out of the way with `remove` (delete it, terminate it).

        False if it is still there: no record could be stored (the message must stay where it is:
        no record holds its bytes yet) or `remove` failed; either is tried again when next read."""
        if classification not in CLASSIFICATIONS:
            raise ValueError(f"classification must be one of {CLASSIFICATIONS}, got {classification!r}")
        raw = data or b""
        record = QuarantineRecord(
            source=source,
            subject=subject,
            stream_sequence=stream_sequence,
            classification=classification,
            error=error[:1000],
            task_id=task_id,
            quarantined_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            raw=raw,
            raw_length=len(raw),
            raw_sha256=hashlib.sha256(raw).hexdigest(),
        )
        try:
            await self._store(record)
        except Unavailable:
            log.warning("could not quarantine a bad message; leaving it in place", extra=_where(source, subject))
            return False
        if remove is None:
            return True
        try:
            await remove()
        except nats.js.errors.NotFoundError:
            pass  # another reader removed it first
        except (nats.errors.Error, MeshError):
            log.warning("could not remove a quarantined message", extra=_where(source, subject), exc_info=True)
            return False
        return True

    async def _store(self, record: QuarantineRecord) -> None:
        """Publish the record (bytes as the body, truncated to fit), then alert, count and log it."""
        source = record.source
        sequence = record.stream_sequence
        headers = {"Nats-Msg-Id": f"{source}:{sequence}"} if sequence else {}
        header = json.dumps(record.summary())  # ASCII, one line: a valid header value
        room = self._max_payload() - _HEADER_OVERHEAD - len(header) - sum(len(k) + len(v) for k, v in headers.items())
        if len(record.raw) > room:
            # The bad message filled the limit (its own headers counted against it): keep its start;
            # its length and sha256 still identify all of it.
            record = QuarantineRecord(**{**record.__dict__, "raw": record.raw[: max(room, 0)], "truncated": True})
            header = json.dumps(record.summary())
        try:
            ack = await self._js.publish(
                quarantine_subject(source), record.raw, headers={**headers, RECORD_HEADER: header}
            )
        except nats.errors.Error as exc:  # any broker failure: retryable for the caller
            raise Unavailable(f"quarantine refused the record: {exc}") from exc
        if ack.duplicate:
            return  # another reader set this message aside already
        METRICS.quarantined.labels(source, record.classification).inc()
        log.error("message quarantined", extra=record.summary())
        if self._nc is None:
            return
        try:
            await self._nc.publish(QUARANTINE_ALERT_SUBJECT, header.encode())
        except nats.errors.Error:
            log.warning("quarantine alert not published", exc_info=True)  # the record is stored

    def _max_payload(self) -> int:
        """The server's limit on one message, headers and body together."""
        limit = getattr(self._nc, "max_payload", 0)
        return limit if isinstance(limit, int) and limit > 0 else _DEFAULT_MAX_PAYLOAD

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
            records.append(QuarantineRecord.from_stored(raw))
            sequence = (raw.seq or sequence) + 1
        return records


def _where(source: str, subject: str) -> dict[str, object]:
    return {"source": source, "subject": subject}
