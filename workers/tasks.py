"""Thin Celery tasks: take ids, open per-process resources, call one pipeline function.

Names are explicit and stable (they are the wire format between beat, CLI and workers).
What each failure costs:
- a transient fetch failure: a retry with back-off (settings.fetch_retries), then a
  failure row;
- PostgreSQL or Redis unreachable (workers/outages.py): the task waits in place for them
  (settings.outage_wait), then reschedules itself, at most MAX_OUTAGE_RETRIES times; its
  work is never recorded as the page's fault, and what it leaves the leases bring back;
- an unexpected error: a fetches row per attempt, settings.task_retries retries with
  back-off, then a failure row, so one poisonous page never loops and never blocks the rest;
- a worker killed mid-task: the message comes back (reject on worker lost) and the URL's
  claim counts it; after settings.max_claims the URL fails as worker_lost. A child stopped
  by the cold shutdown (SIGTERM) lets go of its claim first: a deploy is not a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any, Literal, TypeVar

import structlog
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from trafilatura.meta import reset_caches

from workers import broker, frontier, metrics, pipeline, store
from workers.app import app, resources, settings
from workers.outages import Outage, outage_of, through_outages
from workers.politeness import HostBusy

# Retry countdowns stay far inside Redis' visibility timeout (1 h), or a waiting task is
# redelivered while it waits; a host paused for longer fails the URL as retryable and a
# later crawl picks it up.
MAX_COUNTDOWN = 600.0
# After this many reschedules for an outage (each after settings.outage_wait in place and
# OUTAGE_COUNTDOWN away), a task stops; the leases send its work again later.
MAX_OUTAGE_RETRIES = 20
OUTAGE_COUNTDOWN = 30.0
# trafilatura and htmldate keep LRU caches per process; clear them now and then.
RESET_CACHES_EVERY = 200
_processed = 0

log = structlog.get_logger("newsagg.tasks")
T = TypeVar("T")


def wait_out(work: Callable[[], T]) -> T:
    return through_outages(work, settings.outage_wait)


def outage_retry(task: Task, exc: Outage, kwargs: dict[str, Any]) -> Any:
    """Reschedule after an outage; give up (the leases take over) after too many."""
    done = int(kwargs.get("outages", 0))
    if done >= MAX_OUTAGE_RETRIES:
        log.error("giving up after repeated outages; the lease will send this again",
                  service=exc.service, outages=done)  # fmt: skip
        return None
    return task.retry(countdown=OUTAGE_COUNTDOWN, exc=exc, kwargs={**kwargs, "outages": done + 1})


@app.task(name="workers.dispatch_due_sources", ignore_result=True)
def dispatch_due_sources() -> int:
    """Claim due sources in Postgres and enqueue one crawl each.

    If enqueueing fails (Redis down), the crawls stay queued in Postgres and housekeeping
    sends them once their lease runs out.
    """

    def claim() -> list[tuple[int, int]]:
        with resources.pool.connection() as conn:
            return store.claim_due_sources(conn)

    claimed = wait_out(claim)
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
    max_retries=None,  # host waits are bounded by time, outages and errors by counters
)
def crawl_source(self: Task, crawl_id: int, errors: int = 0, outages: int = 0) -> int:
    """Read one source and enqueue its new article URLs."""
    structlog.contextvars.bind_contextvars(crawl_id=crawl_id)
    retry_kwargs = {"errors": errors, "outages": outages}

    def crawl() -> pipeline.CrawlPlan:
        with resources.pool.connection() as conn:
            return pipeline.crawl_source(
                conn, resources.fetcher, settings, crawl_id, politeness=resources.politeness
            )

    try:
        plan = wait_out(crawl)
    except HostBusy as busy:
        raise self.retry(countdown=min(busy.wait, MAX_COUNTDOWN), kwargs=retry_kwargs) from None
    except Outage as exc:
        outage_retry(self, exc, retry_kwargs)
        return 0
    except SoftTimeLimitExceeded:
        _fail_crawl(crawl_id, "reading the source exceeded the task time limit")
        return 0
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.exception("crawl_source failed", attempt=errors + 1)
        if errors < settings.task_retries:
            countdown = min(settings.retry_backoff * (2**errors), MAX_COUNTDOWN)
            raise self.retry(
                countdown=countdown, kwargs={**retry_kwargs, "errors": errors + 1}
            ) from None
        _fail_crawl(crawl_id, f"reading the source failed {errors + 1} times: {error}")
        return 0

    def interleave() -> tuple[list[tuple[int, int]], list[int]]:
        with resources.pool.connection() as conn:
            return pipeline.dispatch_plan(conn, plan.url_ids)

    now, later = wait_out(interleave)
    # Held back before any is sent: the first sent may be done before the last.
    wait_out(lambda: frontier.hold_back(resources.redis, crawl_id, later, frontier.TTL))
    for url_id, priority in now:
        process_article.apply_async((url_id,), {"crawl_id": crawl_id}, priority=priority)
    return len(plan.url_ids)


def _send_waiting(crawl_id: int, count: int = 1) -> None:
    """Send up to `count` of the crawl's URLs waiting in its frontier list, at the back of
    the queue."""
    for url_id in frontier.next_urls(resources.redis, crawl_id, count):
        process_article.apply_async(
            (url_id,), {"crawl_id": crawl_id}, priority=frontier.PRIORITIES - 1
        )


def _send_next(crawl_id: int | None) -> None:
    """A URL of the crawl is done: send the next one waiting (workers/frontier.py). If
    Redis cannot be reached, the crawl's lease sends it later."""
    if crawl_id is None:
        return
    try:
        _send_waiting(crawl_id)
    except Exception:
        # This URL is stored; failing its task now would only hide that.
        log.exception("could not send the crawl's next URL; its lease will")


