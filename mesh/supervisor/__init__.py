"""Local mesh supervision: the process plan, supervised children, the supervisor."""

from mesh.supervisor._autoscaler import LocalAutoscaler
from mesh.supervisor._binaries import find_binary, guarded
from mesh.supervisor._child import Child, ChildState
from mesh.supervisor._cpu import CpuLimiter, open_cpu_limiter, probe_cpu_limiter
from mesh.supervisor._credentials import admin_key
from mesh.supervisor._gpu import GpuMemory
from mesh.supervisor._hosts import HostError, IdentityError, export_identity, import_identity, this_host
from mesh.supervisor._plan import (
    CREDENTIAL_LIMIT,
    NO_LIMIT,
    TENANT_LIMIT,
    Health,
    Plan,
    ProcessSpec,
    build_plan,
    free_port,
    pool_worker_spec,
)
from mesh.supervisor._probe import Probe
from mesh.supervisor._security import MeshSecurity
from mesh.supervisor._supervisor import Supervisor
from mesh.supervisor._triton import check_model_repositories

__all__ = [
    "CREDENTIAL_LIMIT",
    "NO_LIMIT",
    "TENANT_LIMIT",
    "Child",
    "ChildState",
    "CpuLimiter",
    "GpuMemory",
    "Health",
    "HostError",
    "IdentityError",
    "LocalAutoscaler",
    "MeshSecurity",
    "Plan",
    "Probe",
    "ProcessSpec",
    "Supervisor",
    "admin_key",
    "build_plan",
    "check_model_repositories",
    "export_identity",
    "find_binary",
    "free_port",
    "guarded",
    "import_identity",
    "open_cpu_limiter",
    "pool_worker_spec",
    "probe_cpu_limiter",
    "this_host",
]
