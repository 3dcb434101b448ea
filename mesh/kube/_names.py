"""What every object of a rendering is called, where it lives in the pod, and how it is reached.

Names come from the manifest's ``metadata.name`` (the prefix: ``tidemesh-scheduler``,
``tidemesh-worker-inference``); in-cluster addresses are fully qualified
(``<service>.<namespace>.svc.<domain>``), and a member of a StatefulSet is reached by its own
stable name (``<set>-<ordinal>.<set>.<namespace>.svc.<domain>``). Leaves are issued for these
names (`hosts`), because every gRPC client of the mesh checks the server's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mesh.errors import InvalidArgument

# Inside every pod (see `_stage`): secrets and configuration are copied from their read-only
# mounts into a memory-backed folder laid out like a state dir, owner-only, before the process starts.
POD_STATE = "/var/lib/tidemesh"
SOURCE_DIR = "/etc/tidemesh/source"  # the projected Secret + ConfigMap, read-only
RUN_DIR = "/var/run/tidemesh"  # unix sockets (Envoy's admin)
MODELS_DIR = "/models"  # the user's Triton model repositories (a volume)
NATS_STORE = "/data/jetstream"  # the JetStream store (a volumeClaimTemplate)

# Ports inside the pods: the same on every host, so objects and commands agree.
GRPC_PORT = 50051
OPS_PORT = 8081  # --http: /healthz, /metrics (the gateway's REST, SSE and WebSocket too)
NATS_CLIENT_PORT = 4222
NATS_CLUSTER_PORT = 6222
NATS_MONITOR_PORT = 8222  # loopback only, for the pod's own probe
TRITON_GRPC_PORT = 8001
PUBLIC_PORT_IF_ZERO = 8443

# A DNS-1035 label (Service names), short enough for "<prefix>-worker-post-processing-<hash>".
_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,28}[a-z0-9])?$")


@dataclass(frozen=True)
class Names:
    """Object names and in-cluster host names of one rendering."""

    prefix: str
    namespace: str
    domain: str = "cluster.local"

    def __post_init__(self) -> None:
        if not _LABEL.match(self.prefix):
            raise InvalidArgument(
                "metadata.name",
                f"on Kubernetes the mesh's name prefixes every object and service: lowercase letters, digits "
                f"and '-', starting with a letter, at most 30 characters; got {self.prefix!r}",
            )
        if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", self.namespace):
            raise InvalidArgument(
                "--namespace", f"expected a DNS label (lowercase, digits, '-'), got {self.namespace!r}"
            )
        if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", self.domain):
            raise InvalidArgument("--cluster-domain", f"expected a DNS name, got {self.domain!r}")

    def of(self, workload: str) -> str:
        """An object's name: ``<prefix>-<workload>`` (``tidemesh-scheduler``)."""
        return f"{self.prefix}-{workload}"

    def service_host(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc.{self.domain}"

    def member_host(self, stateful_set: str, ordinal: int) -> str:
        """One StatefulSet member's own name (through its headless service, named like the set)."""
        return f"{stateful_set}-{ordinal}.{self.service_host(stateful_set)}"

    def hosts(self, service: str) -> list[str]:
        """Every name a client may reach `service` (and its members) by: short, namespaced, full."""
        full = self.service_host(service)
        return [service, f"{service}.{self.namespace}", f"{service}.{self.namespace}.svc", full, f"*.{full}"]
