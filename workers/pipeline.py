"""The stages wired together: plain functions, no Celery, what tests and tasks call.

- `crawl_source`: read one source (conditional GET), list its article URLs, record the new
  ones in the frontier; returns the ids of URLs to process.
- `process_article`: fetch one URL, extract, store; records exactly one outcome per URL.

Both take an autocommit connection (multi-statement steps open their own transaction) and a
`Fetcher`; neither raises for a bad page or feed: every failure becomes a fetches row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Literal

import psycopg
import structlog

from workers import store
from workers.dedup import InvalidURL, canonicalise_url
from workers.discover import Discovery, DiscoveryError, discover
from workers.extract import EmptyExtraction, FeedHints, TooComplex, extract_article
from workers.fetch import Expect, Fetcher, FetchResult, decode_body
from workers.politeness import HostPolicy, Politeness, policy_for
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
) -> FetchResult:
    """Fetch within the host's fleet-wide pacing, and let the host's answer steer it.

    Raises HostBusy when the host's turn is further away than max_wait. Without a
    Politeness (unit tests of other stages) it is a plain fetch.
    """
    if politeness is None:
        return fetcher.fetch(url, expect=expect, etag=etag, last_modified=last_modified)
    with politeness.slot(url, policy, crawl_delay, max_wait):
        result = fetcher.fetch(url, expect=expect, etag=etag, last_modified=last_modified)
    note = politeness.record(url, result)
    if note:
        result = replace(result, error=f"{result.error}; {note}" if result.error else note)
    return result


def crawl_source(
    conn: psycopg.Connection[Any],
    fetcher: Fetcher,
    settings: Settings,
    crawl_id: int,
    *,
    politeness: Politeness | None = None,
) -> CrawlPlan:
    """Read the crawl's source and queue the article URLs it lists."""
    source = store.start_crawl(conn, crawl_id)
    if source is None:
        log.info("crawl not active, nothing to do", crawl_id=crawl_id)
        return CrawlPlan(crawl_id, ())
    expect: Expect = "html" if source.kind == "page" else "xml"
    policy = policy_for(settings, source.host_delay, source.host_concurrency)
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
    sha = hashlib.sha256(result.body).hexdigest() if result.ok else None
    if result.status == "not_modified" or (sha is not None and sha == source.body_sha256):
        # Some servers send fresh validators with a stale body; an identical body is
        # "not modified" too.
        store.record_fetch(
            conn,
            fetch_record(
                result,
                "source",
                status="not_modified",
                error=None
                if result.status == "not_modified"
                else "body unchanged since the last crawl",
            ),
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
        store.queue_urls(conn, crawl_id, source.id, [], max_attempts=settings.fetch_retries + 1)
        return CrawlPlan(crawl_id, ())
    if not result.ok:
        return _fail_source(conn, crawl_id, source.id, result, None)
    try:
        found = discover(source.kind, result.body, result.final_url or source.url)  # type: ignore[arg-type]
    except DiscoveryError as exc:
        return _fail_source(conn, crawl_id, source.id, result, f"cannot read {source.kind}: {exc}")
    store.record_fetch(conn, fetch_record(result, "source"), crawl_id=crawl_id, source_id=source.id)
    if found.child_sitemaps:
        found = _read_child_sitemaps(conn, fetcher, politeness, policy, crawl_id, source, found)
    listed = list_candidates(found, settings.max_urls_per_crawl)
    ids = store.queue_urls(
        conn, crawl_id, source.id, listed, max_attempts=settings.fetch_retries + 1
    )
    store.save_source_validators(
        conn,
        source.id,
        etag=result.etag,
        last_modified=result.last_modified,
        body=result.body,
        ok=True,
    )
    log.info(
        "crawl listed URLs",
        crawl_id=crawl_id,
        source=source.name,
        found=len(listed),
        queued=len(ids),
    )
    return CrawlPlan(crawl_id, tuple(ids))


def _fail_source(
    conn: psycopg.Connection[Any],
    crawl_id: int,
    source_id: int,
    result: FetchResult,
    error: str | None,
) -> CrawlPlan:
    status = result.status if error is None else "parse_error"
    message = error or result.error or result.status
    store.record_fetch(
        conn,
        fetch_record(result, "source", status=status, error=message),
        crawl_id=crawl_id,
        source_id=source_id,
    )
    store.save_source_validators(
        conn, source_id, etag=None, last_modified=None, body=None, ok=False
    )
    store.fail_crawl(conn, crawl_id, f"{message} ({result.url})")
    log.warning("crawl failed", crawl_id=crawl_id, url=result.url, status=status, error=message)
    return CrawlPlan(crawl_id, ())


def _read_child_sitemaps(
    conn: psycopg.Connection[Any],
    fetcher: Fetcher,
    politeness: Politeness | None,
    policy: HostPolicy,
    crawl_id: int,
    source: store.Source,
    index: Discovery,
) -> Discovery:
    """Follow a sitemap index breadth-first (bounded, each sitemap once, itself included)."""
    source_id = source.id
    candidates = list(index.candidates)
    queue = [(url, 1) for url in index.child_sitemaps]
    # An index that lists itself (or a cycle of indexes) must not be read again.
    seen: set[str] = {source.url, _sitemap_key(source.url)}
    read = 0
    while queue and read < MAX_CHILD_SITEMAPS:
        url, depth = queue.pop(0)
        if url in seen or _sitemap_key(url) in seen or depth > MAX_SITEMAP_DEPTH:
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
        candidates.extend(child.candidates)
        queue.extend((u, depth + 1) for u in child.child_sitemaps if u not in seen)
    candidates.sort(
        key=lambda c: (
            c.published_at is None,
            -(c.published_at.timestamp() if c.published_at else 0),
        )
    )
    return Discovery(candidates=tuple(candidates))


def _sitemap_key(url: str) -> str:
    try:
        return canonicalise_url(url)
    except InvalidURL:
        return url


def list_candidates(found: Discovery, limit: int) -> list[store.Listed]:
    """Canonicalise, drop unusable and repeated URLs, keep the first `limit` (newest first)."""
    listed: dict[str, store.Listed] = {}
    for candidate in found.candidates:
        try:
            url = canonicalise_url(candidate.url)
        except InvalidURL:
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
) -> store.Outcome | Literal["retry"] | None:
    """Fetch, extract and store one frontier URL.

    Returns the outcome, None when the URL was already processed (a redelivered task), or
    "retry" when the fetch failed transiently and final_attempt is False: the attempt is
    recorded and the caller schedules another. Raises HostBusy when the host's turn is not
    near: nothing is recorded and the caller schedules the URL for later.
    """
    pending = store.pending_url(conn, url_id)
    if pending is None:
        return None
    crawl_delay = None
    if politeness is not None:
        verdict = politeness.robots(pending.url, fetcher)
        if not verdict.allowed:
            denied = store.FetchRecord(
                url=pending.url, status="robots_denied", error=verdict.reason
            )
            return store.finish_url(conn, url_id, denied, None)
        crawl_delay = verdict.crawl_delay
    policy = policy_for(settings, pending.host_delay, pending.host_concurrency)
    result = polite_fetch(
        fetcher, politeness, pending.url, policy, expect="html", crawl_delay=crawl_delay
    )
    if not result.ok:
        if result.retryable and not final_attempt:
            store.record_fetch(
                conn, fetch_record(result), crawl_id=pending.crawl_id, source_id=pending.source_id
            )
            return "retry"
        return store.finish_url(
            conn, url_id, fetch_record(result), None, retryable=result.retryable
        )
    final_url = result.final_url or pending.url
    hints = FeedHints(pending.feed_title, pending.feed_published_at, pending.feed_author)
    try:
        html, _encoding = decode_body(result.body, result.content_type)
        article = extract_article(
            html,
            final_url,
            hints,
            min_text_chars=settings.min_text_chars,
            max_elements=settings.max_tree_elements,
            max_depth=settings.max_tree_depth,
        )
    except (EmptyExtraction, TooComplex) as exc:
        status = "too_complex" if isinstance(exc, TooComplex) else "empty_extraction"
        return store.finish_url(
            conn, url_id, fetch_record(result, status=status, error=str(exc)), None
        )
    return store.finish_url(
        conn,
        url_id,
        fetch_record(result),
        article,
    )


def record_worker_error(
    conn: psycopg.Connection[Any],
    url_id: int,
    error: str,
    *,
    status: str = "worker_error",
    retryable: bool = False,
) -> None:
    """Close a URL whose processing crashed, ran out of time or cannot get its host's turn,
    so its crawl can finish."""
    pending = store.pending_url(conn, url_id)
    if pending is None:
        return
    record = store.FetchRecord(url=pending.url, status=status, error=error[:2000])
    store.finish_url(conn, url_id, record, None, retryable=retryable)
