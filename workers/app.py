"""The Celery app: configuration, queues, routing, and per-process resources.

Reliability settings follow ../shared/notes (B3): late acks with reject-on-worker-lost (tasks
are idempotent), prefetch 1, no result backend (results live in Postgres), hard and soft
time limits well inside Redis' visibility timeout, and workers recycled after a number of
tasks or a memory ceiling so one leaky page cannot grow a process forever.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import redis
import structlog
from celery import Celery
from celery.signals import after_setup_logger, worker_process_init, worker_process_shutdown
from kombu.entity import Exchange, Queue
from psycopg_pool import ConnectionPool

from schedules.beat import beat_schedule
from workers.fetch import Fetcher
from workers.politeness import Politeness
from workers.settings import Settings, get_settings

settings = get_settings()
QUEUES = ("control", "crawl", "articles")

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
    worker_cancel_long_running_tasks_on_connection_loss=True,
    broker_connection_retry_on_startup=True,
    # Longer than any task's hard limit and any retry countdown, or Redis redelivers a task
    # that is still running.
    broker_transport_options={"visibility_timeout": 3600},
    task_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    beat_schedule=beat_schedule(settings),
    include=["workers.tasks"],
)


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
                kwargs={"autocommit": True, "application_name": "newsagg-worker"},
                open=True,
                name="newsagg",
            )
            self._fetcher = Fetcher(self.settings)
            self._redis = redis.Redis.from_url(self.settings.redis_url, socket_timeout=10)
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


@worker_process_init.connect
def open_resources(**_: Any) -> None:
    resources.pool.wait(timeout=3.0)


@worker_process_shutdown.connect
def close_resources(**_: Any) -> None:
    resources.close()


def configure_logging(level: str) -> None:
    """structlog through the standard library, so Celery's handlers format our lines like
    its own, at their real level (a print to stdout would be re-logged as WARNING)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.dev.ConsoleRenderer(
                colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
            ),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.getLogger("newsagg").setLevel(level.upper())
    # One line per HTTP request drowns the log; fetches rows record every request anyway.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@after_setup_logger.connect
def setup_structlog(**_: Any) -> None:
    configure_logging(settings.log_level)
