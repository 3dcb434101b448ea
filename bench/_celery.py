"""Celery 5.7 + Redis anchor: the stock Python task queue that tidemesh is measured against.

Plain blocking functions; an asyncio caller runs them in a thread::

    with RedisServer() as redis, CeleryWorkers(redis.url):
        rate = await asyncio.to_thread(celery_throughput, 2000)
        p50_ms, p99_ms = await asyncio.to_thread(celery_interactive_latency, 20000, 200)

Redis is the broker and the result backend; the worker is one ``celery worker`` with the prefork pool
(2 processes) consuming the queues ``interactive`` and ``batch``. The benchmark functions use the URL of the
innermost running :class:`RedisServer` unless given ``url=`` (or ``TIDEMESH_BENCH_REDIS_URL`` is set).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from celery import Celery
from celery.result import AsyncResult

from bench._celery_app import BATCH, INTERACTIVE, NOOP, URL_ENV, make_app
from mesh.supervisor import free_port

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = "redis-server is not installed: apt-get install redis-server"

_active_urls: list[str] = []  # URLs of the running RedisServer contexts, innermost last


def _resolve_url(url: str | None) -> str:
    if url:
        return url
    if _active_urls:
        return _active_urls[-1]
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    raise RuntimeError(f"no Redis URL: run inside `with RedisServer():`, pass url=, or set {URL_ENV}")


def _poll(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` with a short backoff until it holds; TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped counts as gone)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] not in ("Z", "X") and int(stat[2]) == pgid:
                members.append(int(entry.name))
    return members


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop_process(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """terminate → wait → kill → wait."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    """A throwaway ``redis-server`` on a free 127.0.0.1 port, no persistence; stopped on exit.

    ``url`` is ``redis://127.0.0.1:<port>/0``; ``pid`` the server's PID.
    """

    def __init__(self, *, durable: bool = False, start_timeout_s: float = 10.0, stop_grace_s: float = 5.0) -> None:
        self._durable = durable  # AOF with appendfsync always: every write fsync'd before the reply
        self._start_timeout_s = start_timeout_s
        self._stop_grace_s = stop_grace_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0
        self.url = ""

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def __enter__(self) -> Self:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self._dir = tempfile.TemporaryDirectory(prefix="tidemesh-redis-")
        try:
            self._start(binary, Path(self._dir.name))
        except BaseException:
            self._close()
            raise
        _active_urls.append(self.url)
        return self

    def _start(self, binary: str, workdir: Path) -> None:
        logfile = workdir / "redis.log"
        for _ in range(5):  # a free port can be taken between the probe and the bind: pick another
            port = free_port()
            with logfile.open("wb") as out:
                self._proc = subprocess.Popen(
                    [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     *(("--appendonly", "yes", "--appendfsync", "always") if self._durable else ("--appendonly", "no")),
                     "--daemonize", "no", "--dir", str(workdir)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                )  # fmt: skip
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=1.0)
            try:
                if self._wait_ping(client):
                    self.port, self.url = port, f"redis://127.0.0.1:{port}/0"
                    return
            finally:
                client.close()
            if "Address already in use" not in _tail(logfile):
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}:\n{_tail(logfile)}")
        raise RuntimeError(f"redis-server found no free port:\n{_tail(logfile)}")

    def _wait_ping(self, client: redis.Redis) -> bool:
        """True once PING answers; False if the server exited first."""
        assert self._proc is not None
        answered = False

        def ready() -> bool:
            nonlocal answered
            if self._proc is not None and self._proc.poll() is not None:
                return True
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                answered = bool(client.ping())
            return answered

        _poll(ready, self._start_timeout_s, "redis-server answering PING")
        return answered

    def _close(self) -> None:
        if self._proc is not None:
            _stop_process(self._proc, self._stop_grace_s)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(ValueError):
            _active_urls.remove(self.url)
        self._close()


class CeleryWorkers:
    """One ``celery worker`` subprocess (prefork pool, `concurrency` children) on ``interactive`` and ``batch``.

    Started in its own session/process group; on exit the main process gets SIGTERM (warm shutdown), and after
    `stop_grace_s` the whole group gets SIGKILL, so no prefork child outlives it. ``pids`` lists the main process
    and its pool children as seen when the worker became ready.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        concurrency: int = 2,
        queues: Iterable[str] = (INTERACTIVE, BATCH),
        ready_timeout_s: float = 60.0,
        stop_grace_s: float = 10.0,
        loglevel: str = "WARNING",
    ) -> None:
        self._url = url
        self._concurrency = concurrency
        self._queues = tuple(queues)
        self._ready_timeout_s = ready_timeout_s
        self._stop_grace_s = stop_grace_s
        self._loglevel = loglevel
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._resolved_url = ""
        self.node = f"bench-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        self.pids: list[int] = []

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        assert self._dir is not None, "not started"
        return Path(self._dir.name) / "worker.log"

    def __enter__(self) -> Self:
        url = self._resolved_url = _resolve_url(self._url)
        self._dir = tempfile.TemporaryDirectory(prefix="tidemesh-celery-")
        env = dict(os.environ)
        env[URL_ENV] = url
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        command = [
            sys.executable, "-m", "celery", "-A", "bench._celery_app", "worker",
            "--pool", "prefork", "--concurrency", str(self._concurrency), "-Q", ",".join(self._queues),
            "-n", self.node, "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", self._loglevel,
        ]  # fmt: skip
        try:
            with self.log_path.open("wb") as out:
                self._proc = subprocess.Popen(
                    command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            self._wait_ready(url)
            self.pids = sorted(set(group_members(self._proc.pid)) | {self._proc.pid})
        except BaseException:
            self._close()
            raise
        return self

    def _wait_ready(self, url: str) -> None:
        """Until the worker answers a control ping (its consumer loop is running), or it exits, or the deadline."""
        assert self._proc is not None
        client = make_app(url)
        try:
            deadline = time.monotonic() + self._ready_timeout_s
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"celery worker exited with {self._proc.returncode}:\n{_tail(self.log_path)}")
                # Blocks until the reply or 0.5 s: a wait for an answer, not a sleep.
                if client.control.ping(destination=[self.node], timeout=0.5):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"celery worker not ready within {self._ready_timeout_s:.0f} s:\n{_tail(self.log_path)}"
                    )
            # Ready means the pool is up: wait until its children exist too, so `pids` is complete.
            _poll(lambda: len(group_members(self.pid)) > self._concurrency, 10.0, "prefork children")
        finally:
            _close_app(client)

    def _quiesce(self) -> None:
        """Stop consuming and let the reserved tasks finish: a warm shutdown of a busy prefork pool can hang."""
        client = make_app(self._resolved_url)
        try:
            for queue in self._queues:
                client.control.cancel_consumer(queue, destination=[self.node], reply=True, timeout=1.0)
            wait_idle(client, [self.node], timeout_s=self._stop_grace_s)
        finally:
            _close_app(client)

    def _close(self) -> None:
        if self._proc is not None:
            pgid = self._proc.pid  # start_new_session: the worker leads its own group
            if self.pids and self._proc.poll() is None:
                with contextlib.suppress(Exception):
                    self._quiesce()
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)  # warm shutdown: the main process stops its pool
                try:
                    self._proc.wait(self._stop_grace_s)
                except subprocess.TimeoutExpired:
                    log.warning("celery worker ignored SIGTERM for %.0f s; killing its group", self._stop_grace_s)
            with contextlib.suppress(TimeoutError):
                _poll(lambda: not group_members(pgid), 2.0, "prefork children exiting")
            if group_members(pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
            self._proc.wait()
            _poll(lambda: not group_members(pgid), 5.0, "celery process group gone after SIGKILL")
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()


def wait_idle(app: Celery, destination: list[str] | None = None, timeout_s: float = 15.0) -> bool:
    """Wait until the workers report no active and no reserved task; False if they still do at the deadline.

    Without `destination`, the workers that answer a ping. Inspect requests name their workers: a broadcast to
    all waits out its whole timeout, and on Redis its replies sometimes come too late to count.
    """
    if destination is None:
        destination = [name for reply in app.control.ping(timeout=1.0) for name in reply]
        if not destination:
            return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        inspect = app.control.inspect(destination=destination, timeout=1.0)
        replies = [inspect.active(), inspect.reserved()]
        if all(reply is not None and not any(reply.values()) for reply in replies):
            return True
    return False


def _p99(samples: list[float]) -> float:
    """Nearest-rank 99th percentile (the convention of bench/_foundation.py)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]


def celery_throughput(n: int, *, url: str | None = None, warmup: int = 20) -> float:
    """End-to-end no-op tasks/s: ``delay()`` `n` tasks, then ``AsyncResult.get()`` each (submit → result seen).

    `warmup` tasks run first, untimed, so connections and the result subscription are set up.
    """
    app = make_app(_resolve_url(url))
    noop = app.tasks[NOOP]
    timeout_s = max(60.0, n / 20)
    results: list[AsyncResult] = []
    try:
        for _ in range(warmup):
            noop.delay().get(timeout=timeout_s)
        started = time.perf_counter()
        results = [noop.delay() for _ in range(n)]
        for result in results:
            result.get(timeout=timeout_s)
        return n / (time.perf_counter() - started)
    finally:
        results.clear()  # AsyncResult.__del__ unsubscribes through the backend: before the app closes
        _close_app(app)


def celery_per_call(n: int, *, callers: int = 64, url: str | None = None) -> float:
    """One task per call: `callers` threads (an app each, as separate services would have), each
    sending a no-op with ``delay()`` and waiting for its result with ``get()`` before the next;
    `n` tasks in all. Tasks/s from the first send to the last result."""
    resolved = _resolve_url(url)
    left = [n]
    lock = threading.Lock()

    def caller() -> None:
        app = make_app(resolved)
        noop = app.tasks[NOOP]
        try:
            noop.delay().get(timeout=60)  # warm: connections and the result subscription
            start.wait()
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                noop.delay().get(timeout=60)
        finally:
            _close_app(app)

    start = threading.Event()
    threads = [threading.Thread(target=caller, daemon=True) for _ in range(callers)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # every caller warmed (a bench, not a test: the window is only the warm-up)
    started = time.perf_counter()
    start.set()
    for thread in threads:
        thread.join()
    return n / (time.perf_counter() - started)


def celery_sequential(n: int = 200, *, url: str | None = None) -> tuple[float, float]:
    """Idle round trip of one caller, one task at a time: (p50 ms, p99 ms)."""
    app = make_app(_resolve_url(url))
    noop = app.tasks[NOOP]
    try:
        for _ in range(20):
            noop.delay().get(timeout=30)
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            noop.delay().get(timeout=30)
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples), _p99(samples)
    finally:
        _close_app(app)


def _close_app(app: Celery) -> None:
    """Close a client app and its result backend's Redis connections (``Celery.close`` leaves those open)."""
    backend = app._backend  # None when this thread never touched the backend
    if backend is not None:
        with contextlib.suppress(Exception):
            consumer = getattr(backend, "result_consumer", None)
            if consumer is not None:
                consumer.stop()
            client = getattr(backend, "client", None)
            if client is not None:
                client.close()
    app.close()


class InteractiveLatency(tuple[float, float]):
    """``(p50_ms, p99_ms)`` of the interactive probes, with the flood's figures as attributes.

    ``enqueue_s``: time to put the flood on the ``batch`` queue; ``backlog_start`` / ``backlog_end``: batch
    messages still waiting in Redis when the probes started / ended; ``probes_ms``: every probe, in order.
    """

    enqueue_s: float
    flood: int
    backlog_start: int
    backlog_end: int
    probes_ms: list[float]

    def __new__(
        cls,
        p50_ms: float,
        p99_ms: float,
        *,
        enqueue_s: float,
        flood: int,
        backlog_start: int,
        backlog_end: int,
        probes_ms: list[float],
    ) -> InteractiveLatency:
        self = super().__new__(cls, (p50_ms, p99_ms))
        self.enqueue_s = enqueue_s
        self.flood = flood
        self.backlog_start = backlog_start
        self.backlog_end = backlog_end
        self.probes_ms = probes_ms
        return self

    @property
    def p50_ms(self) -> float:
        return self[0]

    @property
    def p99_ms(self) -> float:
        return self[1]

    @property
    def enqueue_per_s(self) -> float:
        return self.flood / self.enqueue_s if self.enqueue_s else 0.0

    def __repr__(self) -> str:
        return (
            f"InteractiveLatency(p50_ms={self[0]:.2f}, p99_ms={self[1]:.2f}, flood={self.flood}, "
            f"enqueue_s={self.enqueue_s:.2f}, backlog_start={self.backlog_start}, backlog_end={self.backlog_end})"
        )


def celery_interactive_latency(flood: int = 20000, probes: int = 200, *, url: str | None = None) -> InteractiveLatency:
    """Latency of interactive tasks behind a batch flood — Celery's "separate queues" way to prioritise.

    Puts `flood` no-op tasks on queue ``batch`` (``apply_async`` in a loop on one producer, as fast as the client
    goes — the time is reported as ``enqueue_s``), then sends `probes` no-op tasks to queue ``interactive`` one at
    a time, each waiting for its result, and returns ``(p50_ms, p99_ms)`` of their submit → result latency (an
    :class:`InteractiveLatency`, a 2-tuple carrying the flood figures too). Leftover batch messages are purged
    before it returns.

    The flood comes from a separate producer app without a result backend, like a batch job submitted by another
    process: the worker still stores every batch result in Redis, but this client does not subscribe to 20 000
    result channels it never reads.

    How Celery orders the queues: a worker has no priority between the queues it consumes. On Redis, kombu
    issues one ``BRPOP`` over all of them in a round-robin order (``queue_order_strategy = "round_robin"``: the
    queue a message came from is rotated to the back), so while ``batch`` is non-empty an interactive task gets
    at best every other fetch, and it still waits behind what the worker has already prefetched
    (``worker_prefetch_multiplier`` 4 x 2 processes = 8 reserved tasks) and behind the tasks executing. That is
    why interactive tasks wait: they share every worker slot with the flood. The backlog itself does not block
    them (``backlog_end`` shows most of the flood still queued when the probes are done); a client that sent the
    flood itself with results enabled would also have to drain thousands of batch result messages from its
    result subscription before it sees its first interactive result (seconds, once).
    """
    resolved = _resolve_url(url)
    app = make_app(resolved)
    flood_app = make_app(resolved, backend=False)
    probe_task = app.tasks[NOOP]
    flood_task = flood_app.tasks[NOOP]
    timeout_s = max(120.0, flood / 20)
    broker = redis.Redis.from_url(resolved)
    try:
        for _ in range(5):  # warm-up, untimed: connections and the result subscription
            probe_task.apply_async(queue=INTERACTIVE).get(timeout=timeout_s)
        started = time.perf_counter()
        with flood_app.producer_or_acquire() as producer:
            for _ in range(flood):
                flood_task.apply_async(queue=BATCH, producer=producer)
        enqueue_s = time.perf_counter() - started
        backlog_start = int(broker.llen(BATCH))
        latencies_ms = []
        for _ in range(probes):
            sent = time.perf_counter()
            probe_task.apply_async(queue=INTERACTIVE).get(timeout=timeout_s)
            latencies_ms.append((time.perf_counter() - sent) * 1000)
        backlog_end = int(broker.llen(BATCH))
        figures = InteractiveLatency(
            statistics.median(latencies_ms),
            _p99(latencies_ms),
            enqueue_s=enqueue_s,
            flood=flood,
            backlog_start=backlog_start,
            backlog_end=backlog_end,
            probes_ms=latencies_ms,
        )
        log.info("celery interactive latency: %r", figures)
        return figures
    finally:
        with contextlib.suppress(Exception):
            flood_app.control.purge()  # the rest of the flood: leave the worker idle for whoever runs next
            wait_idle(flood_app)
        broker.close()
        _close_app(flood_app)
        _close_app(app)
