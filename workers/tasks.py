"""Thin Celery tasks: take ids, open per-process resources, call one pipeline function.

Names are explicit and stable (they are the wire format between beat, CLI and workers).
Retries happen only for transient network failures, with backoff; anything else becomes a
fetches row, so a task never crash-loops on one bad page.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import structlog
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from trafilatura.meta import reset_caches

from workers import pipeline, store
from workers.app import app, resources, settings
from workers.politeness import HostBusy

# Retry countdowns stay far inside Redis' visibility timeout (1 h), or a waiting task is
# redelivered while it waits; a host paused for longer fails the URL as retryable and a
# later crawl picks it up.
MAX_COUNTDOWN = 600.0
# trafilatura and htmldate keep LRU caches per process; clear them now and then.
RESET_CACHES_EVERY = 200
_processed = 0

log = structlog.get_logger("newsagg.tasks")


@app.task(name="workers.dispatch_due_sources", ignore_result=True)
def dispatch_due_sources() -> int:
    """Claim due sources in Postgres and enqueue one crawl each."""
    with resources.pool.connection() as conn:
        claimed = store.claim_due_sources(conn)
    for crawl_id, _source_id in claimed:
        crawl_source.delay(crawl_id)
    if claimed:
        log.info("dispatched crawls", crawls=[c for c, _ in claimed])
    return len(claimed)


@app.task(
    name="workers.crawl_source",
    bind=True,
    ignore_result=True,
    time_limit=300,
    soft_time_limit=240,
    max_retries=20,
)
def crawl_source(self: Task, crawl_id: int) -> int:
    """Read one source and enqueue its new article URLs."""
    try:
        with resources.pool.connection() as conn:
            plan = pipeline.crawl_source(
                conn, resources.fetcher, settings, crawl_id, politeness=resources.politeness
            )
    except HostBusy as busy:
        raise self.retry(countdown=min(busy.wait, MAX_COUNTDOWN)) from None
    except SoftTimeLimitExceeded:
        with resources.pool.connection() as conn:
            store.fail_crawl(conn, crawl_id, "reading the source exceeded the task time limit")
        return 0
    for url_id in plan.url_ids:
        process_article.delay(url_id)
    return len(plan.url_ids)


@app.task(
    name="workers.process_article",
    bind=True,
    ignore_result=True,
    time_limit=120,
    soft_time_limit=90,
    max_retries=None,  # fetch failures bounded by settings.fetch_retries, pacing by time
)
def process_article(self: Task, url_id: int, failures: int = 0) -> str | None:
    """Fetch, extract and store one article URL.

    `failures` counts transient fetch failures so far; waits for the host's turn are
    retries too but do not count.
    """
    global _processed
    final = failures >= settings.fetch_retries
    try:
        with resources.pool.connection() as conn:
            outcome = pipeline.process_article(
                conn,
                resources.fetcher,
                settings,
                url_id,
                final_attempt=final,
                politeness=resources.politeness,
            )
    except HostBusy as busy:
        if busy.wait > MAX_COUNTDOWN:
            return _give_up(url_id, str(busy), status="host_backoff", retryable=True)
        raise self.retry(countdown=busy.wait, kwargs={"failures": failures}) from None
    except SoftTimeLimitExceeded:
        outcome = _give_up(url_id, "processing exceeded the 90 s task time limit")
    except Exception as exc:
        log.exception("process_article failed", url_id=url_id)
        outcome = _give_up(url_id, f"{type(exc).__name__}: {exc}")
    _processed += 1
    if _processed % RESET_CACHES_EVERY == 0:
        reset_caches()
    if outcome == "retry":
        countdown = min(settings.retry_backoff * (2**failures), MAX_COUNTDOWN)
        raise self.retry(countdown=countdown, kwargs={"failures": failures + 1})
    return outcome


def _give_up(
    url_id: int, error: str, *, status: str = "worker_error", retryable: bool = False
) -> Literal["failed"]:
    with resources.pool.connection() as conn:
        pipeline.record_worker_error(conn, url_id, error, status=status, retryable=retryable)
    return "failed"


@app.task(name="workers.housekeeping", ignore_result=True)
def housekeeping() -> int:
    """Release crawls whose lease ran out (their worker vanished) so their sources can be
    crawled again, and prune fetches rows past their retention."""
    with resources.pool.connection() as conn:
        abandoned = store.abandon_stale_crawls(conn, timedelta(seconds=settings.crawl_lease))
        pruned = store.prune_fetches(conn, timedelta(days=settings.fetch_retention_days))
    if abandoned:
        log.warning("abandoned crawls whose lease expired", crawls=abandoned)
    if pruned:
        log.info("pruned old fetches rows", rows=pruned)
    return len(abandoned)
