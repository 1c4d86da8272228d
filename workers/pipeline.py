"""The stages wired together: plain functions, no Celery, what tests and tasks call.

- `crawl_source`: read one source (conditional GET), list its article URLs, record the new
  ones in the frontier; returns the ids of URLs to process.
- `process_article`: fetch one URL, extract, store; records exactly one outcome per URL.

Both take an autocommit connection (multi-statement steps open their own transaction) and a
`Fetcher`; neither raises for a bad page or feed: every failure becomes a fetches row.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
import structlog

from workers import frontier, metrics, store
from workers.dedup import InvalidURL, canonicalise_url
from workers.discover import Discovery, DiscoveryError, discover
from workers.extract import Article, EmptyExtraction, FeedHints, TooComplex, extract_article
from workers.fetch import Expect, Fetcher, FetchResult, decode_page
from workers.politeness import (
    HostBusy,
    HostPolicy,
    Politeness,
    origin_of,
    parse_retry_after,
    policy_for,
)
from workers.schedule import Bounds, next_interval, source_hint
from workers.settings import Settings

log = structlog.get_logger("newsagg.pipeline")

# A sitemap index may list thousands of children; a crawl reads at most this many.
MAX_CHILD_SITEMAPS = 20
MAX_SITEMAP_DEPTH = 3
# A crawl reads one source URL at a time, so it may wait longer in place for its host.
SOURCE_MAX_WAIT = 60.0


@dataclass(frozen=True, slots=True)
class CrawlPlan:
    """What crawl_source decided: the URLs to process (empty when the crawl is over)."""

    crawl_id: int
    url_ids: tuple[int, ...]


def fetch_record(
    result: FetchResult,
    purpose: Literal["source", "article"] = "article",
    *,
    status: str | None = None,
    error: str | None = None,
) -> store.FetchRecord:
    """A fetches row for a FetchResult, optionally with a later stage's verdict."""
    return store.FetchRecord(
        url=result.url,
        status=status or result.status,
        purpose=purpose,
        final_url=result.final_url,
        http_status=result.http_status,
        error=error if error is not None else result.error,
        content_type=result.content_type,
        bytes=len(result.body) if result.body else None,
        elapsed_ms=result.elapsed_ms,
    )


def polite_fetch(
    fetcher: Fetcher,
    politeness: Politeness | None,
    url: str,
    policy: HostPolicy,
    *,
    expect: Expect,
    crawl_delay: float | None = None,
    max_wait: float | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    has_turn: bool = False,
) -> FetchResult:
    """Fetch within the host's fleet-wide pacing, and let the host's answer steer it.

    Raises HostBusy when the host's turn is further away than max_wait. Without a
    Politeness (unit tests of other stages) it is a plain fetch.
    """
    purpose = "article" if expect == "html" else "source"
    if politeness is None:
        result = fetcher.fetch(url, expect=expect, etag=etag, last_modified=last_modified)
        _count_fetch(purpose, result)
        return result
    asked = time.monotonic()
    with politeness.slot(url, policy, crawl_delay, max_wait, has_turn):
        waited = time.monotonic() - asked
        result = fetcher.fetch(url, expect=expect, etag=etag, last_modified=last_modified)
    metrics.POLITENESS_WAIT.observe(waited)
    if waited >= 0.001:
        metrics.HOST_WAIT_SECONDS.labels(origin_of(url)).inc(waited)
    _count_fetch(purpose, result)
    note = politeness.record(url, result)
    if note:
        result = replace(result, error=f"{result.error}; {note}" if result.error else note)
    return result


def _count_fetch(purpose: str, result: FetchResult) -> None:
    metrics.PAGES_FETCHED.labels(purpose, result.status).inc()
    metrics.FETCH_SECONDS.labels(purpose).observe(result.elapsed_ms / 1000)


