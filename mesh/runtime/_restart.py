"""Why this process was (re)started: the supervisor's word, announced once connected.

The supervisor (`mesh.supervisor`) starts a process it restarts with ``TIDEMESH_RESTART_REASON``
set to a JSON object — ``reason`` (``exited``, ``unresponsive``, ``memory_cap`` or
``gpu_memory_cap``), the exit code, the figures that tripped it (``rss_mb`` or ``gpu_mb``, and
``cap_mb``), and when. The new process logs it, counts it (``tidemesh_restarts_total{component,reason}``,
and when in ``tidemesh_last_restart_timestamp_seconds``) and raises an alert on ``tm.alert.restart``
with the runbook that explains it. A first start has no reason and announces nothing.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from nats.aio.client import Client

from mesh.fabric import RESTART_ALERT_SUBJECT
from mesh.telemetry import METRICS, get_logger

log = get_logger(__name__)

RESTART_REASON_ENV = "TIDEMESH_RESTART_REASON"
REASONS = ("exited", "unresponsive", "memory_cap", "gpu_memory_cap")
RUNBOOK = "docs/runbooks/restarts.md"


def restart_reason(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """What the supervisor said of the last life of this process (None on a first start, or when
    what it said is not a reason this module knows)."""
    text = (os.environ if environ is None else environ).get(RESTART_REASON_ENV, "")
    if not text:
        return None
    try:
        reason = json.loads(text)
    except ValueError:
        return None
    return reason if isinstance(reason, dict) and reason.get("reason") in REASONS else None


async def announce_restart(nc: Client, component: str, instance: str) -> dict[str, Any] | None:
    """Log, count and alert why this process restarted; returns the alert sent (None: none)."""
    reason = restart_reason()
    if reason is None:
        return None
    alert = {"component": component, "instance": instance, **reason, "runbook": RUNBOOK}
    METRICS.restarts.labels(component, reason["reason"]).inc()
    at = reason.get("at")
    # A new process's counter starts at 1, which Prometheus' increase() cannot tell from an old
    # one: the time of the restart is what an alert can read.
    METRICS.last_restart.labels(component, reason["reason"]).set(at if isinstance(at, (int, float)) else time.time())
    log.warning("restarted by the supervisor", extra={"why": reason["reason"], **alert})
    await nc.publish(RESTART_ALERT_SUBJECT, json.dumps(alert).encode())
    return alert
