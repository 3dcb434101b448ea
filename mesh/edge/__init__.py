"""tidemesh front door: the Envoy bootstrap as typed xds messages, its YAML rendering, admin helpers.

``python -m mesh.edge render|check`` is the CLI; ``envoy/tidemesh.yaml`` is the checked-in default.
"""

from mesh.edge._bootstrap import (
    GRPC_CLUSTER,
    HTTP_CLUSTER,
    LISTENER_NAME,
    EdgeConfig,
    build_bootstrap,
    read_admin_address,
    render_yaml,
    wait_for_listener_port,
)

__all__ = [
    "GRPC_CLUSTER",
    "HTTP_CLUSTER",
    "LISTENER_NAME",
    "EdgeConfig",
    "build_bootstrap",
    "read_admin_address",
    "render_yaml",
    "wait_for_listener_port",
]
