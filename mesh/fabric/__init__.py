"""The NATS JetStream fabric: subjects, topology, event log, connections."""

from mesh.fabric._connect import connect
from mesh.fabric._events import TERMINAL_STATES, ChainMoved, EventLog, StoredEvent, fold
from mesh.fabric._ordering import ORDER_KEYS_BUCKET, ORDERED_STREAM, KeySequencer, key_token
from mesh.fabric._subjects import (
    CANCEL_PREFIX,
    EVENTS_PREFIX,
    EVENTS_STREAM,
    IDEMPOTENCY_BUCKET,
    LANE_ORDER,
    POOLS,
    SCALE_PREFIX,
    TOKEN_RE,
    WORK_PREFIX,
    WORK_STREAM,
    WORKERS_BUCKET,
    cancel_subject,
    consumer_name,
    event_subject,
    lane_filter,
    lane_of,
    task_id_of_event_subject,
    work_subject,
)
from mesh.fabric._topology import Topology, ensure_topology

__all__ = [
    "CANCEL_PREFIX",
    "EVENTS_PREFIX",
    "EVENTS_STREAM",
    "IDEMPOTENCY_BUCKET",
    "LANE_ORDER",
    "ORDERED_STREAM",
    "ORDER_KEYS_BUCKET",
    "POOLS",
    "SCALE_PREFIX",
    "TERMINAL_STATES",
    "TOKEN_RE",
    "WORKERS_BUCKET",
    "WORK_PREFIX",
    "WORK_STREAM",
    "ChainMoved",
    "EventLog",
    "KeySequencer",
    "StoredEvent",
    "Topology",
    "cancel_subject",
    "connect",
    "consumer_name",
    "ensure_topology",
    "event_subject",
    "fold",
    "key_token",
    "lane_filter",
    "lane_of",
    "task_id_of_event_subject",
    "work_subject",
]