def crawl_source(
    conn: psycopg.Connection[Any],
    fetcher: Fetcher,
    settings: Settings,
    crawl_id: int,
    *,
    politeness: Politeness | None = None,
    now: datetime | None = None,
    jitter: float | None = None,
) -> CrawlPlan:
    """Read the crawl's source and queue the article URLs it lists; then schedule the
    source's next crawl from what this read learned. A backfill walks sitemaps instead.

    `now` and `jitter` exist for tests; by default the database clock and a random jitter.
    """
    target = store.start_crawl(conn, crawl_id)
    if target is None:
        log.info("crawl not active, nothing to do", crawl_id=crawl_id)
        return CrawlPlan(crawl_id, ())
    source = target.source
    structlog.contextvars.bind_contextvars(crawl_id=crawl_id, source=source.name)
    policy = policy_for(settings, source.host_delay, source.host_concurrency)
    if target.trigger == "backfill":
        return _backfill(conn, fetcher, settings, politeness, policy, crawl_id, target)
    expect: Expect = "html" if source.kind == "page" else "xml"
    result = polite_fetch(
        fetcher,
        politeness,
        source.url,
        policy,
        expect=expect,
        max_wait=SOURCE_MAX_WAIT,
        etag=source.etag,
        last_modified=source.last_modified,
    )
    hint = source_hint(None, result.cache_control, parse_retry_after(result.retry_after))
    sha = hashlib.sha256(result.body).hexdigest() if result.ok else None
    if result.status == "not_modified" or (sha is not None and sha == source.body_sha256):
        # Some servers send fresh validators with a stale body; an identical body is
        # "not modified" too.
        unchanged = (
            None if result.status == "not_modified" else "body unchanged since the last crawl"
        )
        store.record_fetch(
            conn,
            fetch_record(result, "source", status="not_modified", error=unchanged),
            crawl_id=crawl_id,
            source_id=source.id,
        )
        store.save_source_validators(
            conn,
            source.id,
            etag=result.etag or source.etag,
            last_modified=result.last_modified or source.last_modified,
            body=None,
            ok=True,
        )
        _reschedule(conn, settings, source, 0, hint, now, jitter)
        # Nothing new listed, but URLs a dead crawl left pending are taken over.
        ids = store.queue_urls(
            conn,
            crawl_id,
            source.id,
            [],
            max_attempts=settings.fetch_retries + 1,
            on_crawl_end=metrics.observe_crawl_end,
        )
        return CrawlPlan(crawl_id, tuple(ids))
    if not result.ok:
        return _fail_source(conn, settings, crawl_id, source, result, None, hint, now, jitter)
    try:
        found = discover(source.kind, result.body, result.final_url or source.url)  # type: ignore[arg-type]
    except DiscoveryError as exc:
        error = f"cannot read {source.kind}: {exc}"
        return _fail_source(conn, settings, crawl_id, source, result, error, hint, now, jitter)
    store.record_fetch(conn, fetch_record(result, "source"), crawl_id=crawl_id, source_id=source.id)
    if found.child_sitemaps:
        found, _ = _read_child_sitemaps(
            conn,
            fetcher,
            politeness,
            policy,
            crawl_id,
            source,
            found,
            max_sitemaps=MAX_CHILD_SITEMAPS,
        )
    listed = list_candidates(found, settings.max_urls_per_crawl)
    ids = store.queue_urls(
        conn,
        crawl_id,
        source.id,
        listed,
        max_attempts=settings.fetch_retries + 1,
        on_crawl_end=metrics.observe_crawl_end,
    )
    store.save_source_validators(
        conn,
        source.id,
        etag=result.etag,
        last_modified=result.last_modified,
        body=result.body,
        ok=True,
    )
    ttl_hint = source_hint(found.ttl_seconds, result.cache_control, None)
    _reschedule(conn, settings, source, 0, ttl_hint, now, jitter)
    log.info(
        "crawl listed URLs",
        crawl_id=crawl_id,
        source=source.name,
        found=len(listed),
        queued=len(ids),
    )
    return CrawlPlan(crawl_id, tuple(ids))


