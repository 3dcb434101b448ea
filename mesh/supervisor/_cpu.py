"""CPU caps: a worker process held to `ProcessSpec.cpus` cores.

Three ways, tried in this order (`open_cpu_limiter`), each behind the small `CpuLimiter` protocol:

- **cgroup v2** (`cpu.max`): where the supervisor's own cgroup offers the ``cpu`` controller and
  lets it be enabled below (``cgroup.subtree_control``);
- **cgroup v1** (``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``): where the ``cpu`` hierarchy is
  mounted and writable;
- **affinity** (`os.sched_setaffinity` to ⌈cpus⌉ cores): everywhere else. It is approximate — a
  process pinned to two cores may use both, and shares them with whatever else runs there — and
  says so (`tidemesh up`, `tidemesh config validate`).

A cgroup limiter keeps its groups under ``<the supervisor's cgroup>/tidemesh/<mesh>/<child>``:
``<mesh>`` names the supervisor's pid and start time (and a nonce: one process may run several
meshes), so a later start can tell the groups of a dead mesh (`sweep`, at `open`) from a live
one's. A child is moved into its group right after it is spawned (its pid, which `setpriv` keeps,
is written to ``cgroup.procs``; what it starts later is born inside); its group is removed when it
stops (`release`: what is left in it is killed first), and the mesh's group at `close`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import secrets
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mesh.telemetry import get_logger

log = get_logger(__name__)

PERIOD_US = 100_000  # the kernel's default CFS period
MIN_QUOTA_US = 1_000  # the smallest quota the kernel takes (cgroup v1 and v2)
PARENT = "tidemesh"
_MESH_NAME = re.compile(r"^(\d+)-(\d+)-[0-9a-f]+$")


class CpuLimiter(Protocol):
    """Holds processes to a share of the CPU. `open` before the first `limit`, `close` after the last
    `release`; `exact` is False where the cap is only approximated."""

    kind: str  # "cgroup-v2", "cgroup-v1" or "affinity"
    exact: bool

    @property
    def note(self) -> str:
        """How the caps act here, for `tidemesh up`."""
        ...

    def open(self) -> None: ...

    def limit(self, name: str, pid: int, cpus: float) -> None: ...

    def release(self, name: str) -> None: ...

    def close(self) -> None: ...


def quota_us(cpus: float, period_us: int = PERIOD_US) -> int:
    """The CFS quota per period that holds a process to `cpus` cores."""
    return max(MIN_QUOTA_US, round(cpus * period_us))


def _start_ticks(pid: int, proc: Path) -> int | None:
    """When `pid` started (clock ticks since boot; None: no such process)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command's parentheses


