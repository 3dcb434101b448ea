"""Resource caps beyond memory: the CPU limiter's choice (cgroup v2, v1, affinity) from a host's
mounts, the files each writes under a fake cgroup root, removal and the sweep of dead meshes' groups;
the GPU-memory watch through a fake NVML (kill, restart reason, the frameworks' variables); the plan
and manifest carrying the caps; and every preset's defaults within its caps."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clients.cli._config import host_caps
from mesh.kube import KubeOptions, render_kubernetes
from mesh.manifest import PRESETS, plan_arguments, resolve
from mesh.manifest._compile import observe
from mesh.runtime import restart_reason
from mesh.supervisor import Child, build_plan, open_cpu_limiter, pool_worker_spec
from mesh.supervisor._cpu import (
    PARENT,
    Affinity,
    CgroupV1,
    CgroupV2,
    Mount,
    candidates,
    cgroup_mounts,
    own_group,
    probe_cpu_limiter,
    quota_us,
)
from mesh.supervisor._gpu import CAP_ENV, GpuMemory, framework_env, framework_hint_bytes
from mesh.supervisor._plan import WORKER_AT_REST_MB, Health, ProcessSpec, cap_for, check_cpu_caps

HEADER = {"apiVersion": "tidemesh.dev/v1alpha1", "kind": "Mesh"}
MIB = 1 << 20

# -- choosing a limiter ---------------------------------------------------------------------------------

_HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def _host(tmp: Path, mountinfo: str, cgroup: str) -> tuple[Path, Path]:
    (tmp / "mountinfo").write_text(mountinfo.replace("/sys/fs/cgroup", str(tmp / "cg")))
    (tmp / "cgroup").write_text(cgroup)
    return tmp / "mountinfo", tmp / "cgroup"


def test_a_hybrid_host_whose_cpu_controller_is_on_v1_gets_the_v1_limiter(tmp_path: Path) -> None:
    """This machine's shape: cgroup2 mounted without controllers, cpu on v1 → v1, saying why not v2."""
    mountinfo, cgroup = _host(tmp_path, _HYBRID, "4:memory:/x\n1:cpu:/\n0::/\n")
    (tmp_path / "cg" / "unified").mkdir(parents=True)
    (tmp_path / "cg" / "unified" / "cgroup.controllers").write_text("\n")
    limiters, why = candidates(mountinfo, cgroup)
    assert [type(limiter) for limiter in limiters] == [CgroupV1]
    assert limiters[0].base == tmp_path / "cg" / "cpu" and limiters[0].parent == tmp_path / "cg" / "cpu" / PARENT
    assert why == [
        f"cgroup v2: no cpu controller in {tmp_path / 'cg' / 'unified'} (it is bound to cgroup v1, or not delegated)"
    ]


def test_a_v2_host_with_the_cpu_controller_gets_the_v2_limiter_under_its_own_group(tmp_path: Path) -> None:
    """cgroup v2 only: the limiter nests under the supervisor's own group (from /proc/self/cgroup)."""
    mountinfo, cgroup = _host(tmp_path, "41 23 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/ci/job-7\n")
    own = tmp_path / "cg" / "ci" / "job-7"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    limiters, why = candidates(mountinfo, cgroup)
    assert [type(limiter) for limiter in limiters] == [CgroupV2] and limiters[0].base == own
    assert why == ["cgroup v1: its cpu controller is not mounted"]


def test_no_cgroup_at_all_falls_back_to_affinity_and_says_it_is_approximate(tmp_path: Path) -> None:
    mountinfo, cgroup = _host(tmp_path, "22 1 0:5 / /proc rw - proc proc rw\n", "0::/\n")
    limiter = open_cpu_limiter(candidates(mountinfo, cgroup))
    assert isinstance(limiter, Affinity) and not limiter.exact
    assert limiter.note.startswith("APPROXIMATE (cgroup v2: not mounted; cgroup v1: its cpu controller is not mounted)")
    assert probe_cpu_limiter(candidates(mountinfo, cgroup))[:2] == ("affinity", False)


