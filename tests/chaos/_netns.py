"""Simulated hosts: Linux network namespaces on one bridge, each with its own address and stack.

`Network.make` builds a switch namespace holding a bridge and, per host, a namespace whose
``eth0`` is one end of a veth pair, the other end on the bridge; every namespace has its own
loopback. Nothing touches the caller's namespace: its routes, addresses and links stay as they
were, and every packet of the hosts stays between them. A host is lost with `lose` (its links
down first, so no FIN or RST gets out — as a power cut — then every process in it SIGKILLed) and
comes back with `restore`. `close` kills what is left and deletes every namespace (their links
go with them); it runs however the test ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


class NamespacesUnavailable(RuntimeError):
    """Namespaces cannot be made here (the message is `ip`'s own reason)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise NamespacesUnavailable(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


@dataclass
class Network:
    """Namespaces ``<prefix>-<name>`` on the bridge of ``<prefix>-sw``, addresses 10.77.0.x/24."""

    prefix: str
    hosts: dict[str, str] = field(default_factory=dict)  # name → address
    _made: list[str] = field(default_factory=list)

    @staticmethod
    @contextlib.contextmanager
    def make(names: Sequence[str], prefix: str = "") -> Iterator[Network]:
        """The namespaces, one per name (addresses 10.77.0.1, .2, … in order), deleted on exit."""
        if os.geteuid() != 0:
            raise NamespacesUnavailable(f"network namespaces need root (running as uid {os.geteuid()})")
        net = Network(prefix or f"tm{os.getpid() % 100000}")
        try:
            switch = net.namespace("sw")
            net._add(switch)
            _ip("-n", switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", switch, "link", "set", "br0", "up")
            for index, name in enumerate(names, start=1):
                ns, address = net.namespace(name), f"10.77.0.{index}"
                net._add(ns)
                _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"p{index}", "netns", switch)
                _ip("-n", switch, "link", "set", f"p{index}", "master", "br0", "up")
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                net.hosts[name] = address
            yield net
        finally:
            net.close()

    def namespace(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _add(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def _port(self, name: str) -> str:
        return f"p{list(self.hosts).index(name) + 1}"

    def argv(self, name: str, command: Sequence[str]) -> list[str]:
        """`command` run inside host `name` (its network stack; the same files and users)."""
        return ["ip", "netns", "exec", self.namespace(name), *command]

    def pids(self, name: str) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.namespace(name)], capture_output=True, text=True)
        return [int(pid) for pid in done.stdout.split()]

    def kill_all(self, name: str, timeout_s: float = 10.0) -> int:
        """SIGKILL every process in host `name` until none is left (a supervisor's restarts too);
        how many were killed."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while pids := self.pids(name):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            if time.monotonic() > deadline:
                raise AssertionError(f"processes left in {name} after {timeout_s}s: {pids}")
            time.sleep(0.02)  # the kernel reaps them; ip netns pids lists zombies until then
        return len(killed)

    def links(self, name: str, state: str) -> None:
        """Both ends of host `name`'s link ``up`` or ``down``."""
        _ip("-n", self.namespace(name), "link", "set", "eth0", state)
        _ip("-n", self.namespace("sw"), "link", "set", self._port(name), state)

    def lose(self, name: str) -> int:
        """Host `name` gone: links down, then every process killed (nothing said goodbye)."""
        self.links(name, "down")
        return self.kill_all(name)

    def restore(self, name: str) -> None:
        self.links(name, "up")

    def close(self) -> None:
        for ns in reversed(self._made):
            name = ns.removeprefix(f"{self.prefix}-")
            with contextlib.suppress(AssertionError):
                self.kill_all(name)
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
        self._made.clear()