def dispatch_plan(
    conn: psycopg.Connection[Any], url_ids: tuple[int, ...]
) -> tuple[list[tuple[int, int]], list[int]]:
    """The frontier's plan for a crawl's URLs (workers/frontier.py): (id, priority) of those
    to queue now, and the ids of those to hold back, in order."""
    return frontier.plan((url_id, url) for url_id, url, _d, _c in store.url_targets(conn, url_ids))


def fail_crawl(conn: psycopg.Connection[Any], crawl_id: int, error: str) -> None:
    """End a crawl whose source could not be read (or whose reading kept crashing)."""
    seconds = store.fail_crawl(conn, crawl_id, error)
    if seconds is not None:
        metrics.observe_crawl_end("failed", seconds)


def _reschedule(
    conn: psycopg.Connection[Any],
    settings: Settings,
    source: store.Source,
    failures: int,
    hint: timedelta | None,
    now: datetime | None,
    jitter: float | None,
) -> None:
    """Set the source's next crawl from its publishing rate, failures and hints."""
    bounds = Bounds(
        minimum=source.min_interval or timedelta(seconds=settings.min_interval),
        maximum=source.max_interval or timedelta(seconds=settings.max_interval),
        unhealthy_after=settings.unhealthy_after,
        unhealthy_interval=timedelta(seconds=settings.unhealthy_interval),
    )
    decision = next_interval(
        new_last_week=store.count_new_urls(conn, source.id, now=now),
        consecutive_failures=failures,
        bounds=bounds,
        hint=hint,
        jitter=random.random() if jitter is None else jitter,
    )
    store.set_schedule(
        conn,
        source.id,
        decision.interval,
        healthy=decision.healthy,
        reason=decision.reason,
        now=now,
    )


def _fail_source(
    conn: psycopg.Connection[Any],
    settings: Settings,
    crawl_id: int,
    source: store.Source,
    result: FetchResult,
    error: str | None,
    hint: timedelta | None,
    now: datetime | None,
    jitter: float | None,
) -> CrawlPlan:
    status = result.status if error is None else "parse_error"
    message = error or result.error or result.status
    store.record_fetch(
        conn,
        fetch_record(result, "source", status=status, error=message),
        crawl_id=crawl_id,
        source_id=source.id,
    )
    failures = store.save_source_validators(
        conn, source.id, etag=None, last_modified=None, body=None, ok=False
    )
    _reschedule(conn, settings, source, failures, hint, now, jitter)
    fail_crawl(conn, crawl_id, f"{message} ({result.url})")
    log.warning("crawl failed", crawl_id=crawl_id, url=result.url, status=status, error=message)
    return CrawlPlan(crawl_id, ())


def _backfill(
    conn: psycopg.Connection[Any],
    fetcher: Fetcher,
    settings: Settings,
    politeness: Politeness | None,
    policy: HostPolicy,
    crawl_id: int,
    target: store.CrawlTarget,
) -> CrawlPlan:
    """Walk the source's sitemaps newest first down to `backfill_since`, queueing what the
    frontier has not seen. Stored URLs are never fetched again, so an interrupted backfill
    resumes where it stopped when run again (its pending URLs are taken over)."""
    source = target.source
    roots = (
        [source.url]
        if source.kind == "sitemap"
        else _site_sitemaps(fetcher, politeness, source.url)
    )
    index = Discovery(
        candidates=(), child_sitemaps=tuple(roots), child_lastmods=tuple(None for _ in roots)
    )
    found, read = _read_child_sitemaps(
        conn,
        fetcher,
        politeness,
        policy,
        crawl_id,
        source,
        index,
        max_sitemaps=settings.backfill_max_sitemaps,
        since=target.backfill_since,
        include_root=True,
    )
    if read == 0:
        fail_crawl(conn, crawl_id, f"no readable sitemap for {source.name} ({', '.join(roots)})")
        return CrawlPlan(crawl_id, ())
    since = target.backfill_since
    kept = [
        c
        for c in found.candidates
        if since is None or c.published_at is None or c.published_at >= since
    ]
    listed = list_candidates(Discovery(candidates=tuple(kept)), settings.backfill_max_urls)
    ids = store.queue_urls(
        conn,
        crawl_id,
        source.id,
        listed,
        max_attempts=settings.fetch_retries + 1,
        on_crawl_end=metrics.observe_crawl_end,
    )
    log.info(
        "backfill listed URLs",
        crawl_id=crawl_id,
        source=source.name,
        found=len(listed),
        queued=len(ids),
        since=since,
    )
    return CrawlPlan(crawl_id, tuple(ids))