def test_a_limiter_that_cannot_open_is_passed_over_naming_why(tmp_path: Path) -> None:
    """A v2 group holding processes refuses +cpu below it (EBUSY): the next one is tried, then affinity."""

    class Refused(CgroupV2):
        def _prepare(self, group: Path) -> None:
            raise OSError(errno.EBUSY, "Device or resource busy", str(group / "cgroup.subtree_control"))

    limiter = open_cpu_limiter(([Refused(tmp_path)], []))
    assert isinstance(limiter, Affinity)
    assert "cgroup-v2: Device or resource busy" in limiter.note and "cgroup.subtree_control" in limiter.note
    assert not (tmp_path / PARENT).exists()


def test_own_group_strips_the_mounts_root(tmp_path: Path) -> None:
    """A bind mount of /docker/abc shows that group at its mount point: the path is taken below it."""
    mount = Mount(tmp_path, "/docker/abc", 1)
    (tmp_path / "cgroup").write_text("3:cpu,cpuacct:/docker/abc/inner\n")
    assert own_group(mount, tmp_path / "cgroup") == tmp_path / "inner"
    assert cgroup_mounts(Path("/proc/self/mountinfo")) is not None  # this host's parses


def test_probe_says_which_limiter_without_writing(tmp_path: Path) -> None:
    base = tmp_path / "cpu"
    base.mkdir()
    kind, exact, note = probe_cpu_limiter(([CgroupV1(base)], []))
    assert (kind, exact) == ("cgroup-v1", True) and str(base / PARENT) in note
    assert list(base.iterdir()) == []  # nothing made
    gone = probe_cpu_limiter(([CgroupV1(tmp_path / "missing")], ["cgroup v2: not mounted"]))
    assert gone[:2] == ("affinity", False) and "missing is not writable" in gone[2]


# -- the cgroup files -------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _fake_rmdir(group: Path) -> None:
    """cgroupfs's rmdir on a plain folder: EBUSY while a live process is listed, then gone with its files."""
    procs = group / "cgroup.procs"
    if procs.exists() and any(_alive(int(pid)) for pid in procs.read_text().split()):
        raise OSError(errno.EBUSY, "Device or resource busy", str(group))
    if any(child.is_dir() for child in group.iterdir()):
        raise OSError(errno.EBUSY, "Device or resource busy", str(group))
    for child in group.iterdir():
        child.unlink()
    group.rmdir()


def test_quota_is_cores_times_the_period_at_least_the_kernels_minimum() -> None:
    assert quota_us(0.2) == 20_000 and quota_us(1.5) == 150_000 and quota_us(0.001) == 1_000


def test_v1_writes_quota_and_period_moves_the_pid_and_removes_the_group_killing_leftovers(tmp_path: Path) -> None:
    limiter = CgroupV1(tmp_path, remove=_fake_rmdir, owner=(os.getpid(), 1))
    limiter.open()
    assert limiter.mesh.parent == tmp_path / PARENT and limiter.mesh.is_dir()
    leftover = subprocess.Popen(["sleep", "30"])
    try:
        limiter.limit("worker-1", leftover.pid, 0.2)
        group = limiter.mesh / "worker-1"
        assert (group / "cpu.cfs_period_us").read_text() == "100000\n"
        assert (group / "cpu.cfs_quota_us").read_text() == "20000\n"
        assert (group / "cgroup.procs").read_text() == f"{leftover.pid}\n"
        limiter.release("worker-1")  # what is left in the group is killed, then it goes
        assert leftover.wait(timeout=5) == -9 and not group.exists()
    finally:
        leftover.kill()
        leftover.wait()
    limiter.close()
    assert not limiter.mesh.exists() and (tmp_path / PARENT).is_dir()  # the shared parent stays