def _fail_crawl(crawl_id: int, error: str) -> None:
    def fail() -> None:
        with resources.pool.connection() as conn:
            pipeline.fail_crawl(conn, crawl_id, error)

    wait_out(fail)


@app.task(
    name="workers.process_article",
    bind=True,
    ignore_result=True,
    time_limit=120,
    soft_time_limit=90,
    max_retries=None,  # bounded by settings.fetch_retries / task_retries; host waits by time
)
def process_article(
    self: Task,
    url_id: int,
    failures: int = 0,
    errors: int = 0,
    outages: int = 0,
    turn: bool = False,
    crawl_id: int | None = None,
) -> str | None:
    """Fetch, extract and store one article URL.

    `failures` counts transient fetch failures so far, `errors` unexpected errors and
    `outages` reschedules while a service was down; waits for the host's turn count in none.
    `turn`: this run comes back at a turn of its host reserved for it (it goes first).
    `crawl_id`: the crawl whose frontier sent it; once done it sends the crawl's next URL.
    """
    global _processed
    structlog.contextvars.bind_contextvars(url_id=url_id)
    claimant = pipeline.new_claimant()
    final = failures >= settings.fetch_retries
    retry_kwargs: dict[str, Any] = {
        "failures": failures,
        "errors": errors,
        "outages": outages,
        "crawl_id": crawl_id,
    }

    def process() -> store.Outcome | Literal["retry"] | None:
        with resources.pool.connection() as conn:
            return pipeline.process_article(
                conn,
                resources.fetcher,
                settings,
                url_id,
                final_attempt=final,
                politeness=resources.politeness,
                claimant=claimant,
                has_turn=turn,
            )

    try:
        outcome = wait_out(process)
    except HostBusy as busy:
        host = busy.origin
        metrics.HOST_BUSY.labels(host).inc()
        if busy.wait > MAX_COUNTDOWN:
            given_up = _give_up(url_id, str(busy), status="host_backoff", retryable=True)
            _send_next(crawl_id)
            return given_up
        metrics.HOST_WAIT_SECONDS.labels(host).inc(busy.wait)
        log.debug("host not ready, rescheduled", host=host, wait=busy.wait, pacing=busy.pacing)
        # Back at a turn of its own when the host's pace is the reason (slot() reserved it).
        raise self.retry(
            countdown=busy.wait, kwargs={**retry_kwargs, "turn": busy.pacing}
        ) from None
    except Outage as exc:
        _release(url_id, claimant)
        outage_retry(self, exc, retry_kwargs)
        return None
    except SoftTimeLimitExceeded:
        outcome = _give_up(url_id, "processing exceeded the 90 s task time limit")
    except SystemExit:
        # The cold shutdown stops this child (SIGTERM, see app.py): the message goes back
        # to the queue, and the claim with it.
        _release(url_id, claimant)
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.exception("process_article failed", attempt=errors + 1)
        if errors < settings.task_retries:
            _record_attempt(url_id, claimant, f"attempt {errors + 1} failed, will retry: {error}")
            countdown = min(settings.retry_backoff * (2**errors), MAX_COUNTDOWN)
            raise self.retry(
                countdown=countdown, kwargs={**retry_kwargs, "errors": errors + 1}
            ) from None
        outcome = _give_up(url_id, f"failed {errors + 1} times: {error}")
    _processed += 1
    if _processed % RESET_CACHES_EVERY == 0:
        reset_caches()
    if outcome == "retry":
        countdown = min(settings.retry_backoff * (2**failures), MAX_COUNTDOWN)
        raise self.retry(countdown=countdown, kwargs={**retry_kwargs, "failures": failures + 1})
    # Done, by this run or (None) by an earlier one that may have stopped before sending it.
    _send_next(crawl_id)
    return outcome


