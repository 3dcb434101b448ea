"""The mesh on Kubernetes: a manifest rendered as the objects a platform team applies.

``tidemesh config render kubernetes`` calls `render_kubernetes`; ``python -m mesh.kube`` holds the
steps the rendering runs (probes, the init copy of a pod's secrets, Triton's launch, and the
credentials `create-secrets.sh` makes). See `_render` for what is rendered and why.

The public names load on first use: a probe runs ``python -m mesh.kube probe`` every few seconds in
every pod, and must not import the whole mesh (grpc, Envoy's protos) each time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mesh.kube._names import Names
    from mesh.kube._render import KubeOptions, Rendering, render_kubernetes

__all__ = ["KubeOptions", "Names", "Rendering", "render_kubernetes"]

_HOMES = {
    "KubeOptions": "mesh.kube._render",
    "Rendering": "mesh.kube._render",
    "render_kubernetes": "mesh.kube._render",
    "Names": "mesh.kube._names",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'mesh.kube' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
