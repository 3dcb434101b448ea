"""tidemesh front door: the Envoy bootstrap as typed xds messages, its YAML rendering, admin helpers.

``python -m mesh.edge render|check`` is the CLI; ``envoy/tidemesh.yaml`` is the checked-in default.
With ``EdgeConfig(tls=EdgeTls(sds_dir))`` Envoy reads its certificate through file-based SDS:
`write_sds` publishes a leaf there (before Envoy starts, and after each renewal).
"""

from mesh.edge._bootstrap import (
    GATEWAY_IDENTITY,
    GRPC_CLUSTER,
    HTTP_CLUSTER,
    LISTENER_NAME,
    EdgeConfig,
    EdgeTls,
    admin_get,
    build_bootstrap,
    read_admin_address,
    render_yaml,
    wait_for_listener_port,
    wait_for_listener_port_unix,
)
from mesh.edge._sds import CA_SECRET, CERT_SECRET, check_sds, sds_path, write_sds

__all__ = [
    "CA_SECRET",
    "CERT_SECRET",
    "GATEWAY_IDENTITY",
    "GRPC_CLUSTER",
    "HTTP_CLUSTER",
    "LISTENER_NAME",
    "EdgeConfig",
    "EdgeTls",
    "admin_get",
    "build_bootstrap",
    "check_sds",
    "read_admin_address",
    "render_yaml",
    "sds_path",
    "wait_for_listener_port",
    "wait_for_listener_port_unix",
    "write_sds",
]
