"""All SQL, as plain parameterised queries in functions that take a connection.

The caller owns the transaction (``with pool.connection() as conn`` commits on success);
functions that must be atomic open a nested ``conn.transaction()`` themselves. Every write is
idempotent under re-delivery: unique keys, ``ON CONFLICT``, and state checks under
``FOR UPDATE``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from workers.dedup import content_hash
from workers.extract import Article

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.sql"
SourceKind = Literal["feed", "sitemap", "page"]
Trigger = Literal["schedule", "manual", "backfill"]
# What storing one article URL came to; each maps to a counter column of crawls.
Outcome = Literal["stored", "duplicate", "updated", "unchanged", "failed"]
OUTCOME_COLUMNS: dict[str, str] = {
    "stored": "articles_stored",
    "duplicate": "duplicates",
    "updated": "updated",
    "unchanged": "unchanged",
    "failed": "failures",
}
ACTIVE = ("queued", "running")


class StoreError(RuntimeError):
    """A store operation could not be done; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Source:
    id: int
    name: str
    url: str
    kind: str
    enabled: bool
    crawl_interval: timedelta
    next_crawl_at: datetime
    etag: str | None
    last_modified: str | None
    body_sha256: str | None
    host_delay: float | None
    host_concurrency: int | None


@dataclass(frozen=True, slots=True)
class Crawl:
    id: int
    source_id: int
    trigger: str
    status: str
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    urls_found: int
    urls_new: int
    urls_queued: int
    urls_done: int
    articles_stored: int
    duplicates: int
    updated: int
    unchanged: int
    failures: int
    error: str | None


@dataclass(frozen=True, slots=True)
class PendingURL:
    """An article URL claimed for processing, with what the feed said about it."""

    id: int
    url: str
    source_id: int | None
    crawl_id: int | None
    feed_title: str | None
    feed_published_at: datetime | None
    feed_author: str | None
    host_delay: float | None = None
    host_concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """One row of fetches."""

    url: str
    status: str
    purpose: Literal["source", "article"] = "article"
    final_url: str | None = None
    http_status: int | None = None
    error: str | None = None
    content_type: str | None = None
    bytes: int | None = None
    elapsed_ms: int | None = None


# -- schema -----------------------------------------------------------------------------