def test_v2_enables_the_cpu_controller_down_to_the_mesh_and_writes_cpu_max(tmp_path: Path) -> None:
    for folder in (tmp_path, tmp_path / PARENT):
        folder.mkdir(exist_ok=True)
        (folder / "cgroup.subtree_control").write_text("\n")
    limiter = CgroupV2(tmp_path, remove=_fake_rmdir, owner=(os.getpid(), 1))
    # cgroupfs makes a new group's files itself: a fake one needs its subtree_control first
    original_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        original_mkdir(self, *args, **kwargs)
        if not (self / "cgroup.subtree_control").exists():
            (self / "cgroup.subtree_control").write_text("\n")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "mkdir", mkdir)
        limiter.open()
        limiter.limit("worker-inference-1", 4242, 1.5)
    for folder in (tmp_path, tmp_path / PARENT, limiter.mesh):
        assert (folder / "cgroup.subtree_control").read_text() == "+cpu\n", folder
    group = limiter.mesh / "worker-inference-1"
    assert (group / "cpu.max").read_text() == "150000 100000\n"
    assert (group / "cgroup.procs").read_text() == "4242\n"
    limiter.close()
    assert not limiter.mesh.exists()


def test_a_restart_moves_the_new_pid_into_the_same_group(tmp_path: Path) -> None:
    limiter = CgroupV1(tmp_path, remove=_fake_rmdir, owner=(os.getpid(), 1))
    limiter.open()
    limiter.limit("worker-1", 111, 0.5)
    limiter.limit("worker-1", 222, 0.5)
    assert (limiter.mesh / "worker-1" / "cgroup.procs").read_text() == "222\n"
    assert [p.name for p in limiter.mesh.iterdir()] == ["worker-1"]
    limiter.close()


def test_opening_sweeps_dead_meshes_groups_and_leaves_live_or_busy_ones(tmp_path: Path) -> None:
    """Named <pid>-<start ticks>-<nonce>: a dead owner's empty groups go; a live owner's stay, and so
    does a dead owner's group that still holds a live process (logged)."""
    parent = tmp_path / PARENT
    ticks = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]
    dead = parent / "999999999-1-abc123"
    busy = parent / "999999998-1-def456"
    live = parent / f"{os.getpid()}-{ticks}-0a0b0c"
    reused = parent / f"{os.getpid()}-1-0d0e0f"  # this pid, but a process that started at another time
    for mesh in (dead, busy, live, reused):
        (mesh / "worker-1").mkdir(parents=True)
        (mesh / "worker-1" / "cgroup.procs").write_text("")
    (busy / "worker-1" / "cgroup.procs").write_text(f"{os.getpid()}\n")
    limiter = CgroupV1(tmp_path, remove=_fake_rmdir)
    limiter.open()
    assert sorted(limiter.swept) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists() and busy.exists() and live.exists()
    limiter.close()


def test_affinity_pins_each_child_to_the_ceiling_of_its_cores_round_the_host(tmp_path: Path) -> None:
    pinned: dict[int, set[int]] = {}
    limiter = Affinity("no cgroup here", cores=[0, 1, 2, 3], set_affinity=pinned.__setitem__, proc=tmp_path)
    (tmp_path / "50" / "task" / "50").mkdir(parents=True)
    (tmp_path / "50" / "task" / "51").mkdir(parents=True)
    limiter.limit("worker-1", 50, 1.5)
    limiter.limit("worker-2", 60, 0.2)
    limiter.limit("worker-3", 70, 9)
    assert pinned == {50: {0, 1}, 51: {0, 1}, 60: {2}, 70: {0, 1, 2, 3}}  # every thread; never more than the host
    assert limiter.note.startswith("APPROXIMATE (no cgroup here): each capped worker is pinned to ⌈cpus⌉ of 4 cores")


# -- a child with caps ------------------------------------------------------------------------------------


class _RecordingLimiter:
    kind, exact, note = "fake", True, "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def open(self) -> None:
        pass

    def limit(self, name: str, pid: int, cpus: float) -> None:
        self.calls.append(("limit", name, str(pid), str(cpus)))

    def release(self, name: str) -> None:
        self.calls.append(("release", name))

    def close(self) -> None:
        pass


