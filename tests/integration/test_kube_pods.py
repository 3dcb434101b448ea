"""Rendered pods, run on this machine: each pod's files made by `mesh.kube credentials` and staged by
its init step; the rendered NATS configs and Envoy bootstrap pass the real servers' checks; a NATS
node and a scheduler started from a pod's files and command serve each other over TLS, and the
pods' own probes say so."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.fabric import connect
from mesh.kube import KubeOptions, Rendering, render_kubernetes
from mesh.kube._credentials import issue
from mesh.kube._names import GRPC_PORT, NATS_CLIENT_PORT, NATS_MONITOR_PORT, OPS_PORT
from mesh.manifest import resolve
from mesh.security import Transport
from mesh.supervisor import find_binary, free_port
from tests._kube import localise, materialise, script_leaves, workload
from tests.conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HEADER = {"apiVersion": "tidemesh.dev/v1alpha1", "kind": "Mesh"}
NAMESPACE = "mesh"


def _filled(document: dict[str, object], state: Path) -> Rendering:
    rendering = render_kubernetes(resolve(document, "test"), KubeOptions(namespace=NAMESPACE))
    issue(state, state / "kubernetes" / NAMESPACE, script_leaves(rendering.script), dt.timedelta(days=1))
    return rendering


@pytest.mark.parametrize("nodes", [1, 3])
def test_the_rendered_nats_config_passes_nats_servers_check(nodes: int, tmp_path: Path) -> None:
    """`nats-server -t` reads the staged config, its include of the users' block and the TLS files."""
    rendering = _filled({**HEADER, "durability": {"cluster": {"nodes": nodes}}}, tmp_path / "state")
    staged = materialise(rendering, "tidemesh-nats", tmp_path / "state", NAMESPACE, tmp_path / "pod")
    config = staged / "nats.test.conf"  # beside the users' block it includes
    config.write_text(localise((staged / "nats.conf").read_text(), staged, tmp_path))
    checked = subprocess.run(
        [find_binary("nats-server"), "-c", str(config), "-t"],
        env={**os.environ, "POD_NAME": "tidemesh-nats-0"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert checked.returncode == 0, checked.stderr
    assert ("routes: [" in config.read_text()) == (nodes == 3)


def test_the_rendered_envoy_bootstrap_validates_with_its_staged_sds(tmp_path: Path) -> None:
    """`envoy --mode validate` on the bootstrap (mesh.edge) with the SDS files the init step wrote."""
    rendering = _filled(HEADER, tmp_path / "state")
    staged = materialise(rendering, "tidemesh-envoy", tmp_path / "state", NAMESPACE, tmp_path / "pod")
    assert sorted(p.name for p in (staged / "pki" / "envoy-sds").iterdir()) == [
        "tidemesh_edge_cert.yaml",
        "tidemesh_mesh_ca.yaml",
    ]
    config = tmp_path / "envoy.yaml"
    config.write_text(localise((staged / "envoy.yaml").read_text(), staged, tmp_path))
    checked = subprocess.run(
        [find_binary("envoy"), "--mode", "validate", "-c", str(config)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def _probe(command: list[str], staged: Path, scratch: Path, ports: dict[str, str]) -> int:
    """The pod's probe command, run here (its paths and ports made local): its exit status."""
    argv = [localise(arg, staged, scratch, ports) for arg in command]
    assert argv[:4] == ["python", "-m", "mesh.kube", "probe"]
    probe = await asyncio.create_subprocess_exec(
        sys.executable, *argv[1:], stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(probe.wait(), 20)


async def _stop(process: asyncio.subprocess.Process | None) -> None:
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 20)
    except TimeoutError:
        process.kill()
        await process.wait()


async def test_a_node_and_a_scheduler_from_their_pods_serve_each_other_and_their_probes_say_so(
    tmp_path: Path,
) -> None:
    """NATS from its pod's staged config takes the scheduler's staged user over TLS (a leaf issued for
    the cluster); the scheduler runs its pod's command (the plan's) against it; each pod's readiness
    probe fails before its process answers and passes after."""
    state = tmp_path / "state"
    rendering = _filled(HEADER, state)
    client, monitor, grpc, ops = free_port(), free_port(), free_port(), free_port()
    nats_host = f"tidemesh-nats-0.tidemesh-nats.{NAMESPACE}.svc.cluster.local:{NATS_CLIENT_PORT}"
    ports = {
        f"0.0.0.0:{NATS_CLIENT_PORT}": f"127.0.0.1:{client}",
        f"127.0.0.1:{NATS_MONITOR_PORT}": f"127.0.0.1:{monitor}",
        nats_host: f"127.0.0.1:{client}",
        f"0.0.0.0:{GRPC_PORT}": f"127.0.0.1:{grpc}",
        f"0.0.0.0:{OPS_PORT}": f"127.0.0.1:{ops}",
        f"127.0.0.1:{OPS_PORT}": f"127.0.0.1:{ops}",
    }
    nats_pod = materialise(rendering, "tidemesh-nats", state, NAMESPACE, tmp_path / "nats-pod")
    (nats_pod / "nats.conf").write_text(localise((nats_pod / "nats.conf").read_text(), nats_pod, tmp_path, ports))
    nats_container = workload(rendering, "tidemesh-nats")["spec"]["template"]["spec"]["containers"][0]
    scheduler_pod = materialise(rendering, "tidemesh-scheduler", state, NAMESPACE, tmp_path / "scheduler-pod")
    scheduler_container = workload(rendering, "tidemesh-scheduler")["spec"]["template"]["spec"]["containers"][0]
    nats_probe = nats_container["readinessProbe"]["exec"]["command"]
    scheduler_probe = scheduler_container["readinessProbe"]["exec"]["command"]
    assert await _probe(nats_probe, nats_pod, tmp_path, ports) == 1  # nothing listens yet
    assert await _probe(scheduler_probe, scheduler_pod, tmp_path, ports) == 1
    command = [localise(arg, nats_pod, tmp_path, ports) for arg in nats_container["command"]]
    quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
    nats = await asyncio.create_subprocess_exec(
        find_binary("nats-server"), *command[1:], env={**os.environ, "POD_NAME": "tidemesh-nats-0"}, **quiet
    )
    scheduler = None
    try:

        async def node_ready() -> bool:
            return await _probe(nats_probe, nats_pod, tmp_path, ports) == 0

        await eventually(node_ready, 15, "the NATS pod's probe")
        transport = Transport.of(scheduler_pod / "pki", "scheduler")
        connection = await connect(
            f"tls://127.0.0.1:{client}",
            name="k8s-test",
            tls=transport.client_ssl_context(),
            user_file=scheduler_pod / "nats" / "scheduler.json",
        )
        try:  # connected means the node took this user's password, over TLS it verified
            await connection.flush(timeout=5)
            assert connection.is_connected
        finally:
            await connection.close()
        argv = [localise(arg, scheduler_pod, tmp_path, ports) for arg in scheduler_container["command"]]
        assert argv[:3] == ["python", "-m", "services.scheduler"]
        scheduler = await asyncio.create_subprocess_exec(sys.executable, *argv[1:], **quiet)

        async def scheduler_ready() -> bool:
            assert scheduler is not None and scheduler.returncode is None, "the scheduler exited"
            return await _probe(scheduler_probe, scheduler_pod, tmp_path, ports) == 0

        await eventually(scheduler_ready, 30, "the scheduler pod's probe")
    finally:
        await _stop(scheduler)
        await _stop(nats)