def _give_up(
    url_id: int, error: str, *, status: str = "worker_error", retryable: bool = False
) -> Literal["failed"]:
    def record() -> None:
        with resources.pool.connection() as conn:
            pipeline.record_worker_error(conn, url_id, error, status=status, retryable=retryable)

    wait_out(record)
    return "failed"


def _record_attempt(url_id: int, claimant: str, error: str) -> None:
    def record() -> None:
        with resources.pool.connection() as conn:
            pipeline.record_attempt_error(conn, url_id, error)
            pipeline.release_claim(conn, url_id, claimant)

    wait_out(record)


def _release(url_id: int, claimant: str) -> None:
    try:
        with resources.pool.connection(timeout=2.0) as conn:
            pipeline.release_claim(conn, url_id, claimant)
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        # counted as a lost worker then; harmless below settings.max_claims


@app.task(name="workers.housekeeping", ignore_result=True)
def housekeeping() -> int:
    """Send again the work whose messages or workers were lost (crawl and URL leases),
    abandon crawls that keep losing it, and prune fetches rows past their retention."""

    def find() -> tuple[store.LostWork, int]:
        lease = timedelta(seconds=settings.crawl_lease)
        with resources.pool.connection() as conn:
            pruned = store.prune_fetches(conn, timedelta(days=settings.fetch_retention_days))
            if not store.has_suspect_work(conn, lease):
                return store.LostWork(), pruned
        # What the broker still holds is late, not lost. Read before the database: a
        # message taken meanwhile shows up there as a fresh claim.
        held_urls = broker.held_ids(
            resources.redis, "articles", process_article.name, settings.crawl_lease
        )
        held_urls |= frontier.listed(resources.redis)
        held_crawls = broker.held_ids(
            resources.redis, "crawl", crawl_source.name, settings.crawl_lease
        )
        with resources.pool.connection() as conn:
            lost = store.find_lost_work(
                conn,
                lease,
                max_redispatches=settings.max_redispatches,
                held_urls=held_urls,
                held_crawls=held_crawls,
            )
        return lost, pruned

    lost, pruned = wait_out(find)
    # An abandoned crawl's URLs are the next crawl's of its source: its chains stop here.
    wait_out(lambda: frontier.drop(resources.redis, lost.abandoned))
    for crawl_id in lost.crawls:
        crawl_source.delay(crawl_id)
    for url_id, of_crawl in zip(lost.urls, lost.url_crawls, strict=True):
        process_article.apply_async((url_id,), {"crawl_id": of_crawl})
    # New chains for idle crawls' lists: harmless if the old ones are only slow.
    for crawl_id in lost.idle_crawls:
        wait_out(partial(_send_waiting, crawl_id, frontier.PRIORITIES))
    metrics.LOST_WORK.labels("crawl").inc(len(lost.crawls))
    metrics.LOST_WORK.labels("url").inc(len(lost.urls))
    metrics.LOST_WORK.labels("abandoned").inc(len(lost.abandoned))
    if lost.crawls or lost.urls:
        log.warning("re-dispatched lost work", crawls=list(lost.crawls), urls=len(lost.urls))
    if lost.abandoned:
        log.warning("abandoned crawls that kept losing their work", crawls=list(lost.abandoned))
    if pruned:
        log.info("pruned old fetches rows", rows=pruned)
    return len(lost.crawls) + len(lost.urls)