def _pids(group: Path) -> list[int]:
    try:
        return [int(line) for line in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


class _Cgroup:
    """What cgroup v1 and v2 share: the tidemesh parent, the mesh's group, sweeping and removal."""

    kind = ""
    exact = True

    def __init__(
        self,
        base: Path,
        proc: Path = Path("/proc"),
        remove: Callable[[Path], None] = os.rmdir,
        owner: tuple[int, int] | None = None,
    ) -> None:
        """`base`: the cgroup the groups go under (the supervisor's own); `remove` removes one
        group (os.rmdir on cgroupfs, where a group's files go with it); `owner`: (pid, start
        ticks) the mesh's group is named after (default: this process)."""
        self.base = base
        self._proc = proc
        self._remove = remove
        pid = owner[0] if owner else os.getpid()
        ticks = owner[1] if owner else (_start_ticks(pid, proc) or 0)
        self.parent = base / PARENT
        self.mesh = self.parent / f"{pid}-{ticks}-{secrets.token_hex(3)}"
        self.swept: list[Path] = []
        self._groups: dict[str, Path] = {}

    @property
    def note(self) -> str:
        return f"{self.kind}: each capped worker in its own group under {self.mesh}"

    def _prepare(self, group: Path) -> None:
        """Make `group` ready to hold child groups (v2 enables the cpu controller below it)."""

    def _set_quota(self, group: Path, cpus: float) -> None:
        raise NotImplementedError

    def open(self) -> None:
        self._prepare(self.base)
        self.parent.mkdir(exist_ok=True)
        self._prepare(self.parent)
        self.swept = self.sweep()
        self.mesh.mkdir()
        self._prepare(self.mesh)

    def sweep(self) -> list[Path]:
        """Remove the groups of meshes whose supervisor is gone (returns them); a group still
        holding processes is left, and logged."""
        removed = []
        for mesh in sorted(self.parent.iterdir()) if self.parent.is_dir() else []:
            found = _MESH_NAME.match(mesh.name)
            if not found or not mesh.is_dir() or _start_ticks(int(found[1]), self._proc) == int(found[2]):
                continue
            groups = [g for g in mesh.iterdir() if g.is_dir()]
            busy = {g.name: _pids(g) for g in groups if _pids(g)}
            if busy:
                log.warning("a dead mesh's CPU groups still hold processes: left", extra={"group": str(mesh), **busy})
                continue
            try:
                for group in groups:
                    self._remove(group)
                self._remove(mesh)
            except OSError as exc:
                log.warning("could not remove a dead mesh's CPU group", extra={"group": str(mesh), "error": str(exc)})
                continue
            removed.append(mesh)
        if removed:
            log.info("removed the CPU groups of dead meshes", extra={"groups": [str(m) for m in removed]})
        return removed

    def limit(self, name: str, pid: int, cpus: float) -> None:
        group = self._groups.get(name) or self.mesh / name
        if name not in self._groups:
            group.mkdir(exist_ok=True)
            self._set_quota(group, cpus)
            self._groups[name] = group
        (group / "cgroup.procs").write_text(f"{pid}\n")

    def release(self, name: str, timeout_s: float = 5.0) -> None:
        """Kill what is left in the child's group, then remove it (retried while the kernel still
        counts exiting processes in it)."""
        group = self._groups.pop(name, None)
        if group is None:
            return
        deadline = time.monotonic() + timeout_s
        while True:
            for pid in _pids(group):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self._remove(group)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning("could not remove a CPU group", extra={"group": str(group), "error": str(exc)})
                    return
            time.sleep(0.02)

    def close(self) -> None:
        for name in list(self._groups):
            self.release(name)
        with contextlib.suppress(FileNotFoundError):
            try:
                self._remove(self.mesh)
            except OSError as exc:
                log.warning("could not remove the mesh's CPU group", extra={"group": str(self.mesh), "error": str(exc)})


class CgroupV2(_Cgroup):
    """``cpu.max`` in a cgroup v2 group per child."""

    kind = "cgroup-v2"

    def can_delegate(self) -> bool:
        """Whether the cpu controller is (or can be) enabled below the base: already on, or the base
        holds no process (a group with processes takes none below it; the real root's exception is not
        told apart from a container's root here, so this errs towards "no")."""
        try:
            enabled = (self.base / "cgroup.subtree_control").read_text().split()
        except OSError:
            return False
        return "cpu" in enabled or not _pids(self.base)

    def _prepare(self, group: Path) -> None:
        enabled = (group / "cgroup.subtree_control").read_text().split()
        if "cpu" not in enabled:
            # EBUSY where `group` holds processes itself and is not the root ("no internal processes").
            (group / "cgroup.subtree_control").write_text("+cpu\n")

    def _set_quota(self, group: Path, cpus: float) -> None:
        (group / "cpu.max").write_text(f"{quota_us(cpus)} {PERIOD_US}\n")


class CgroupV1(_Cgroup):
    """``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` in a cgroup v1 group per child."""

    kind = "cgroup-v1"

    def _set_quota(self, group: Path, cpus: float) -> None:
        (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
        (group / "cpu.cfs_quota_us").write_text(f"{quota_us(cpus)}\n")


class Affinity:
    """⌈cpus⌉ of the supervisor's cores per capped child (each child its own, round the cores):
    an approximation, for hosts without a writable cgroup."""

    kind = "affinity"
    exact = False

    def __init__(
        self,
        why: str = "",
        cores: Sequence[int] | None = None,
        set_affinity: Callable[[int, set[int]], None] = os.sched_setaffinity,
        proc: Path = Path("/proc"),
    ) -> None:
        self.why = why
        self.cores = sorted(cores if cores is not None else os.sched_getaffinity(0))
        self._set = set_affinity
        self._proc = proc
        self._next = 0
        self.placed: dict[str, set[int]] = {}

    @property
    def note(self) -> str:
        return (
            f"APPROXIMATE ({self.why or 'no writable cgroup'}): each capped worker is pinned to ⌈cpus⌉ of "
            f"{len(self.cores)} cores, which it may use in full and shares with other processes"
        )

    def open(self) -> None:
        pass

    def limit(self, name: str, pid: int, cpus: float) -> None:
        chosen = self.placed.get(name)
        if chosen is None:
            count = min(max(1, math.ceil(cpus)), len(self.cores))
            chosen = {self.cores[(self._next + i) % len(self.cores)] for i in range(count)}
            self._next = (self._next + count) % len(self.cores)
            self.placed[name] = chosen
        try:
            threads = [int(t.name) for t in (self._proc / str(pid) / "task").iterdir()]
        except OSError:
            threads = [pid]
        for tid in threads or [pid]:  # the affinity of a pid is its main thread's: set every thread's
            with contextlib.suppress(ProcessLookupError):
                self._set(tid, chosen)

    def release(self, name: str) -> None:
        self.placed.pop(name, None)

    def close(self) -> None:
        self.placed.clear()


@dataclass(frozen=True)
class Mount:
    """A cgroup hierarchy: where it is mounted, its root there, and its version (1 or 2)."""

    point: Path
    root: str
    version: int


def cgroup_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> dict[str, Mount]:
    """The cgroup v2 mount (key "v2") and the v1 mount of the cpu controller (key "v1"), if any."""
    found: dict[str, Mount] = {}
    for line in mountinfo.read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, options = tail[0], tail[2].split(",")
        if fstype == "cgroup2" and "v2" not in found:
            found["v2"] = Mount(Path(fields[4]), fields[3], 2)
        elif fstype == "cgroup" and "cpu" in options and "v1" not in found:
            found["v1"] = Mount(Path(fields[4]), fields[3], 1)
    return found


def own_group(mount: Mount, cgroup_file: Path = Path("/proc/self/cgroup")) -> Path:
    """This process's group in `mount` (its folder under the mount point)."""
    path = "/"
    for line in cgroup_file.read_text().splitlines():
        hierarchy, controllers, group = line.split(":", 2)
        if (mount.version == 2 and hierarchy == "0") or (mount.version == 1 and "cpu" in controllers.split(",")):
            path = group
            break
    root = mount.root.rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]  # the mount shows the hierarchy from `root` down
    return mount.point / path.lstrip("/")


def candidates(
    mountinfo: Path = Path("/proc/self/mountinfo"), cgroup_file: Path = Path("/proc/self/cgroup")
) -> tuple[list[_Cgroup], list[str]]:
    """The cgroup limiters this host might offer, most precise first, and why the others are out."""
    try:
        mounts = cgroup_mounts(mountinfo)
    except OSError as exc:
        return [], [f"cannot read the mounts ({exc})"]
    out: list[_Cgroup] = []
    why: list[str] = []
    if "v2" in mounts:
        base = own_group(mounts["v2"], cgroup_file)
        try:
            controllers = (base / "cgroup.controllers").read_text().split()
        except OSError as exc:
            why.append(f"cgroup v2: {base} unreadable ({exc.strerror})")
        else:
            if "cpu" in controllers:
                out.append(CgroupV2(base))
            else:
                why.append(f"cgroup v2: no cpu controller in {base} (it is bound to cgroup v1, or not delegated)")
    else:
        why.append("cgroup v2: not mounted")
    if "v1" in mounts:
        out.append(CgroupV1(own_group(mounts["v1"], cgroup_file)))
    else:
        why.append("cgroup v1: its cpu controller is not mounted")
    return out, why


def open_cpu_limiter(found: tuple[Sequence[CpuLimiter], list[str]] | None = None) -> CpuLimiter:
    """The first limiter that opens (its groups made); `Affinity`, saying why, when none does."""
    limiters, why = found if found is not None else candidates()
    why = list(why)
    for limiter in limiters:
        try:
            limiter.open()
        except OSError as exc:
            why.append(f"{limiter.kind}: {exc.strerror or exc} ({exc.filename or ''})")
            with contextlib.suppress(OSError):
                limiter.close()
            continue
        return limiter
    affinity = Affinity("; ".join(why))
    log.warning("CPU caps are approximate here", extra={"note": affinity.note})
    return affinity


def probe_cpu_limiter(found: tuple[Sequence[_Cgroup], list[str]] | None = None) -> tuple[str, bool, str]:
    """(kind, exact, note) of the limiter `open_cpu_limiter` would choose, without writing anything:
    a cgroup one where its folders look writable (`tidemesh config validate`)."""
    limiters, why = found if found is not None else candidates()
    why = list(why)
    for limiter in limiters:
        target = limiter.parent if limiter.parent.is_dir() else limiter.base
        if not os.access(target, os.W_OK):
            why.append(f"{limiter.kind}: {target} is not writable")
        elif isinstance(limiter, CgroupV2) and not limiter.can_delegate():
            why.append(f"cgroup v2: {limiter.base} holds processes, so its cpu controller cannot be enabled below it")
        else:
            return limiter.kind, True, f"{limiter.kind}: each capped worker in its own group under {limiter.parent}"
    affinity = Affinity("; ".join(why))
    return affinity.kind, False, affinity.note