def _site_sitemaps(fetcher: Fetcher, politeness: Politeness | None, url: str) -> list[str]:
    """The sitemaps a site declares in robots.txt, else its /sitemap.xml."""
    origin = origin_of(url)
    declared = politeness.declared_sitemaps(origin, fetcher) if politeness is not None else []
    return declared or [f"{origin}/sitemap.xml"]


def _read_child_sitemaps(
    conn: psycopg.Connection[Any],
    fetcher: Fetcher,
    politeness: Politeness | None,
    policy: HostPolicy,
    crawl_id: int,
    source: store.Source,
    index: Discovery,
    *,
    max_sitemaps: int,
    since: datetime | None = None,
    include_root: bool = False,
) -> tuple[Discovery, int]:
    """Follow sitemap indexes, newest child first, each sitemap once (the source itself
    included), skipping children last modified before `since`, at most `max_sitemaps`.
    Returns the URLs found and how many sitemaps could be read."""
    source_id = source.id
    candidates = list(index.candidates)
    # (negated lastmod for newest first, order seen, url, depth); undated children sort last.
    queue: list[tuple[float, int, str, int]] = []
    seen: set[str] = set() if include_root else {source.url, _sitemap_key(source.url)}
    counter = 0

    def push(urls: tuple[str, ...], lastmods: tuple[datetime | None, ...], depth: int) -> None:
        nonlocal counter
        for child_url, lastmod in zip(urls, lastmods or (None,) * len(urls), strict=False):
            if since is not None and lastmod is not None and lastmod < since:
                continue
            counter += 1
            key = -lastmod.timestamp() if lastmod else float("inf")
            heapq.heappush(queue, (key, counter, child_url, depth))

    push(index.child_sitemaps, index.child_lastmods, 1)
    read = readable = 0
    while queue and read < max_sitemaps:
        _, _, url, depth = heapq.heappop(queue)
        if url in seen or _sitemap_key(url) in seen or depth > MAX_SITEMAP_DEPTH + 1:
            continue
        seen.update((url, _sitemap_key(url)))
        read += 1
        result = polite_fetch(
            fetcher, politeness, url, policy, expect="xml", max_wait=SOURCE_MAX_WAIT
        )
        if not result.ok:
            store.record_fetch(
                conn, fetch_record(result, "source"), crawl_id=crawl_id, source_id=source_id
            )
            continue
        try:
            child = discover("sitemap", result.body, result.final_url or url)
        except DiscoveryError as exc:
            store.record_fetch(
                conn,
                fetch_record(
                    result, "source", status="parse_error", error=f"cannot read sitemap: {exc}"
                ),
                crawl_id=crawl_id,
                source_id=source_id,
            )
            continue
        store.record_fetch(
            conn, fetch_record(result, "source"), crawl_id=crawl_id, source_id=source_id
        )
        readable += 1
        candidates.extend(child.candidates)
        push(child.child_sitemaps, child.child_lastmods, depth + 1)
    candidates.sort(
        key=lambda c: (
            c.published_at is None,
            -(c.published_at.timestamp() if c.published_at else 0),
        )
    )
    return Discovery(candidates=tuple(candidates)), readable


def _sitemap_key(url: str) -> str:
    try:
        return canonicalise_url(url)
    except InvalidURL:
        return url


# Longer URLs are not articles (and would not fit a btree index entry: PostgreSQL refuses
# keys over about 2,700 bytes, every time, which would make the crawl fail again and again).
MAX_URL_LENGTH = 2000


