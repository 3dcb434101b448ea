"""The supervisor's liveness check on one real child process: a frozen life is killed for a
restart, a life that is still starting is not."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mesh.supervisor import Child
from mesh.supervisor._plan import Health, ProcessSpec

# Answers 200 on its port, noting each GET in life-N; every life after the first takes 0.8 s to
# start (a model to load).
_SERVER = """
import http.server, os, pathlib, sys, time
tmp, port = pathlib.Path(sys.argv[1]), int(sys.argv[2])
life = len(list(tmp.glob("life-*")))
(tmp / f"life-{life}").write_text("")
if life:
    time.sleep(0.8)
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(tmp / f"life-{life}", "a") as gets:
            gets.write("GET\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Ok).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_restarted_child_gets_its_start_up_time_and_a_frozen_one_is_killed(tmp_path: Path) -> None:
    """Watched with 3 misses at 0.1 s: a life killed -9 comes back slower than that (0.8 s) and is
    left to start, not killed as unresponsive; once it answers, freezing it (SIGSTOP) gets it killed."""
    port = _free_port()
    health = Health(url=f"http://127.0.0.1:{port}/", host="127.0.0.1", port=port, path="/")
    command = [sys.executable, "-c", _SERVER, str(tmp_path), str(port)]
    (tmp_path / "logs").mkdir()
    child = Child(ProcessSpec(name="slow", command=command, ports={}, health=health), tmp_path / "logs")
    await child.start()
    try:
        await child.wait_healthy(15)
        child.watch(every_s=0.1, failures=3)
        first = child.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await _until(lambda: child.restarts == 1)
        await child.wait_healthy(15)
        assert (child.restarts, child.unresponsive_kills) == (1, 0)
        second = child.pid
        assert second is not None and second != first
        # Its third GET: the watch has seen this life answer (wait_healthy sent the first, and the
        # watch sends one only after it has taken the last one's answer).
        await _until(lambda: (tmp_path / "life-1").read_text().count("GET") >= 3)
        os.kill(second, signal.SIGSTOP)
        await _until(lambda: child.unresponsive_kills == 1)
        await _until(lambda: child.restarts == 2)
        assert child.pid != second
    finally:
        await child.stop(grace_s=2)