def create_database(admin_url: str, dbname: str) -> bool:
    """CREATE DATABASE dbname unless it exists; True when it was created."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return True


def apply_schema(conn: psycopg.Connection[Any], schema: str | None = None) -> None:
    """Apply schema.sql in one transaction; an advisory lock serialises concurrent inits."""
    text = schema if schema is not None else SCHEMA_FILE.read_text(encoding="utf-8")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('newsagg schema', 0))")
        conn.execute(text.encode("utf-8"))


# -- sources ----------------------------------------------------------------------------

_SOURCE_COLUMNS = (
    "id, name, url, kind, enabled, crawl_interval, next_crawl_at, etag, last_modified, "
    "body_sha256, host_delay, host_concurrency"
)


def add_source(
    conn: psycopg.Connection[Any],
    name: str,
    url: str,
    kind: SourceKind,
    interval: timedelta | None = None,
    *,
    host_delay: float | None = None,
    host_concurrency: int | None = None,
    replace: bool = False,
) -> Source:
    """Insert a source; with replace=True update the configuration of an existing one."""
    conflict = (
        "DO UPDATE SET url = EXCLUDED.url, kind = EXCLUDED.kind, "
        "crawl_interval = EXCLUDED.crawl_interval, host_delay = EXCLUDED.host_delay, "
        "host_concurrency = EXCLUDED.host_concurrency, updated_at = now()"
        if replace
        else "DO NOTHING"
    )
    with conn.cursor(row_factory=class_row(Source)) as cur:
        row = cur.execute(
            f"INSERT INTO sources (name, url, kind, crawl_interval, host_delay, host_concurrency) "
            f"VALUES (%s, %s, %s, coalesce(%s, interval '15 minutes'), %s, %s) "
            f"ON CONFLICT (name) {conflict} RETURNING {_SOURCE_COLUMNS}",
            (name, url, kind, interval, host_delay, host_concurrency),
        ).fetchone()
    if row is None:
        raise StoreError(f"a source named {name!r} already exists")
    return row


def get_source(conn: psycopg.Connection[Any], source_id: int) -> Source | None:
    with conn.cursor(row_factory=class_row(Source)) as cur:
        return cur.execute(
            f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE id = %s", (source_id,)
        ).fetchone()


def find_sources(conn: psycopg.Connection[Any], names: list[str] | None = None) -> list[Source]:
    """Sources by name (all when names is None), ordered by name."""
    with conn.cursor(row_factory=class_row(Source)) as cur:
        if names is None:
            return cur.execute(f"SELECT {_SOURCE_COLUMNS} FROM sources ORDER BY name").fetchall()
        return cur.execute(
            f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE name = ANY(%s) ORDER BY name", (names,)
        ).fetchall()


def remove_source(conn: psycopg.Connection[Any], name: str) -> bool:
    """Delete a source (its crawls, fetches and frontier go with it; articles stay)."""
    return conn.execute("DELETE FROM sources WHERE name = %s", (name,)).rowcount > 0


def save_source_validators(
    conn: psycopg.Connection[Any],
    source_id: int,
    *,
    etag: str | None,
    last_modified: str | None,
    body: bytes | None,
    ok: bool,
) -> None:
    """After reading a source: keep validators for the next conditional GET, count failures."""
    conn.execute(
        """
        UPDATE sources
           SET etag = CASE WHEN %(ok)s THEN %(etag)s ELSE etag END,
               last_modified = CASE WHEN %(ok)s THEN %(lm)s ELSE last_modified END,
               body_sha256 = CASE WHEN %(ok)s THEN coalesce(%(sha)s, body_sha256)
                                  ELSE body_sha256 END,
               consecutive_failures = CASE WHEN %(ok)s THEN 0 ELSE consecutive_failures + 1 END,
               updated_at = now()
         WHERE id = %(id)s
        """,
        {
            "ok": ok,
            "etag": etag,
            "lm": last_modified,
            "sha": hashlib.sha256(body).hexdigest() if body is not None else None,
            "id": source_id,
        },
    )


def source_status(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM source_status ORDER BY name").fetchall()


# -- crawls -----------------------------------------------------------------------------

_CRAWL_COLUMNS = (
    "id, source_id, trigger, status, queued_at, started_at, finished_at, urls_found, urls_new, "
    "urls_queued, urls_done, articles_stored, duplicates, updated, unchanged, failures, error"
)


def create_crawl(conn: psycopg.Connection[Any], source_id: int, trigger: Trigger) -> int | None:
    """Queue a crawl; None when the source already has one queued or running."""
    row = conn.execute(
        "INSERT INTO crawls (source_id, trigger) VALUES (%s, %s) "
        "ON CONFLICT (source_id) WHERE status IN ('queued', 'running') DO NOTHING RETURNING id",
        (source_id, trigger),
    ).fetchone()
    return int(row[0]) if row else None


def active_crawl(conn: psycopg.Connection[Any], source_id: int) -> int | None:
    row = conn.execute(
        "SELECT id FROM crawls WHERE source_id = %s AND status IN ('queued', 'running')",
        (source_id,),
    ).fetchone()
    return int(row[0]) if row else None


def get_crawl(conn: psycopg.Connection[Any], crawl_id: int) -> Crawl | None:
    with conn.cursor(row_factory=class_row(Crawl)) as cur:
        return cur.execute(
            f"SELECT {_CRAWL_COLUMNS} FROM crawls WHERE id = %s", (crawl_id,)
        ).fetchone()


def start_crawl(conn: psycopg.Connection[Any], crawl_id: int) -> Source | None:
    """Mark a queued crawl running and return its source; None if it is over or gone.

    A crawl already running is returned again: a redelivered crawl task repeats discovery,
    which is idempotent.
    """
    row = conn.execute(
        "UPDATE crawls SET status = 'running', started_at = coalesce(started_at, now()), "
        "last_activity_at = now() WHERE id = %s AND status IN ('queued', 'running') "
        "RETURNING source_id",
        (crawl_id,),
    ).fetchone()
    return get_source(conn, int(row[0])) if row else None


def fail_crawl(conn: psycopg.Connection[Any], crawl_id: int, error: str) -> None:
    conn.execute(
        "UPDATE crawls SET status = 'failed', finished_at = now(), error = %s, "
        "last_activity_at = now() WHERE id = %s AND status IN ('queued', 'running')",
        (error[:2000], crawl_id),
    )


def claim_due_sources(conn: psycopg.Connection[Any], limit: int = 100) -> list[tuple[int, int]]:
    """Queue scheduled crawls for due sources; [(crawl_id, source_id)].

    The due rows are locked with SKIP LOCKED and moved forward in the same transaction, so
    two dispatchers running at once each claim different sources, and the partial unique
    index on crawls refuses a second active crawl of one source.
    """
    with conn.transaction():
        rows = conn.execute(
            """
            WITH due AS (
                SELECT id, crawl_interval FROM sources
                 WHERE enabled AND next_crawl_at <= now()
                 ORDER BY next_crawl_at
                 LIMIT %s
                   FOR UPDATE SKIP LOCKED
            ), moved AS (
                UPDATE sources s SET next_crawl_at = now() + due.crawl_interval
                  FROM due WHERE s.id = due.id
                RETURNING s.id
            )
            INSERT INTO crawls (source_id, trigger)
            SELECT id, 'schedule' FROM moved
            ON CONFLICT (source_id) WHERE status IN ('queued', 'running') DO NOTHING
            RETURNING id, source_id
            """,
            (limit,),
        ).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows]


def abandon_stale_crawls(conn: psycopg.Connection[Any], stale_after: timedelta) -> list[int]:
    """Close crawls whose worker vanished (no activity for stale_after)."""
    rows = conn.execute(
        "UPDATE crawls SET status = 'abandoned', finished_at = now(), "
        "error = 'no progress for ' || %s::interval || '; the worker was probably lost' "
        "WHERE status IN ('queued', 'running') AND last_activity_at < now() - %s::interval "
        "RETURNING id",
        (stale_after, stale_after),
    ).fetchall()
    return [int(r[0]) for r in rows]


# -- frontier ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listed:
    """A candidate URL as handed to the frontier (already canonicalised)."""

    url: str
    title: str | None = None
    published_at: datetime | None = None
    author: str | None = None


def queue_urls(
    conn: psycopg.Connection[Any],
    crawl_id: int,
    source_id: int,
    listed: list[Listed],
    *,
    max_attempts: int,
) -> list[int]:
    """Record what a crawl listed; return the ids of URLs to process.

    New URLs are inserted; URLs that failed transiently (fewer than max_attempts times) and
    URLs left pending by an abandoned crawl are taken over by this crawl. Everything else
    was processed before and is skipped. Updates the crawl's found/new/queued counters and
    finishes it at once when nothing is queued.
    """
    with conn.transaction():
        rows = conn.execute(
            """
            WITH input AS (
                SELECT * FROM unnest(%(urls)s::text[], %(titles)s::text[],
                                     %(dates)s::timestamptz[], %(authors)s::text[])
                         AS t(url, title, published_at, author)
            ), inserted AS (
                INSERT INTO discovered_urls (url, source_id, crawl_id, feed_title,
                                             feed_published_at, feed_author)
                SELECT url, %(source)s, %(crawl)s, title, published_at, author FROM input
                ON CONFLICT (url) DO NOTHING
                RETURNING id
            ), retried AS (
                UPDATE discovered_urls d
                   SET crawl_id = %(crawl)s, state = 'pending'
                  FROM input i
                 WHERE d.url = i.url
                   AND ((d.state = 'failed' AND d.retryable AND d.attempts < %(max_attempts)s)
                        -- still pending: this crawl's own (a redelivered crawl task) or
                        -- left behind by a crawl that is over
                        OR (d.state = 'pending' AND (d.crawl_id = %(crawl)s OR NOT EXISTS (
                               SELECT 1 FROM crawls c WHERE c.id = d.crawl_id
                                  AND c.status IN ('queued', 'running')))))
                RETURNING d.id
            )
            SELECT true, id FROM inserted UNION ALL SELECT false, id FROM retried
            """,
            {
                "urls": [item.url for item in listed],
                "titles": [item.title for item in listed],
                "dates": [item.published_at for item in listed],
                "authors": [item.author for item in listed],
                "source": source_id,
                "crawl": crawl_id,
                "max_attempts": max_attempts,
            },
        ).fetchall()
        ids = [int(r[1]) for r in rows]
        # Counted from the frontier, not added up, so a redelivered crawl task that lists
        # the same URLs again leaves the counts as they were.
        conn.execute(
            """
            UPDATE crawls
               SET urls_found = %(found)s, urls_new = urls_new + %(new)s,
                   urls_queued = (SELECT count(*) FROM discovered_urls WHERE crawl_id = %(crawl)s),
                   last_activity_at = now()
             WHERE id = %(crawl)s
            """,
            {"found": len(listed), "new": sum(1 for r in rows if r[0]), "crawl": crawl_id},
        )
        conn.execute(
            "UPDATE crawls SET status = 'finished', finished_at = now() "
            "WHERE id = %s AND status = 'running' AND urls_done >= urls_queued",
            (crawl_id,),
        )
    return ids


def pending_url(conn: psycopg.Connection[Any], url_id: int) -> PendingURL | None:
    """The URL if it still waits for processing; None when done, failed for good, or gone."""
    with conn.cursor(row_factory=class_row(PendingURL)) as cur:
        return cur.execute(
            "SELECT d.id, d.url, d.source_id, d.crawl_id, d.feed_title, d.feed_published_at, "
            "d.feed_author, s.host_delay, s.host_concurrency "
            "FROM discovered_urls d LEFT JOIN sources s ON s.id = d.source_id "
            "WHERE d.id = %s AND d.state = 'pending'",
            (url_id,),
        ).fetchone()


def record_fetch(
    conn: psycopg.Connection[Any],
    fetch: FetchRecord,
    *,
    crawl_id: int | None,
    source_id: int | None,
    article_id: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO fetches (crawl_id, source_id, purpose, url, final_url, status, http_status, "
        "error, content_type, bytes, elapsed_ms, article_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            crawl_id,
            source_id,
            fetch.purpose,
            fetch.url,
            fetch.final_url,
            fetch.status,
            fetch.http_status,
            fetch.error[:2000] if fetch.error else None,
            fetch.content_type[:200] if fetch.content_type else None,
            fetch.bytes,
            fetch.elapsed_ms,
            article_id,
        ),
    )


def finish_url(
    conn: psycopg.Connection[Any],
    url_id: int,
    fetch: FetchRecord,
    article: Article | None,
    *,
    retryable: bool = False,
) -> Outcome | None:
    """Store what processing one URL found, exactly once.

    In one transaction: lock the URL row; if it is no longer pending (a redelivered task
    already did this), do nothing and return None. Otherwise store the article (when there
    is one), the fetches row, the URL's new state and the crawl's counters, and finish the
    crawl if this was its last URL.
    """
    with conn.transaction():
        row = conn.execute(
            "SELECT crawl_id, source_id FROM discovered_urls "
            "WHERE id = %s AND state = 'pending' FOR UPDATE",
            (url_id,),
        ).fetchone()
        if row is None:
            return None
        crawl_id, source_id = row
        outcome: Outcome = "failed"
        article_id: int | None = None
        if article is not None:
            article_id, outcome = store_article(conn, article, source_id)
        record_fetch(conn, fetch, crawl_id=crawl_id, source_id=source_id, article_id=article_id)
        conn.execute(
            "UPDATE discovered_urls SET state = %s, attempts = attempts + 1, last_status = %s, "
            "retryable = %s, article_id = coalesce(%s, article_id), processed_at = now() "
            "WHERE id = %s",
            (
                "failed" if outcome == "failed" else "done",
                fetch.status,
                retryable,
                article_id,
                url_id,
            ),
        )
        if crawl_id is not None:
            count_outcome(conn, crawl_id, outcome)
    return outcome


def count_outcome(conn: psycopg.Connection[Any], crawl_id: int, outcome: Outcome) -> None:
    """Add one processed URL to a crawl; the update that processes its last URL finishes it."""
    column = sql.Identifier(OUTCOME_COLUMNS[outcome])
    conn.execute(
        sql.SQL(
            """
            UPDATE crawls
               SET urls_done = urls_done + 1, {col} = {col} + 1, last_activity_at = now(),
                   status = CASE WHEN status = 'running' AND urls_done + 1 >= urls_queued
                                 THEN 'finished' ELSE status END,
                   finished_at = CASE WHEN status = 'running' AND urls_done + 1 >= urls_queued
                                      THEN now() ELSE finished_at END
             WHERE id = %s
            """
        ).format(col=column),
        (crawl_id,),
    )


# -- articles ---------------------------------------------------------------------------


def store_article(
    conn: psycopg.Connection[Any], article: Article, source_id: int | None
) -> tuple[int, Outcome]:
    """Insert or update the article for its canonical URL; return (id, outcome).

    Must run inside a transaction. Two advisory locks, always taken in this order, make
    concurrent stores race-free: the canonical URL's (one row per URL) and the text hash's
    (exactly one original per text, the earliest stored).
    """
    digest = content_hash(article.text)
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('url:' || %s, 0))", (article.canonical_url,)
    )
    existing = conn.execute(
        "SELECT id, content_hash, revision FROM articles WHERE canonical_url = %s FOR UPDATE",
        (article.canonical_url,),
    ).fetchone()
    if existing is not None:
        return _refresh_article(conn, article, digest, existing)
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('text:' || %s, 0))", (digest,))
    original = conn.execute(
        "SELECT coalesce(duplicate_of, id), story_id FROM articles WHERE content_hash = %s "
        "ORDER BY first_seen_at, id LIMIT 1",
        (digest,),
    ).fetchone()
    if original is not None:
        duplicate_of, story_id = int(original[0]), original[1]
        if story_id is not None:
            conn.execute("UPDATE stories SET last_seen_at = now() WHERE id = %s", (story_id,))
    else:
        duplicate_of = None
        story_id = conn.execute(
            "INSERT INTO stories (title) VALUES (%s) RETURNING id",
            (article.title or article.canonical_url,),
        ).fetchone()[0]  # type: ignore[index]
    row = conn.execute(
        """
        INSERT INTO articles (source_id, url, canonical_url, title, author, published_at,
                              language, sitename, description, tags, image_url, text,
                              word_count, content_hash, duplicate_of, story_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        RETURNING id
        """,
        (
            source_id,
            article.url,
            article.canonical_url,
            article.title,
            article.author,
            article.published_at,
            article.language,
            article.sitename,
            article.description,
            list(article.tags),
            article.image_url,
            article.text,
            article.word_count,
            digest,
            duplicate_of,
            story_id,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0]), "duplicate" if duplicate_of is not None else "stored"


def _refresh_article(
    conn: psycopg.Connection[Any], article: Article, digest: str, existing: tuple[Any, ...]
) -> tuple[int, Outcome]:
    article_id, old_hash, revision = int(existing[0]), existing[1], int(existing[2])
    if old_hash == digest:
        conn.execute("UPDATE articles SET fetched_at = now() WHERE id = %s", (article_id,))
        return article_id, "unchanged"
    conn.execute(
        "INSERT INTO article_revisions "
        "(article_id, revision, title, text, content_hash, fetched_at) "
        "SELECT id, revision, title, text, content_hash, fetched_at FROM articles WHERE id = %s "
        "ON CONFLICT (article_id, revision) DO NOTHING",
        (article_id,),
    )
    conn.execute(
        """
        UPDATE articles
           SET url = %s, title = coalesce(%s, title), author = coalesce(%s, author),
               published_at = coalesce(published_at, %s), language = coalesce(%s, language),
               sitename = coalesce(%s, sitename), description = coalesce(%s, description),
               tags = %s, image_url = coalesce(%s, image_url), text = %s, word_count = %s,
               content_hash = %s, revision = %s, fetched_at = now(), updated_at = now()
         WHERE id = %s
        """,
        (
            article.url,
            article.title,
            article.author,
            article.published_at,
            article.language,
            article.sitename,
            article.description,
            list(article.tags),
            article.image_url,
            article.text,
            article.word_count,
            digest,
            revision + 1,
            article_id,
        ),
    )
    return article_id, "updated"
