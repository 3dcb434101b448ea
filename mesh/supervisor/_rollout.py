"""What applying a new process table to a running one does: the steps, in order, and what each costs.

Two plans of one mesh (the new one built with the running one's ports, `Plan.ports()`) are
compared process by process: one whose spec is equal is left alone (a spec holds its command,
environment, caps and a digest of the files it reads at start), one that differs restarts, one
that is new starts, one that is gone stops. Components go in the plan's dependency order — the
scheduler, inference, workers one at a time, gateways one at a time, Envoy last — and the
processes that leave stop after everything else has started. What cannot change in place is
refused with what to do instead: the broker (its nodes, their store and fsync: `tidemesh up`
again on the same state dir keeps every stream), security on or off, the state dir.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from mesh.supervisor._plan import Plan, ProcessSpec

Action = Literal["start", "restart", "stop"]


def _is_broker(name: str) -> bool:
    return name == "nats" or name.startswith("nats-")


@dataclass(frozen=True)
class Step:
    action: Action
    name: str
    cost: str

    def line(self) -> str:
        return f"{self.action} {self.name}: {self.cost}"


@dataclass(frozen=True)
class Rollout:
    steps: tuple[Step, ...]
    refused: tuple[str, ...]  # what cannot change in place, each with what to do instead

    @property
    def digest(self) -> str:
        """What a plan showed: an apply refuses when the live mesh would now do something else."""
        canonical = json.dumps([asdict(s) for s in self.steps] + list(self.refused), sort_keys=True)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> dict[str, object]:
        return {"steps": [asdict(s) for s in self.steps], "refused": list(self.refused), "digest": self.digest}


def _cost(action: Action, spec: ProcessSpec, plan: Plan) -> str:
    gateways = sum(p.name.startswith("gateway") for p in plan.processes)
    name = spec.name
    if action == "stop":
        what = "stops"
    elif action == "start":
        return "starts; nothing running is touched"
    else:
        what = "restarts"
    if name == "envoy":
        return f"{what}: open connections at the front door drop and clients reconnect (a few seconds)"
    if name.startswith("gateway"):
        if gateways > 1:
            return f"{what}: its callers' streams resume on another gateway"
        return f"{what}: the only gateway, so calls are refused (UNAVAILABLE, retried by clients) for a few seconds"
    if name == "scheduler":
        return f"{what}: admission pauses for a few seconds (submits are retried), queued work waits"
    if name.startswith("worker"):
        return f"{what}: its running steps drain (up to its grace), the rest is handed back and redelivered"
    if name.startswith("inference"):
        return f"{what}: model calls go to the other replicas or wait; its models load again"
    if name == "triton":
        return f"{what}: its models load again; calls fall back to the CPU model meanwhile"
    return what


def rollout(old: Plan, new: Plan) -> Rollout:
    """The steps that take a mesh running `old` to `new` (see the module's doc)."""
    refused = []
    if old.state_dir != new.state_dir:
        refused.append(
            f"state_dir {old.state_dir} → {new.state_dir}: a mesh keeps one; start another with `tidemesh up`"
        )
    if old.secure != new.secure:
        refused.append(
            "security (experiments.insecure) cannot change in a running mesh: stop it and `tidemesh up` again"
        )
    before = {p.name: p for p in old.processes}
    after = {p.name: p for p in new.processes}
    brokers = sorted({n for n in (*before, *after) if _is_broker(n) and before.get(n) != after.get(n)})
    if brokers:
        refused.append(
            f"the broker ({', '.join(brokers)}: cluster size, fsync or its config) cannot change in place: "
            "stop the mesh and `tidemesh up -f` the new manifest on the same state dir (every stream is kept)"
        )
    steps = []
    for spec in new.processes:
        if _is_broker(spec.name):
            continue
        if spec.name not in before:
            steps.append(Step("start", spec.name, _cost("start", spec, new)))
        elif before[spec.name] != spec:
            steps.append(Step("restart", spec.name, _cost("restart", spec, new)))
    # Envoy last: it fronts what restarted before it.
    steps.sort(key=lambda s: s.name == "envoy")
    for spec in old.processes:
        if spec.name not in after and not _is_broker(spec.name):
            steps.append(Step("stop", spec.name, _cost("stop", spec, old)))
    return Rollout(tuple(steps), tuple(refused))
