"""The subject layout of the fabric — the one place that spells subjects.

    tm.work.<pool>.<class>.<tenant>   work items (stream TM_WORK, work-queue retention)
    tm.evt.<task_id>                  task events (stream TM_EVENTS, replayable)
    tm.cancel.<task_id>               cancel notices (core NATS, to interrupt a running step)
    tm.scale.<pool>                   scale recommendations (core NATS, ScaleRecommendation)
    tm.bell.<pool>.<class>.<tenant>   doorbell rung after a work item is stored (core NATS)
    tm.live.<task_id>                 best-effort partial events (core NATS, never stored)
    tm.quarantine.<source>            messages set aside as unparseable/invalid (stream TM_QUARANTINE)
    tm.alert.quarantine               announcement of each new quarantine record (core NATS)
    tm.alert.restart                  a supervised process restarted, and why (core NATS)
    tm.alert.policy.<rule>            a policy rule violated by the running mesh, or cleared (core NATS)

Priority lanes are the <class> token; tenant partitions are the <tenant> token. Each
(pool, lane, tenant) partition has its own durable consumer, so workers can pull from
tenants in weighted turn (fair share) rather than in one first-come line per lane.
"""

from __future__ import annotations

import re

from mesh.priority import class_name

WORK_STREAM = "TM_WORK"
EVENTS_STREAM = "TM_EVENTS"
QUARANTINE_STREAM = "TM_QUARANTINE"
IDEMPOTENCY_BUCKET = "tm_idempotency"
WORKERS_BUCKET = "tm_workers"
# Inference backends as each inference service registers them (entries expire with their service).
INFERENCE_BUCKET = "tm_inference"

WORK_PREFIX = "tm.work"
EVENTS_PREFIX = "tm.evt"
CANCEL_PREFIX = "tm.cancel"
SCALE_PREFIX = "tm.scale"
BELL_PREFIX = "tm.bell"
LIVE_PREFIX = "tm.live"
QUARANTINE_PREFIX = "tm.quarantine"
QUARANTINE_ALERT_SUBJECT = "tm.alert.quarantine"
RESTART_ALERT_SUBJECT = "tm.alert.restart"
POLICY_ALERT_PREFIX = "tm.alert.policy"  # + .<rule> (mesh.policy.PolicyWatch)
# Configuration revisions (`mesh.revisions`): the bucket the supervisor keeps them in, and the
# subjects the gateway asks it to plan, apply and abort on (its answers: <prefix>.progress.<id>).
CONFIG_BUCKET = "tm_config"
CONFIG_PREFIX = "tm.config"

POOLS = ("ingestion", "orchestration", "inference", "post-processing")

# Tenant ids and task ids become subject tokens: keep them to a safe alphabet.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def work_subject(pool: str, priority_class: int, tenant: str) -> str:
    return f"{WORK_PREFIX}.{pool}.{class_name(priority_class)}.{tenant}"


def lane_filter(pool: str, lane: str) -> str:
    return f"{WORK_PREFIX}.{pool}.{lane}.*"


def tenant_filter(pool: str, lane: str, tenant: str) -> str:
    return f"{WORK_PREFIX}.{pool}.{lane}.{tenant}"


def bell_subject(work_subject: str) -> str:
    return BELL_PREFIX + work_subject[len(WORK_PREFIX) :]


def bell_filter(pool: str) -> str:
    return f"{BELL_PREFIX}.{pool}.*.*"


def parse_work_subject(subject: str) -> tuple[str, str, str] | None:
    """(pool, lane, tenant) of a work or doorbell subject, or None for anything else."""
    parts = subject.split(".")
    if len(parts) != 5 or f"{parts[0]}.{parts[1]}" not in (WORK_PREFIX, BELL_PREFIX):
        return None
    return parts[2], parts[3], parts[4]


def event_subject(task_id: str) -> str:
    return f"{EVENTS_PREFIX}.{task_id}"


def live_subject(task_id: str) -> str:
    return f"{LIVE_PREFIX}.{task_id}"


def quarantine_subject(source: str) -> str:
    return f"{QUARANTINE_PREFIX}.{source}"


def cancel_subject(task_id: str) -> str:
    return f"{CANCEL_PREFIX}.{task_id}"


def task_id_of_event_subject(subject: str) -> str:
    return subject[len(EVENTS_PREFIX) + 1 :]


def consumer_name(pool: str, lane: str, tenant: str) -> str:
    """The durable consumer of one tenant's partition of one lane."""
    return f"work-{pool}-{lane}-{tenant}"
