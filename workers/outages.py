"""Telling an unreachable service from a bad page, and waiting for the service.

Only errors that say PostgreSQL or Redis cannot be reached count as outages: no connection
(or a connection that broke), the server shutting down or not accepting connections yet, the
pool finding no connection in time. Everything else PostgreSQL raises about a statement
(a value too long for an index, a deadlock, a cancelled query) is the page's or the code's
problem and gets the bounded retries of an unexpected error, never an endless wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import psycopg_pool
import redis
import structlog

from workers import metrics

log = structlog.get_logger("newsagg.outages")
T = TypeVar("T")

# SQLSTATE classes and codes of "the server is not there": connection exceptions (08),
# admin/crash shutdown and "cannot connect now" (57P01-57P03).
_GONE_CLASSES = ("08",)
_GONE_CODES = frozenset({"57P01", "57P02", "57P03"})
# The longest pause between two tries while a service is down.
MAX_PAUSE = 4.0


class Outage(Exception):
    """A service stayed unreachable longer than the caller's wait."""

    def __init__(self, service: str, cause: BaseException) -> None:
        super().__init__(f"{service} unreachable: {cause}")
        self.service = service


def outage_of(exc: BaseException) -> str | None:
    """The service an error says is unreachable ("postgres", "redis"), else None."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return "redis"
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg.InterfaceError):
        return "postgres"
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        # No SQLSTATE: libpq could not talk to a server at all.
        if state is None or state.startswith(_GONE_CLASSES) or state in _GONE_CODES:
            return "postgres"
    return None


def through_outages(work: Callable[[], T], wait: float) -> T:
    """Run work, repeating it while PostgreSQL or Redis is unreachable, for up to `wait`
    seconds (growing pauses); the pool replaces broken connections between tries. Raises
    Outage when the service is still gone; any other error goes through at once."""
    deadline = time.monotonic() + wait
    pause = 0.25
    while True:
        try:
            return work()
        except Exception as exc:
            service = outage_of(exc)
            if service is None:
                raise
            if time.monotonic() + pause > deadline:
                raise Outage(service, exc) from exc
            metrics.OUTAGE_WAITS.labels(service).inc()
            log.warning("service unreachable, waiting", service=service, error=str(exc)[:300])
            time.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
