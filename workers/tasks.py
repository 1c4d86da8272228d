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

from workers import pipeline, store
from workers.app import app, resources, settings

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


@app.task(name="workers.crawl_source", ignore_result=True, time_limit=300, soft_time_limit=240)
def crawl_source(crawl_id: int) -> int:
    """Read one source and enqueue its new article URLs."""
    try:
        with resources.pool.connection() as conn:
            plan = pipeline.crawl_source(conn, resources.fetcher, settings, crawl_id)
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
    max_retries=None,  # bounded by settings.fetch_retries below
)
def process_article(self: Task, url_id: int) -> str | None:
    """Fetch, extract and store one article URL."""
    retries = int(self.request.retries or 0)
    final = retries >= settings.fetch_retries
    try:
        with resources.pool.connection() as conn:
            outcome = pipeline.process_article(
                conn, resources.fetcher, settings, url_id, final_attempt=final
            )
    except SoftTimeLimitExceeded:
        outcome = _give_up(url_id, "processing exceeded the 90 s task time limit")
    except Exception as exc:
        log.exception("process_article failed", url_id=url_id)
        outcome = _give_up(url_id, f"{type(exc).__name__}: {exc}")
    if outcome == "retry":
        countdown = settings.retry_backoff * (2**retries)
        raise self.retry(countdown=countdown)
    return outcome


def _give_up(url_id: int, error: str) -> Literal["failed"]:
    with resources.pool.connection() as conn:
        pipeline.record_worker_error(conn, url_id, error)
    return "failed"


@app.task(name="workers.housekeeping", ignore_result=True)
def housekeeping() -> int:
    """Close crawls whose worker vanished, so their sources can be crawled again."""
    with resources.pool.connection() as conn:
        abandoned = store.abandon_stale_crawls(conn, timedelta(seconds=settings.crawl_stale_after))
    if abandoned:
        log.warning("abandoned stale crawls", crawls=abandoned)
    return len(abandoned)
