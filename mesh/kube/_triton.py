"""tritonserver in its pod: the launch `tidemesh up` uses (`triton_launch`), laid out in the pod.

The plan's tritonserver command names a backend folder its launch prepares (links to the Python
backend's stub for this interpreter) and paths of the machine that rendered it; so the pod runs
the same launch where it is, on its own state dir and leaf, listening on every address (its
Service is how the inference replicas reach it), then becomes tritonserver.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mesh.supervisor import MeshSecurity
from mesh.supervisor._triton import triton_launch


def exec_triton(
    state_dir: Path, grpc_port: int, config_name: str, repositories: Sequence[Path], extra: Sequence[str]
) -> None:
    """Replace this process with tritonserver (mutual TLS with the pod's leaf); never returns."""
    leaf = MeshSecurity(state_dir).leaf("triton")
    launch = triton_launch(
        state_dir,
        grpc_port,
        0,  # HTTP and metrics are off under TLS (see triton_launch)
        0,
        config_name=config_name,
        tls=leaf,
        model_repositories=repositories,
        grpc_address="0.0.0.0",
    )
    command = [*launch.command, *extra]
    os.execve(command[0], command, {**os.environ, **launch.env})