_NO_HEALTH = Health(url="http://127.0.0.1:9/", host="127.0.0.1", port=9, path="/")


def _spec(tmp: Path, code: str, **caps: Any) -> ProcessSpec:
    (tmp / "logs").mkdir(exist_ok=True)
    return ProcessSpec(name="w", command=[sys.executable, "-c", code, str(tmp)], ports={}, health=_NO_HEALTH, **caps)


async def _until(condition, timeout_s: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_child_is_limited_at_each_spawn_and_released_at_stop(tmp_path: Path) -> None:
    limiter = _RecordingLimiter()
    child = Child(_spec(tmp_path, "import time; time.sleep(30)", cpus=0.5), tmp_path / "logs", cpu=limiter)
    await child.start()
    first = child.pid
    assert child.process is not None
    child.process.kill()  # its supervision restarts it
    await _until(lambda: child.restarts == 1)
    await child.stop(grace_s=2)
    assert limiter.calls == [("limit", "w", str(first), "0.5"), ("limit", "w", str(child.pid), "0.5"), ("release", "w")]


async def test_a_cap_without_its_limiter_or_reader_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a CPU cap needs a CpuLimiter"):
        await Child(_spec(tmp_path, "pass", cpus=1.0), tmp_path / "logs").start()
    with pytest.raises(ValueError, match="a GPU-memory cap needs a GpuMemory reader"):
        await Child(_spec(tmp_path, "pass", gpu_memory_cap_mb=512), tmp_path / "logs").start()


class _FakeNvml:
    """NVML with two GPUs (80 and 40 GiB); `used` is what each pid holds on device 0."""

    def __init__(self) -> None:
        self.used: dict[int, int | None] = {}

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(total=(80 if handle == 0 else 40) << 30)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        if handle:
            return [SimpleNamespace(pid=pid, usedGpuMemory=None) for pid in self.used]  # NVML cannot say
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.used.items()]


# Writes its environment at start (renamed into place, so a reader never sees half a file); its first
# life starts a grandchild (the fake NVML charges it).
_GPU_CHILD = """
import json, os, pathlib, subprocess, sys, time
out = pathlib.Path(sys.argv[1])
lives = sorted(out.glob("life-*"))
env = {k: v for k, v in os.environ.items() if k.startswith(("TIDEMESH_", "CUPY_", "XLA_"))}
if not lives:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (out / "grandchild.tmp").write_text(str(child.pid))
    os.replace(out / "grandchild.tmp", out / "grandchild")  # whole, or not there: the test polls for it
(out / f".life-{len(lives)}").write_text(json.dumps(env))
os.replace(out / f".life-{len(lives)}", out / f"life-{len(lives)}")
time.sleep(60)
"""


async def test_a_child_over_its_gpu_memory_cap_is_killed_restarted_and_told_why(tmp_path: Path) -> None:
    """Its grandchild holds 600 MiB on a GPU (fake NVML) against a 512 MiB cap: SIGKILL, restart with
    reason gpu_memory_cap; the restarted one, holding none, is left alone; both lives got the
    frameworks' limits below the cap."""
    nvml = _FakeNvml()
    gpu = GpuMemory(lambda: nvml)
    assert gpu.available and gpu.note == "NVML, per process tree, on 2 NVIDIA GPU(s)"
    child = Child(_spec(tmp_path, _GPU_CHILD, gpu_memory_cap_mb=512), tmp_path / "logs", gpu=gpu)
    await child.start()
    child.watch(memory_every_s=0.05)
    try:
        await _until(lambda: (tmp_path / "grandchild").exists() and (tmp_path / "life-0").exists())
        nvml.used[int((tmp_path / "grandchild").read_text())] = 600 * MIB
        await _until(lambda: (tmp_path / "life-1").exists())
        assert child.gpu_memory_kills == 1 and child.peak_gpu_bytes == 600 * MIB
        reason = json.loads((tmp_path / "life-1").read_text())["TIDEMESH_RESTART_REASON"]
        told = json.loads(reason)
        assert told["reason"] == "gpu_memory_cap" and told["cap_mb"] == 512 and told["gpu_mb"] == 600.0
        assert told["exit_code"] == -9 and restart_reason({"TIDEMESH_RESTART_REASON": reason}) == told
        first = json.loads((tmp_path / "life-0").read_text())
        assert first[CAP_ENV] == "512" and first["CUPY_GPU_MEMORY_LIMIT"] == str(384 * MIB)
        assert first["XLA_CLIENT_MEM_FRACTION"] == first["XLA_PYTHON_CLIENT_MEM_FRACTION"] == f"{384 / 40 / 1024:.6f}"
        await asyncio.sleep(0.3)  # the restarted one holds nothing on the GPU: left alone
        assert child.gpu_memory_kills == 1 and not (tmp_path / "life-2").exists()
    finally:
        await child.stop(grace_s=2)


