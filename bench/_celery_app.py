"""The Celery app of the Celery + Redis benchmark anchor: one no-op task, two queues.

The worker subprocess imports this module (``celery -A bench._celery_app worker``) and reads the Redis URL from
``TIDEMESH_BENCH_REDIS_URL``; the client side builds its own apps with :func:`make_app` for an explicit URL.
Redis is both the broker and the result backend. Everything else is Celery's default configuration, so the
anchor shows what a stock Celery deployment does (prefetch multiplier 4, JSON, prefork pool).
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

URL_ENV = "TIDEMESH_BENCH_REDIS_URL"
NOOP = "bench.noop"
INTERACTIVE = "interactive"
BATCH = "batch"


def make_app(url: str, *, backend: bool = True, current: bool = False) -> Celery:
    """A Celery app on `url` (broker, and result backend unless `backend` is False) with the no-op task."""
    app = Celery("tidemesh_bench", broker=url, backend=url if backend else None, set_as_current=current)
    app.conf.update(
        # Each queue on its own direct exchange and routing key: a bare Queue(name) gets bound to the default
        # exchange ("batch") with the default routing key ("batch"), both queues under one key.
        task_queues=tuple(
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in (INTERACTIVE, BATCH)
        ),
        task_default_queue=BATCH,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        result_expires=3600,
    )

    # shared=False: a shared task would be copied into every app created later, each registering `NOOP` again.
    app.task(name=NOOP, shared=False)(noop)
    return app


def noop() -> None:
    """The benchmark task: does nothing, returns None."""
    return None


# The worker's app (``-A bench._celery_app`` finds ``app``). Without the variable (an import for the client
# side only) it points at a default URL it never connects to: Celery connects lazily.
app = make_app(os.environ.get(URL_ENV, "redis://127.0.0.1:6379/0"), current=True)
