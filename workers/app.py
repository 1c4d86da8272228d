"""The Celery app: configuration, queues, routing, and per-process resources.

Reliability settings follow ../shared/notes (B3): late acks with reject-on-worker-lost (tasks
are idempotent), prefetch 1, no result backend (results live in Postgres), hard and soft
time limits well inside Redis' visibility timeout, and workers recycled after a number of
tasks or a memory ceiling so one leaky page cannot grow a process forever. What happens
when a process, Redis or PostgreSQL dies is in workers/tasks.py and workers/monitor.py.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
import weakref
from typing import Any

import psycopg
import redis
from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutting_down,
)
from kombu.entity import Exchange, Queue
from psycopg_pool import ConnectionPool

from schedules.beat import beat_schedule
from workers import broker, logs, metrics, monitor
from workers.fetch import Fetcher
from workers.frontier import PRIORITIES
from workers.politeness import Politeness
from workers.settings import Settings, get_settings

settings = get_settings()
QUEUES = ("control", "crawl", "articles")
logs.prepare(settings.log_format)

app = Celery("newsagg", broker=settings.redis_url)
app.conf.update(
    task_default_queue="articles",
    # Each queue on its own direct exchange: declared without one, all three would bind to
    # the default queue's exchange and a publish through it would reach every queue.
    task_queues=tuple(Queue(name, Exchange(name), routing_key=name) for name in QUEUES),
    task_routes={
        "workers.dispatch_due_sources": {"queue": "control"},
        "workers.housekeeping": {"queue": "control"},
        "workers.crawl_source": {"queue": "crawl"},
        "workers.process_article": {"queue": "articles"},
    },
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_acks_on_failure_or_timeout=True,
    task_ignore_result=True,
    result_backend=None,
    task_time_limit=300,
    task_soft_time_limit=240,
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=500,
    worker_max_memory_per_child=400_000,  # KiB
    # A running task whose broker connection dropped goes on: it writes its outcome to
    # Postgres once, and its message (redelivered if Redis kept it) then finds nothing to
    # do. Cancelling it would throw away finished work, and after a Redis restart that lost
    # the message, the work itself until the lease brought it back.
    worker_cancel_long_running_tasks_on_connection_loss=False,
    # Retry the broker forever: a worker must outlive a Redis restart, however long.
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    broker_channel_error_retry=True,
    # Longer than any task's hard limit and any retry countdown, or Redis redelivers a task
    # that is still running. The socket options notice a dead connection (a restarted Redis)
    # within seconds instead of waiting on a half-open socket.
    broker_transport_options={
        "visibility_timeout": 3600,
        # A list per priority, taken in order (0 first): crawls' URLs interleave by host
        # (workers/frontier.py). broker.py reads the same lists.
        "priority_steps": list(range(PRIORITIES)),
        "queue_order_strategy": "priority",
        "socket_timeout": 15,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 10,
        "retry_on_timeout": True,
    },
    broker_heartbeat=0,
    # kombu's Redis transport, minus a new Redis client per message (workers/broker.py).
    broker_transport=broker.transport_for(settings.redis_url),
    # Cold shutdown requeues what it cancels at once: no extra wait (see monitor.py).
    worker_soft_shutdown_timeout=0,
    worker_send_task_events=settings.task_events,
    task_send_sent_event=settings.task_events,
    task_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    beat_schedule=beat_schedule(settings),
    beat_scheduler="workers.monitor:HeartbeatScheduler",
    # Beat wakes at least this often, so its heartbeat stays fresh.
    beat_max_loop_interval=settings.heartbeat_every,
    include=["workers.tasks"],
)
app.steps["worker"].add(monitor.WorkerMonitor)


# A pooled connection handed out less than this long before is handed out again unchecked:
# a round trip per task saved, and a server that died meanwhile is still an outage the
# task waits out (workers/outages.py), its connection discarded by the pool.
CHECK_IDLE_AFTER = 5.0
_handed_out: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = weakref.WeakKeyDictionary()


def check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """The pool's check (run as it hands a connection out), for connections not handed out
    for a while (see CHECK_IDLE_AFTER). Not a reset callback: with one, psycopg_pool hands
    every returned connection to its worker thread first."""
    now = time.monotonic()
    last = _handed_out.get(conn)
    _handed_out[conn] = now
    if last is None or now - last >= CHECK_IDLE_AFTER:
        ConnectionPool.check_connection(conn)


def _session_options(settings: Settings) -> str:
    """The workers' session settings, after any `options` the database URL gives."""
    given = psycopg.conninfo.conninfo_to_dict(settings.database_url).get("options")
    ours = f"-c synchronous_commit={settings.db_synchronous_commit}"
    return f"{given} {ours}" if given else ours