def test_without_a_gpu_the_reader_says_why_and_reads_nothing() -> None:
    class LibraryMissing(Exception):
        pass

    LibraryMissing.__name__ = "NVMLError_LibraryNotFound"

    def missing() -> Any:
        raise ImportError("pynvml")

    def no_driver() -> Any:
        return SimpleNamespace(nvmlInit=lambda: (_ for _ in ()).throw(LibraryMissing("NVML Shared Library Not Found")))

    def none() -> Any:
        return SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 0, nvmlShutdown=lambda: None)

    assert GpuMemory(missing).note == "NOT ENFORCED: nvidia-ml-py is not installed, so NVML cannot be read"
    assert GpuMemory(no_driver).note == "nothing to enforce: no NVIDIA GPU (NVML's library is absent: no driver)"
    assert GpuMemory(none).note == "nothing to enforce: no NVIDIA GPU (NVML finds no device)"
    reader = GpuMemory(none)
    assert not reader.available and reader.used_bytes({1, 2}) == 0 and reader.smallest_device_bytes() == 0


def test_the_frameworks_limits_leave_room_for_the_cuda_context_and_respect_the_operators() -> None:
    assert framework_hint_bytes(8192) == 7168 * MIB and framework_hint_bytes(512) == 384 * MIB
    env = framework_env(8192, 80 << 30, {"XLA_CLIENT_MEM_FRACTION": "0.5"})
    assert env == {
        CAP_ENV: "8192",
        "CUPY_GPU_MEMORY_LIMIT": str(7168 * MIB),
        "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.087500",
    }
    assert "XLA_CLIENT_MEM_FRACTION" not in framework_env(1024, 0, {})  # no device memory known: no fraction


# -- the plan and the manifest ------------------------------------------------------------------------------


def test_the_plan_gives_each_worker_the_smallest_cap_of_its_pools(tmp_path: Path) -> None:
    plan = build_plan(
        tmp_path,
        public_port=0,
        workers=1,
        pool_workers={"inference": 1, "ingestion": 1},
        cpu_caps={"*": 2, "inference": 0.5},
        gpu_memory_caps_mb={"inference": 4096},
        insecure=True,
    )
    caps = {spec.name: (spec.cpus, spec.gpu_memory_cap_mb) for spec in plan.processes if spec.pools}
    assert caps == {"worker-1": (0.5, 4096), "worker-inference-1": (0.5, 4096), "worker-ingestion-1": (2.0, 0)}
    assert all(not spec.cpus for spec in plan.processes if not spec.pools)  # only workers are capped
    scaled = pool_worker_spec(plan, "inference", 1)
    assert (scaled.cpus, scaled.gpu_memory_cap_mb) == (0.5, 4096)
    assert type(plan).from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert cap_for(["orchestration"], {"inference": 0.5}) == 0


