"""Presets: dev, staging and prod, each an overlay of choices on the defaults, each choice explained.

A manifest names one (``preset: prod``) and the fields it gives override the preset's. No preset
turns TLS or authentication off: plaintext is ``experiments.insecure`` and stays an experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesh.manifest._fields import merge


@dataclass(frozen=True)
class Choice:
    """One field a preset sets, and why."""

    path: str
    value: Any
    why: str


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    choices: tuple[Choice, ...]

    def overlay(self) -> dict[str, Any]:
        """The preset as a partial document (what it sets, nested)."""
        out: dict[str, Any] = {}
        for choice in self.choices:
            *parents, leaf = choice.path.split(".")
            nested: dict[str, Any] = {leaf: choice.value}
            for parent in reversed(parents):
                nested = {parent: nested}
            out = merge(out, nested)
        return out

    def choice(self, path: str) -> Choice | None:
        return next((c for c in self.choices if c.path == path), None)


DEV = Preset(
    "dev",
    "one laptop: one node, fast writes, quick redelivery, short retention; TLS and auth stay on",
    (
        Choice(
            "durability.fsync",
            "interval",
            "a crash on a laptop may lose the last two minutes of acknowledged writes, which is fine for work you "
            "can resubmit; the mesh runs about 2.5 times as many tasks a second (bench/results/durability.md)",
        ),
        Choice("durability.cluster.nodes", 1, "one nats-server: nothing to lose a quorum over, least memory"),
        Choice(
            "durability.ackWaitSeconds",
            10.0,
            "a worker you kill while iterating has its item redelivered in 10 s instead of 30",
        ),
        Choice("durability.retention.eventsHours", 24.0, "a day of task history is what a dev loop looks back on"),
        Choice(
            "durability.retention.deadLettersHours", 72.0, "dead letters of an experiment matter for days, not weeks"
        ),
        Choice("endpoints.public.host", "127.0.0.1", "the front door serves this machine only"),
        Choice(
            "tenants.defaults.maxQueued",
            10_000,
            "a runaway submit loop stops at 10 000 queued items instead of filling the laptop's disk",
        ),
        Choice("policies.mode", "audit", "policy findings are recorded, never in the way while you iterate"),
        Choice("endpoints.public.auth.stepUp", "off", "no authenticator app between you and a purge on a laptop"),
    ),
)

STAGING = Preset(
    "staging",
    "production's durability and security at a smaller size: an R3 cluster, fsync always, one of each service",
    (
        Choice(
            "durability.fsync",
            "always",
            "the same durability as production, so what is measured here holds there",
        ),
        Choice(
            "durability.cluster.nodes",
            3,
            "an R3 cluster, as in production: node loss, leader elections and quorum latency show up here first",
        ),
        Choice("durability.ackWaitSeconds", 30.0, "production's redelivery timing"),
        Choice("durability.retention.eventsHours", 72.0, "three days: enough to look into last night's test run"),
        Choice("durability.retention.deadLettersHours", 336.0, "two weeks to diagnose and replay what failed"),
        Choice(
            "endpoints.public.host",
            "0.0.0.0",
            "testers and CI reach it over the network; TLS and auth are on for every caller",
        ),
        Choice("policies.mode", "warn", "a change that would be blocked in production is said here, not blocked"),
        Choice(
            "endpoints.public.auth.stepUp",
            "required",
            "purges, audit exports and admin keys ask for a second factor, as in production",
        ),
    ),
)

PROD = Preset(
    "prod",
    "durable and redundant: an R3 cluster, fsync always, two of each service, tighter per-tenant limits, "
    "resource caps, policies enforced",
    (
        Choice(
            "durability.fsync",
            "always",
            "no acknowledged write is lost in a crash (Jepsen showed the lazy default can lose them); it costs "
            "throughput, which the scheduler's atomic batches (one fsync each) win back in part",
        ),
        Choice(
            "durability.cluster.nodes",
            3,
            "three nodes, every stream R3: one node can fail or restart without losing a write or stopping the mesh",
        ),
        Choice("durability.ackWaitSeconds", 30.0, "tolerates a paused worker (GC, a busy host) before work moves"),
        Choice("durability.retention.eventsHours", 168.0, "a week of task history and results"),
        Choice("durability.retention.deadLettersHours", 720.0, "thirty days to diagnose, replay or purge"),
        Choice("endpoints.public.host", "0.0.0.0", "the front door faces the network; TLS and auth are on"),
        Choice("endpoints.public.gateways", 2, "a gateway can restart while the other keeps the door open"),
        Choice("pools.general.workers", 2, "a worker can crash or restart while another keeps pulling"),
        Choice("inference.replicas", 2, "an inference replica can restart while calls go to the other"),
        Choice(
            "tenants.defaults.submitsPerSecond",
            500.0,
            "one tenant gets a share of an R3 mesh's durable writes (a few thousand a second with fsync always), "
            "not all of them",
        ),
        Choice("tenants.defaults.submitBurst", 1000.0, "two seconds of a tenant's rate at once"),
        Choice(
            "endpoints.public.limits.credentialSubmitsPerSecond",
            250.0,
            "one leaked or looping key cannot spend its whole tenant's rate",
        ),
        Choice("endpoints.public.limits.credentialBurst", 500.0, "two seconds of a credential's rate at once"),
        Choice(
            "pools.general.caps.memoryMb",
            4096,
            "a leaking step gets its worker restarted (and the task retried, with an alert) before it takes the "
            "host; 4 GiB leaves room for model-sized inputs",
        ),
        Choice(
            "pools.general.caps.cpus",
            2.0,
            "a worker's event loop needs one core at its default concurrency and native code (a BLAS pool, a "
            "subprocess) a second; past two, one busy step would starve the host's other processes",
        ),
        Choice("policies.mode", "enforce", "a change that breaks a rule is blocked, not merely reported"),
        Choice(
            "endpoints.public.auth.stepUp",
            "required",
            "a leaked key alone cannot purge dead letters, export the audit or mint an admin key",
        ),
    ),
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (DEV, STAGING, PROD)}