def list_candidates(found: Discovery, limit: int) -> list[store.Listed]:
    """Canonicalise, drop unusable, over-long and repeated URLs, keep the first `limit`
    (newest first)."""
    listed: dict[str, store.Listed] = {}
    for candidate in found.candidates:
        try:
            url = canonicalise_url(candidate.url)
        except InvalidURL:
            continue
        if len(url.encode("utf-8", "replace")) > MAX_URL_LENGTH:
            continue
        if url not in listed:
            listed[url] = store.Listed(
                url, candidate.title, candidate.published_at, candidate.author
            )
        if len(listed) >= limit:
            break
    return list(listed.values())


def process_article(
    conn: psycopg.Connection[Any],
    fetcher: Fetcher,
    settings: Settings,
    url_id: int,
    *,
    final_attempt: bool = True,
    politeness: Politeness | None = None,
    claimant: str | None = None,
    has_turn: bool = False,
) -> store.Outcome | Literal["retry"] | None:
    """Fetch, extract and store one frontier URL (`has_turn`: it comes back at a turn of
    its host reserved for it, see Politeness.slot).

    Returns the outcome, None when the URL was already processed (a redelivered task), or
    "retry" when the fetch failed transiently and final_attempt is False: the attempt is
    recorded and the caller schedules another. Raises HostBusy when the host's turn is not
    near: nothing is recorded and the caller schedules the URL for later.

    `claimant` names this attempt (unique per task run, the same when it repeats itself
    after an outage); a URL whose earlier claimants were lost `settings.max_claims` times
    fails as worker_lost instead of being tried again.
    """
    claimant = claimant or new_claimant()
    pending = store.claim_url(conn, url_id, claimant)
    if pending is None:
        return None
    # Bound for the rest of the task (the task's end clears it), so that every line logged
    # about this page, an error's traceback included, says which page.
    structlog.contextvars.bind_contextvars(
        url_id=url_id, url=pending.url, crawl_id=pending.crawl_id, source=pending.source_name
    )
    if pending.claims >= settings.max_claims:
        lost = store.FetchRecord(
            url=pending.url,
            status="worker_lost",
            error=f"the worker processing this URL was lost {pending.claims} times "
            "(killed, out of memory or past the hard time limit); not tried again",
        )
        metrics.EXTRACTION_FAILURES.labels("worker_lost").inc()
        return _finish(conn, url_id, lost, None, settings)
    try:
        return _process_claimed(
            conn, fetcher, settings, pending, claimant, final_attempt, politeness, has_turn
        )
    except HostBusy:
        # Handed back, not lost: the next claim must not count this one.
        store.release_claim(conn, url_id, claimant)
        raise