@pytest.mark.parametrize(
    ("caps", "message"),
    [({"gpu": 1}, "CPU cap for 'gpu': expected one of"), ({"*": 0.001}, "at least 0.01"), ({"*": True}, "cores")],
)
def test_bad_cpu_caps_are_refused_naming_them(caps: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_cpu_caps(caps)


def test_the_manifests_caps_reach_the_plan_and_read_back(tmp_path: Path) -> None:
    manifest = resolve(
        {
            **HEADER,
            "pools": {
                "general": {"caps": {"cpus": 1.5, "gpuMemoryMb": 8192}},
                "inference": {"workers": 1, "caps": {"cpus": 0.25}},
            },
            "experiments": {"insecure": True},
        }
    )
    arguments = plan_arguments(manifest)
    assert arguments["cpu_caps"] == {"inference": 0.25, "*": 1.5}
    assert arguments["gpu_memory_caps_mb"] == {"*": 8192}
    plan = build_plan(tmp_path, **{**arguments, "public_port": 0})
    assert plan.by_name("worker-inference-1").cpus == 0.25 and plan.by_name("worker-1").cpus == 0.25
    observed = observe(plan).document["pools"]
    assert observed["general"]["caps"] == {"cpus": 1.5, "gpuMemoryMb": 8192}
    assert observed["inference"]["caps"] == {"cpus": 0.25}


def test_validate_tells_how_the_caps_would_act_on_this_host() -> None:
    """Only the kinds of cap a manifest sets; here CPU caps by the limiter this host offers."""
    assert host_caps(resolve(HEADER)) == []
    found = host_caps(resolve({**HEADER, "pools": {"inference": {"caps": {"cpus": 1, "gpuMemoryMb": 1024}}}}))
    kind, exact, note = probe_cpu_limiter()
    gpu = GpuMemory()
    assert found == [
        {"cap": "cpus", "how": kind, "exact": exact, "note": note},
        {"cap": "gpuMemoryMb", "how": "nvml", "exact": gpu.available, "note": gpu.note},
    ]


# -- presets: their defaults within their caps -----------------------------------------------------------


@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_every_presets_defaults_are_within_its_caps(preset: str | None, tmp_path: Path) -> None:
    """What "within" can mean here, concretely: each worker a preset starts (and each one its
    autoscaler would add) gets a memory cap that leaves it its resting size (`WORKER_AT_REST_MB`,
    held to the measured one by the CPU-cap integration test), at least the one core its event loop
    takes at the preset's concurrency, and no GPU cap below a CUDA context; a credential's default
    rate and burst fit inside its tenant's; and on Kubernetes no container requests more than its
    limits (the API refuses such a pod)."""
    manifest = resolve({**HEADER, **({"preset": preset} if preset else {})})
    plan = build_plan(tmp_path / "state", **{**plan_arguments(manifest), "public_port": 0})
    workers = [spec for spec in plan.processes if spec.pools]
    workers += [pool_worker_spec(plan, pool, 1) for pool in manifest.pools.by_name()]
    for spec in workers:
        assert spec.memory_cap_mb == 0 or spec.memory_cap_mb >= WORKER_AT_REST_MB, spec.name
        assert spec.cpus == 0 or spec.cpus >= 1, spec.name
        assert spec.gpu_memory_cap_mb == 0 or spec.gpu_memory_cap_mb >= 1024, spec.name
    tenants, limits = manifest.tenants.defaults, manifest.endpoints.public.limits
    assert limits.credential_submits_per_second <= tenants.submits_per_second
    assert limits.credential_burst <= tenants.submit_burst
    if preset == "prod":  # the preset that sets caps sets them on every worker
        assert all(spec.memory_cap_mb and spec.cpus for spec in workers)
    rendering = render_kubernetes(manifest, KubeOptions(), scratch=tmp_path / "kube")
    for document in rendering.objects:
        for container in document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            requests, limited = container["resources"]["requests"], container["resources"]["limits"]
            for resource, request in requests.items():
                if resource in limited:
                    assert _quantity(request) <= _quantity(limited[resource]), (document["metadata"]["name"], resource)


def _quantity(value: Any) -> float:
    text = str(value)
    for suffix, scale in (("Mi", MIB), ("Gi", 1 << 30), ("m", 0.001)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)
