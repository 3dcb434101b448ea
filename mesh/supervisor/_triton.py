"""Triton Inference Server from the nvidia-pytriton wheel, run as a plain child process.

The wheel ships `tritonserver`, its Python backend and one backend stub per Python version.
We lay out a backend directory with the stub for this interpreter and start the server on the
project's model repository. Two details matter (see FACTS.md): the stub must load *this*
interpreter's libpython (LD_LIBRARY_PATH), and it finds its site-packages through the `python3`
first on PATH, so this environment's bin directory leads PATH.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mesh.model_repository import MODEL_REPOSITORY, needs, repository_models
from mesh.model_repository import config_name as chosen_config
from mesh.security import LeafFiles

_PROJECT_ROOT = MODEL_REPOSITORY.parents[2]


def _dist_dir() -> Path:
    # Found without importing pytriton: its __init__ pulls in client code (gevent, …) we do not use.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("tritonserver not found: install nvidia-pytriton (make venv does)")
    return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"


def triton_available() -> bool:
    try:
        return (_dist_dir() / "bin" / "tritonserver").is_file()
    except FileNotFoundError:
        return False


def check_model_repositories(repositories: Sequence[Path]) -> list[Path]:
    """The user's repositories, resolved; ValueError naming the folder if one is not a model
    repository, or a model name is taken (Triton wants names unique across repositories)."""
    owners = {name: MODEL_REPOSITORY for name in repository_models(MODEL_REPOSITORY)}
    resolved = []
    for given in repositories:
        repository = Path(given).expanduser().resolve()
        if not repository.is_dir():
            raise ValueError(f"--model-repository {given}: no such folder")
        models = repository_models(repository)
        if not models:
            raise ValueError(
                f"--model-repository {given}: no model in it (a model is a folder with config.pbtxt "
                "and numbered version folders, e.g. classifier/config.pbtxt and classifier/1/model.py)"
            )
        for name in models:
            if name in owners:
                raise ValueError(f"--model-repository {given}: model {name!r} is also in {owners[name]}")
            owners[name] = repository
        resolved.append(repository)
    return resolved


@dataclass(frozen=True)
class TritonLaunch:
    command: list[str]
    env: dict[str, str]


def _trace_args(traces_url: str, ratio: float) -> list[str]:
    """Triton's OpenTelemetry tracing (OTLP/HTTP, which its exporter sends as JSON)."""
    if not traces_url or ratio <= 0:
        return []
    settings = (
        "mode=opentelemetry",
        f"opentelemetry,url={traces_url.removeprefix('http://')}",
        "opentelemetry,resource=service.name=triton",
        "opentelemetry,resource=service.namespace=tidemesh",
        f"rate={max(1, round(1 / ratio))}",
        "level=TIMESTAMPS",
    )
    return [arg for setting in settings for arg in ("--trace-config", setting)]


def triton_launch(
    state_dir: Path,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    model_repository: Path = MODEL_REPOSITORY,
    config_name: str | None = None,
    tls: LeafFiles | None = None,
    model_repositories: Sequence[Path] = (),
    traces_url: str = "",
    trace_ratio: float = 1.0,
    grpc_address: str = "127.0.0.1",
) -> TritonLaunch:
    """The command and environment that serve `model_repository`, and the user's
    `model_repositories` beside it, on the given ports.

    Models are under explicit control: every model of every repository is loaded at start (but
    those whose config says ``load_at_start: "false"``, see `mesh.model_repository`), and after that
    only when asked (`load_model` / `unload_model` over gRPC) — Triton never loads or unloads one
    by itself. A model name must be unique across the repositories.

    `config_name` (default: $TIDEMESH_TRITON_CONFIG) picks each model's ``configs/<name>.pbtxt``
    where it has one — ``gpu`` runs the models on NVIDIA GPUs. With `tls` (its leaf), gRPC is
    mutual TLS under the mesh's root, and the HTTP and metrics endpoints are off: Triton cannot
    put TLS on them, and they would answer (and run inference for) anyone on the host. Triton
    checks that a caller's certificate comes from the root; it has no allow-list by identity.

    `traces_url` (an OTLP/HTTP collector's ``.../v1/traces``): Triton records a span per request
    with OpenTelemetry and continues the trace context the inference service sends with each
    call; `trace_ratio` is the share of requests it traces (its rate is 1 in round(1/ratio)).
    `grpc_address` is where gRPC listens: loopback on one host, every address in a pod (`mesh.kube`)."""
    config_name = chosen_config(config_name)
    dist = _dist_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise FileNotFoundError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    backends = state_dir / "triton" / "backends"
    python_backend = backends / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    for link, target in (
        ("libtriton_python.so", dist / "backends" / "python" / "libtriton_python.so"),
        ("triton_python_backend_utils.py", dist / "backends" / "python" / "triton_python_backend_utils.py"),
        ("triton_python_backend_stub", stub),
    ):
        path = python_backend / link
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)
    repositories = [model_repository, *(Path(extra).resolve() for extra in model_repositories)]
    at_start = [
        name
        for repository in repositories
        for name in repository_models(repository)
        if needs(repository / name, config_name).load_at_start
    ]
    command = [
        str(dist / "bin" / "tritonserver"),
        *(f"--model-repository={repository}" for repository in repositories),
        "--model-control-mode=explicit",
        *(f"--load-model={name}" for name in at_start),
        f"--backend-directory={backends}",
        f"--cache-directory={dist / 'caches'}",
        f"--grpc-port={grpc_port}",
        f"--grpc-address={grpc_address}",
        *(
            [
                "--grpc-use-ssl=true",
                "--grpc-use-ssl-mutual=true",
                f"--grpc-server-cert={tls.cert}",
                f"--grpc-server-key={tls.key}",
                f"--grpc-root-cert={tls.ca}",
                "--allow-http=false",
                "--allow-metrics=false",
            ]
            if tls
            else [
                f"--http-port={http_port}",
                "--http-address=127.0.0.1",
                f"--metrics-port={metrics_port}",
            ]
        ),
        "--allow-gpu-metrics=false",
        # Ready means answering: under explicit control an unloaded model is normal, not a fault
        # (per-model readiness comes from the repository index).
        "--strict-readiness=false",
        "--exit-on-error=true",
        # In-flight requests get this long on SIGTERM, inside the supervisor's 10 s grace.
        "--exit-timeout-secs=5",
        "--log-info=true",
        *([f"--model-config-name={config_name}"] if config_name else []),
        *_trace_args(traces_url, trace_ratio),
    ]
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env_bin = str(Path(sys.executable).parent)
    env = {
        "LD_LIBRARY_PATH": ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p),
        "PATH": f"{env_bin}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": ":".join(p for p in (str(_PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    return TritonLaunch(command, env)