def new_claimant() -> str:
    """host:pid:attempt, unique per attempt, readable in discovered_urls.claimed_by."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def release_claim(conn: psycopg.Connection[Any], url_id: int, claimant: str) -> None:
    """The caller reschedules the URL itself (after an error): not a lost worker."""
    store.release_claim(conn, url_id, claimant)


def _process_claimed(
    conn: psycopg.Connection[Any],
    fetcher: Fetcher,
    settings: Settings,
    pending: store.PendingURL,
    claimant: str,
    final_attempt: bool,
    politeness: Politeness | None,
    has_turn: bool = False,
) -> store.Outcome | Literal["retry"] | None:
    url_id = pending.id
    crawl_delay = None
    if politeness is not None:
        verdict = politeness.robots(pending.url, fetcher)
        if not verdict.allowed:
            denied = store.FetchRecord(
                url=pending.url, status="robots_denied", error=verdict.reason
            )
            return _finish(conn, url_id, denied, None, settings)
        crawl_delay = verdict.crawl_delay
    policy = policy_for(settings, pending.host_delay, pending.host_concurrency)
    result = polite_fetch(
        fetcher,
        politeness,
        pending.url,
        policy,
        expect="html",
        crawl_delay=crawl_delay,
        has_turn=has_turn,
    )
    if not result.ok:
        if result.retryable and not final_attempt:
            store.record_fetch(
                conn, fetch_record(result), crawl_id=pending.crawl_id, source_id=pending.source_id
            )
            store.release_claim(conn, url_id, claimant)
            log.info("fetch failed, will retry", status=result.status, error=result.error)
            return "retry"
        return _finish(
            conn, url_id, fetch_record(result), None, settings, retryable=result.retryable
        )
    final_url = result.final_url or pending.url
    hints = FeedHints(pending.feed_title, pending.feed_published_at, pending.feed_author)
    started = time.perf_counter()
    try:
        html, utf8 = decode_page(result.body, result.content_type)
        article = extract_article(
            html,
            final_url,
            hints,
            min_text_chars=settings.min_text_chars,
            max_elements=settings.max_tree_elements,
            max_depth=settings.max_tree_depth,
            utf8=utf8,
        )
    except (EmptyExtraction, TooComplex) as exc:
        status = "too_complex" if isinstance(exc, TooComplex) else "empty_extraction"
        metrics.EXTRACTION_FAILURES.labels(status).inc()
        return _finish(
            conn, url_id, fetch_record(result, status=status, error=str(exc)), None, settings
        )
    finally:
        metrics.EXTRACT_SECONDS.observe(time.perf_counter() - started)
    return _finish(
        conn,
        url_id,
        fetch_record(result),
        article,
        settings,
        # Shingles, MinHash and story terms are CPU work: done here, before the
        # transaction takes its locks.
        fingerprint=store.fingerprint_article(article, settings.near_dup_min_words),
    )


def _finish(
    conn: psycopg.Connection[Any],
    url_id: int,
    fetch: store.FetchRecord,
    article: Article | None,
    settings: Settings,
    *,
    retryable: bool = False,
    fingerprint: store.Fingerprint | None = None,
) -> store.Outcome | None:
    """finish_url, counted and logged: one line per processed URL."""
    outcome = store.finish_url(
        conn,
        url_id,
        fetch,
        article,
        retryable=retryable,
        fingerprint=fingerprint,
        story_window_days=settings.story_window_days,
        near_dup_min_words=settings.near_dup_min_words,
        on_crawl_end=metrics.observe_crawl_end,
    )
    if outcome is None:
        return None
    metrics.ARTICLES.labels(outcome).inc()
    if outcome == "failed":
        log.warning("article failed", status=fetch.status, error=fetch.error)
    else:
        log.info("article processed", outcome=outcome, final_url=fetch.final_url)
    return outcome


def record_worker_error(
    conn: psycopg.Connection[Any],
    url_id: int,
    error: str,
    *,
    status: str = "worker_error",
    retryable: bool = False,
    settings: Settings | None = None,
) -> None:
    """Close a URL whose processing crashed, ran out of time or cannot get its host's turn,
    so its crawl can finish."""
    pending = store.pending_url(conn, url_id)
    if pending is None:
        return
    structlog.contextvars.bind_contextvars(
        url_id=url_id, url=pending.url, crawl_id=pending.crawl_id, source=pending.source_name
    )
    record = store.FetchRecord(url=pending.url, status=status, error=error[:2000])
    if status == "worker_error":
        metrics.EXTRACTION_FAILURES.labels(status).inc()
    outcome = store.finish_url(
        conn, url_id, record, None, retryable=retryable, on_crawl_end=metrics.observe_crawl_end
    )
    if outcome is not None:
        metrics.ARTICLES.labels(outcome).inc()
        log.warning("article failed", status=status, error=error[:500])


def record_attempt_error(conn: psycopg.Connection[Any], url_id: int, error: str) -> None:
    """A failed attempt that will be retried: a fetches row saying so, the URL left pending."""
    pending = store.pending_url(conn, url_id)
    if pending is None:
        return
    store.record_fetch(
        conn,
        store.FetchRecord(url=pending.url, status="worker_error", error=error[:2000]),
        crawl_id=pending.crawl_id,
        source_id=pending.source_id,
    )
