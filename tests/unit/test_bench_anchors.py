"""The benchmark anchors (Celery + Redis, bare nats-py) run end to end and leave no process or stream behind."""

from __future__ import annotations

import shutil

import pytest

from bench import _celery
from bench._celery import CeleryWorkers, RedisServer, celery_interactive_latency, celery_throughput, pid_alive
from bench._nats_bare import NatsServer, bench_streams, nats_bare_throughput

needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed: apt-get install redis-server"
)


@needs_redis
def test_celery_anchor_measures_and_stops_every_process() -> None:
    with RedisServer() as redis_server, CeleryWorkers(redis_server.url) as workers:
        started = [redis_server.pid, *workers.pids]
        assert len(workers.pids) == 3  # the main process and its two prefork children
        rate = celery_throughput(50, warmup=2)
        latency = celery_interactive_latency(flood=200, probes=10)
    assert rate > 0
    p50_ms, p99_ms = latency
    assert 0 < p50_ms <= p99_ms
    assert latency.enqueue_s > 0 and latency.flood == 200 and len(latency.probes_ms) == 10
    assert [pid for pid in started if pid_alive(pid)] == []


def test_redis_server_says_how_to_install_it_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_celery.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install redis-server"), RedisServer():
        pass


async def test_nats_anchor_measures_and_removes_its_streams() -> None:
    async with NatsServer() as server:
        rate = await nats_bare_throughput(server.url, 500)
        assert rate > 0
        assert await bench_streams(server.url) == []
        pid = server.pid
    assert not pid_alive(pid)