class Resources:
    """Per-process database pool and HTTP client, created after fork.

    Opened in worker_process_init for prefork children; created lazily (and re-created when
    the pid changes) for the solo pool, the CLI and tests, so a forked child never reuses its
    parent's sockets.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pool: ConnectionPool | None = None
        self._fetcher: Fetcher | None = None
        self._redis: redis.Redis | None = None
        self._politeness: Politeness | None = None

    def _ensure(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pool = ConnectionPool(
                self.settings.database_url,
                min_size=1,
                max_size=4,
                kwargs={
                    "autocommit": True,
                    "application_name": "newsagg-worker",
                    "options": _session_options(self.settings),
                },
                open=True,
                name="newsagg",
                # A connection that died with its server (a PostgreSQL restart) is noticed
                # when it is handed out, not by the task's first query.
                check=check_idle_connection,
                # While PostgreSQL is down, each wait for a connection makes one new attempt
                # and fails fast: the task's outage wait (tasks.py) paces the attempts, and
                # the first one after the server is back succeeds.
                timeout=3.0,
                reconnect_timeout=0,
            )
            self._fetcher = Fetcher(self.settings)
            self._redis = redis.Redis.from_url(
                self.settings.redis_url,
                socket_timeout=10,
                socket_connect_timeout=5,
                health_check_interval=10,
                retry_on_timeout=True,
            )
            self._politeness = Politeness(self._redis, self.settings)
            self._pid = os.getpid()

    @property
    def pool(self) -> ConnectionPool:
        self._ensure()
        assert self._pool is not None
        return self._pool

    @property
    def fetcher(self) -> Fetcher:
        self._ensure()
        assert self._fetcher is not None
        return self._fetcher

    @property
    def redis(self) -> redis.Redis:
        self._ensure()
        assert self._redis is not None
        return self._redis

    @property
    def politeness(self) -> Politeness:
        self._ensure()
        assert self._politeness is not None
        return self._politeness

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                if self._pool is not None:
                    self._pool.close()
                if self._fetcher is not None:
                    self._fetcher.close()
                if self._redis is not None:
                    self._redis.close()
            self._pid = self._pool = self._fetcher = self._redis = self._politeness = None


resources = Resources(settings)


@worker_init.connect
def warm_up(**_: Any) -> None:
    # In the main process, before the pool forks: children start with extraction's data
    # loaded (see extract.warm_up).
    from workers.extract import warm_up as warm_up_extraction
    from workers.store import fingerprint_article  # noqa: F401  (imports dedup, stories)

    started = time.perf_counter()
    warm_up_extraction()
    # Everything loaded so far lives as long as the process: out of the collector's sight, a
    # child's collections (trafilatura's reset_caches runs one) neither walk it nor write to
    # its pages, which stay shared with this process instead of being copied into each child.
    gc.collect()
    gc.freeze()
    logging.getLogger("newsagg.app").info(
        "extraction warmed up in %.1fs", time.perf_counter() - started
    )


def _terminated(signum: int, _frame: Any) -> None:
    # Celery's cold shutdown and billiard stop a child with SIGTERM; by default it dies on
    # the spot. As an exception it unwinds the task, which lets go of its URL's claim first
    # (tasks.process_article): the message goes back to the queue, and a deploy is not
    # counted as a lost worker.
    raise SystemExit(128 + signum)


@worker_process_init.connect
def open_resources(**_: Any) -> None:
    signal.signal(signal.SIGTERM, _terminated)
    try:
        resources.pool.wait(timeout=3.0)
    except Exception as exc:  # PostgreSQL down: tasks wait for it, the child must not die
        logging.getLogger("newsagg.app").warning("database not reachable yet: %s", exc)


@worker_process_shutdown.connect
def close_resources(**_: Any) -> None:
    resources.close()


@worker_shutting_down.connect
def bound_shutdown(how: str = "", **_: Any) -> None:
    if how == "Warm" and settings.shutdown_grace > 0:
        monitor.arm_shutdown_grace(settings.shutdown_grace)


_started: dict[str, float] = {}


@task_prerun.connect
def start_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    logs.bind_task(task_id, getattr(task, "name", None))
    if task_id:
        _started[task_id] = time.perf_counter()


@task_postrun.connect
def end_task(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    name = getattr(task, "name", "?")
    metrics.TASKS.labels(name, (state or "unknown").lower()).inc()
    started = _started.pop(task_id or "", None)
    if started is not None:
        metrics.TASK_SECONDS.labels(name).observe(time.perf_counter() - started)
    logs.end_task()


@after_setup_logger.connect
@after_setup_task_logger.connect
def setup_logging(logger: Any = None, **_: Any) -> None:
    logs.configure_logging(settings.log_level, settings.log_format, [logger] if logger else None)
