"""All SQL, as plain parameterised queries in functions that take a connection.

The caller owns the transaction (``with pool.connection() as conn`` commits on success);
functions that must be atomic open a nested ``conn.transaction()`` themselves. Every write is
idempotent under re-delivery: unique keys, ``ON CONFLICT``, and state checks under
``FOR UPDATE``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from workers.dedup import (
    TextSignature,
    body_text,
    content_hash,
    is_near_duplicate,
    shingles,
    similarity,
    text_signature,
)
from workers.extract import Article
from workers.stories import (
    SHARED_TERMS_MIN,
    TERM_POSTINGS_CAP,
    StoryCandidate,
    best_story,
    story_terms,
)

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
# Told when a crawl ends: (status, seconds from queued to its end). For metrics.
CrawlEndHook = Callable[[str, float], None]
# Defaults of NEWSAGG_STORY_WINDOW_DAYS and NEWSAGG_NEAR_DUP_MIN_WORDS, for callers without
# settings (tests, scripts).
DEFAULT_STORY_WINDOW_DAYS = 3.0
DEFAULT_NEAR_DUP_MIN_WORDS = 50


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
    min_interval: timedelta | None = None
    max_interval: timedelta | None = None
    healthy: bool = True
    consecutive_failures: int = 0


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
    # Workers lost in the middle of this URL before this claim (see claim_url).
    claims: int = 0
    source_name: str | None = None


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


MIGRATIONS_DIR = SCHEMA_FILE.parent / "migrations"


def schema_migrations_ddl() -> str:
    """schema.sql's own statements that make the schema_migrations table: the runner makes
    it in databases that predate migrations, from the same text."""
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    start = text.index("CREATE TABLE IF NOT EXISTS schema_migrations")
    return text[start : text.index("INSERT INTO schema_migrations", start)]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path


def list_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """migrations/NNNN_name.sql, in order."""
    found = []
    for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        number, _, name = path.stem.partition("_")
        found.append(Migration(int(number), name, path))
    return found


def migrate(conn: psycopg.Connection[Any], *, target: int | None = None) -> list[int]:
    """Bring the database to the current schema; return the migrations applied.

    An empty database gets schema.sql (which records every migration it contains); an
    existing one gets the migrations it has not had, in order, each recorded. A database
    from before migrations existed (no schema_migrations table) is taken to be at 0001.
    All in one transaction under an advisory lock, so concurrent inits (a compose `init`
    and a developer) serialise and a failing migration changes nothing. `target` stops at
    a version (tests build old databases with it).
    """
    migrations = [m for m in list_migrations() if target is None or m.version <= target]
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('newsagg schema', 0))")
        row = conn.execute(
            "SELECT to_regclass('public.sources') IS NOT NULL, "
            "to_regclass('public.schema_migrations') IS NOT NULL"
        ).fetchone()
        has_schema, has_versions = bool(row and row[0]), bool(row and row[1])
        if not has_schema and target is None:
            conn.execute(SCHEMA_FILE.read_bytes())
            return [m.version for m in migrations]
        if not has_versions:
            conn.execute(schema_migrations_ddl().encode())
            if has_schema:
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'initial')")
        done = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        for migration in migrations:
            if migration.version in done:
                continue
            conn.execute(migration.path.read_bytes())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
        return applied


# -- sources ----------------------------------------------------------------------------

_SOURCE_COLUMNS = (
    "id, name, url, kind, enabled, crawl_interval, next_crawl_at, etag, last_modified, "
    "body_sha256, host_delay, host_concurrency, min_interval, max_interval, healthy, "
    "consecutive_failures"
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
    min_interval: timedelta | None = None,
    max_interval: timedelta | None = None,
    replace: bool = False,
) -> Source:
    """Insert a source; with replace=True update the configuration of an existing one.

    `interval` is the first interval; the adaptive schedule takes over after the first crawl.
    """
    conflict = (
        "DO UPDATE SET url = EXCLUDED.url, kind = EXCLUDED.kind, "
        "crawl_interval = EXCLUDED.crawl_interval, host_delay = EXCLUDED.host_delay, "
        "host_concurrency = EXCLUDED.host_concurrency, min_interval = EXCLUDED.min_interval, "
        "max_interval = EXCLUDED.max_interval, updated_at = now()"
        if replace
        else "DO NOTHING"
    )
    with conn.cursor(row_factory=class_row(Source)) as cur:
        row = cur.execute(
            f"INSERT INTO sources (name, url, kind, crawl_interval, host_delay, host_concurrency, "
            f"min_interval, max_interval) "
            f"VALUES (%s, %s, %s, coalesce(%s, interval '15 minutes'), %s, %s, %s, %s) "
            f"ON CONFLICT (name) {conflict} RETURNING {_SOURCE_COLUMNS}",
            (name, url, kind, interval, host_delay, host_concurrency, min_interval, max_interval),
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
) -> int:
    """After reading a source: keep validators for the next conditional GET, count failures.

    Returns the source's consecutive failures after this read.
    """
    row = conn.execute(
        """
        UPDATE sources
           SET etag = CASE WHEN %(ok)s THEN %(etag)s ELSE etag END,
               last_modified = CASE WHEN %(ok)s THEN %(lm)s ELSE last_modified END,
               body_sha256 = CASE WHEN %(ok)s THEN coalesce(%(sha)s, body_sha256)
                                  ELSE body_sha256 END,
               consecutive_failures = CASE WHEN %(ok)s THEN 0 ELSE consecutive_failures + 1 END,
               updated_at = now()
         WHERE id = %(id)s
        RETURNING consecutive_failures
        """,
        {
            "ok": ok,
            "etag": etag,
            "lm": last_modified,
            "sha": hashlib.sha256(body).hexdigest() if body is not None else None,
            "id": source_id,
        },
    ).fetchone()
    return int(row[0]) if row else 0


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """Raise unless the database answers and has newsagg's schema."""
    conn.execute("SELECT 1 FROM sources LIMIT 1")


def operational_figures(conn: psycopg.Connection[Any]) -> dict[str, float]:
    """What an operator watches, in one round trip: URLs waiting, crawls in flight, how long
    the least recently active of them has been idle, unhealthy sources."""
    row = conn.execute(
        """
        SELECT (SELECT count(*) FROM discovered_urls WHERE state = 'pending'),
               (SELECT count(*) FROM crawls WHERE status IN ('queued', 'running')),
               (SELECT coalesce(extract(epoch FROM now() - min(last_activity_at)), 0)::float8
                  FROM crawls WHERE status IN ('queued', 'running')),
               (SELECT count(*) FROM sources WHERE enabled AND NOT healthy)
        """
    ).fetchone()
    assert row is not None
    return {
        "urls_pending": float(row[0]),
        "crawls_running": float(row[1]),
        "oldest_idle_seconds": float(row[2]),
        "sources_unhealthy": float(row[3]),
    }


def source_status(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM source_status ORDER BY name").fetchall()


# -- crawls -----------------------------------------------------------------------------

_CRAWL_COLUMNS = (
    "id, source_id, trigger, status, queued_at, started_at, finished_at, urls_found, urls_new, "
    "urls_queued, urls_done, articles_stored, duplicates, updated, unchanged, failures, error"
)


def create_crawl(
    conn: psycopg.Connection[Any],
    source_id: int,
    trigger: Trigger,
    *,
    backfill_since: datetime | None = None,
) -> int | None:
    """Queue a crawl; None when the source already has one queued or running."""
    row = conn.execute(
        "INSERT INTO crawls (source_id, trigger, backfill_since) VALUES (%s, %s, %s) "
        "ON CONFLICT (source_id) WHERE status IN ('queued', 'running') DO NOTHING RETURNING id",
        (source_id, trigger, backfill_since),
    ).fetchone()
    return int(row[0]) if row else None


def active_crawl(conn: psycopg.Connection[Any], source_id: int) -> int | None:
    row = conn.execute(
        "SELECT id FROM crawls WHERE source_id = %s AND status IN ('queued', 'running')",
        (source_id,),
    ).fetchone()
    return int(row[0]) if row else None


def get_crawl(conn: psycopg.Connection[Any], crawl_id: int) -> Crawl | None:
    return get_crawls(conn, [crawl_id]).get(crawl_id)


def get_crawls(conn: psycopg.Connection[Any], crawl_ids: list[int]) -> dict[int, Crawl]:
    """The crawls of these ids that exist, in one statement (a watcher polls many at once)."""
    with conn.cursor(row_factory=class_row(Crawl)) as cur:
        rows = cur.execute(
            f"SELECT {_CRAWL_COLUMNS} FROM crawls WHERE id = ANY(%s)", (crawl_ids,)
        ).fetchall()
    return {crawl.id: crawl for crawl in rows}


@dataclass(frozen=True, slots=True)
class CrawlTarget:
    """A crawl that a worker has started: its source, why it runs, where a backfill stops."""

    source: Source
    trigger: str
    backfill_since: datetime | None


def start_crawl(conn: psycopg.Connection[Any], crawl_id: int) -> CrawlTarget | None:
    """Mark a queued crawl running and return what to crawl; None if it is over or gone.

    A crawl already running is returned again: a redelivered crawl task repeats discovery,
    which is idempotent.
    """
    row = conn.execute(
        "UPDATE crawls SET status = 'running', started_at = coalesce(started_at, now()), "
        "last_activity_at = now() WHERE id = %s AND status IN ('queued', 'running') "
        "RETURNING source_id, trigger, backfill_since",
        (crawl_id,),
    ).fetchone()
    if row is None:
        return None
    source = get_source(conn, int(row[0]))
    return CrawlTarget(source, row[1], row[2]) if source is not None else None


def fail_crawl(conn: psycopg.Connection[Any], crawl_id: int, error: str) -> float | None:
    """Mark an active crawl failed; its duration in seconds, or None if it was not active."""
    row = conn.execute(
        "UPDATE crawls SET status = 'failed', finished_at = now(), error = %s, "
        "last_activity_at = now() WHERE id = %s AND status IN ('queued', 'running') "
        "RETURNING extract(epoch FROM finished_at - queued_at)::float8",
        (error[:2000], crawl_id),
    ).fetchone()
    return row[0] if row else None


def claim_due_sources(
    conn: psycopg.Connection[Any], limit: int = 100, *, now: datetime | None = None
) -> list[tuple[int, int]]:
    """Queue scheduled crawls for due sources; [(crawl_id, source_id)].

    The due rows are locked with SKIP LOCKED and moved forward in the same transaction, so
    two dispatchers running at once each claim different sources; each crawl records the
    due time it was claimed for (unique per source), and the partial unique index on crawls
    refuses a second active crawl of one source. `now` is the clock (tests pass their own).
    """
    with conn.transaction():
        rows = conn.execute(
            """
            WITH due AS (
                SELECT id, crawl_interval, next_crawl_at FROM sources
                 WHERE enabled AND next_crawl_at <= coalesce(%(now)s, now())
                 ORDER BY next_crawl_at
                 LIMIT %(limit)s
                   FOR UPDATE SKIP LOCKED
            ), moved AS (
                UPDATE sources s
                   SET next_crawl_at = coalesce(%(now)s, now()) + due.crawl_interval
                  FROM due WHERE s.id = due.id
                RETURNING s.id, due.next_crawl_at AS due_at
            )
            INSERT INTO crawls (source_id, trigger, due_at)
            SELECT id, 'schedule', due_at FROM moved
            ON CONFLICT DO NOTHING
            RETURNING id, source_id
            """,
            {"now": now, "limit": limit},
        ).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows]


def count_new_urls(
    conn: psycopg.Connection[Any],
    source_id: int,
    *,
    days: float = 7,
    now: datetime | None = None,
) -> int:
    """URLs the source listed for the first time in the last `days`: its publishing rate."""
    row = conn.execute(
        "SELECT count(*) FROM discovered_urls WHERE source_id = %(id)s "
        "AND discovered_at > coalesce(%(now)s, now()) - make_interval(secs => %(secs)s)",
        {"id": source_id, "now": now, "secs": days * 86400},
    ).fetchone()
    return int(row[0]) if row else 0


def set_schedule(
    conn: psycopg.Connection[Any],
    source_id: int,
    interval: timedelta,
    *,
    healthy: bool,
    reason: str,
    now: datetime | None = None,
) -> None:
    """After a read of the source: its next crawl is `interval` from now."""
    conn.execute(
        "UPDATE sources SET crawl_interval = %(interval)s, healthy = %(healthy)s, "
        "schedule_reason = %(reason)s, "
        "next_crawl_at = coalesce(%(now)s, now()) + %(interval)s, updated_at = now() "
        "WHERE id = %(id)s",
        {"interval": interval, "healthy": healthy, "reason": reason, "now": now, "id": source_id},
    )


@dataclass(frozen=True, slots=True)
class LostWork:
    """What housekeeping found lost: crawls to read again, URLs to send again, crawls given up."""

    crawls: tuple[int, ...] = ()
    urls: tuple[int, ...] = ()
    abandoned: tuple[int, ...] = ()
    # The crawl of each of those URLs (its frontier goes on from there), and the crawls
    # idle past their lease, still running (their frontier lists get new chains).
    url_crawls: tuple[int | None, ...] = ()
    idle_crawls: tuple[int, ...] = ()


def has_suspect_work(conn: psycopg.Connection[Any], lease: timedelta) -> bool:
    """Is any crawl idle past its lease, or any URL claimed longer ago? (Cheap: both are
    index look-ups; only then is the broker asked what it still holds.)"""
    row = conn.execute(
        """
        SELECT EXISTS (SELECT 1 FROM crawls WHERE status IN ('queued', 'running')
                          AND last_activity_at < now() - %(lease)s::interval)
            OR EXISTS (SELECT 1 FROM discovered_urls WHERE state = 'pending'
                          AND claimed_at IS NOT NULL
                          AND claimed_at < now() - %(lease)s::interval)
        """,
        {"lease": lease},
    ).fetchone()
    return bool(row and row[0])


def find_lost_work(
    conn: psycopg.Connection[Any],
    lease: timedelta,
    *,
    max_redispatches: int,
    held_urls: set[int] | frozenset[int] = frozenset(),
    held_crawls: set[int] | frozenset[int] = frozenset(),
    max_urls: int = 5000,
    now: datetime | None = None,
) -> LostWork:
    """Work whose messages or workers were lost, taken back for re-dispatch.

    `held_urls` and `held_crawls` are the ids the broker still has a message for (waiting
    in a queue, or taken by a live worker): that work is only late, never doubled.
    - A crawl idle past its lease is suspect. Its pending URLs that nobody holds (unclaimed,
      or claimed longer ago than the lease) and that the broker does not hold are lost: a
      Redis restart dropped their messages, or the worker that had them died. A crawl not
      started yet, or with nothing pending, lost its own message: its source is read again
      (discovery is idempotent).
    - A URL claimed longer ago than the lease lost its worker (a hard time limit, kill -9)
      whatever its crawl is doing; unless the broker holds it again, it is sent again.
    Each crawl whose work is sent again counts a re-dispatch and has its lease renewed; one
    already re-dispatched `max_redispatches` times is abandoned instead, and the next crawl
    of its source takes over what it left. `now` is the clock (tests pass their own).
    """
    params = {"lease": lease, "now": now, "limit": max_urls}
    with conn.transaction():
        stale = {
            int(r[0]): (str(r[1]), int(r[2]))
            for r in conn.execute(
                """
                SELECT id, status, redispatches FROM crawls
                 WHERE status IN ('queued', 'running')
                   AND last_activity_at < coalesce(%(now)s, now()) - %(lease)s::interval
                   FOR UPDATE SKIP LOCKED
                """,
                params,
            ).fetchall()
        }
        candidates = conn.execute(
            """
            SELECT id, crawl_id FROM discovered_urls
             WHERE state = 'pending'
               AND ((crawl_id = ANY(%(crawls)s) AND claimed_at IS NULL)
                    OR claimed_at < coalesce(%(now)s, now()) - %(lease)s::interval)
             ORDER BY id
             LIMIT %(limit)s
               FOR UPDATE SKIP LOCKED
            """,
            {**params, "crawls": list(stale)},
        ).fetchall()
        pending = {
            int(r[0])
            for r in conn.execute(
                "SELECT DISTINCT crawl_id FROM discovered_urls "
                "WHERE state = 'pending' AND crawl_id = ANY(%s)",
                (list(stale),),
            ).fetchall()
        }
        lost_urls = [(int(u), c) for u, c in candidates if int(u) not in held_urls]
        lost_crawls = [
            c
            for c, (status, _) in stale.items()
            if (status == "queued" or c not in pending) and c not in held_crawls
        ]
        touched = {c for _, c in lost_urls if c is not None} | set(lost_crawls)
        abandoned = sorted(c for c in touched if c in stale and stale[c][1] >= max_redispatches)
        if abandoned:
            conn.execute(
                """
                UPDATE crawls
                   SET status = 'abandoned', finished_at = coalesce(%(now)s, now()),
                       error = 'its work was lost again after ' || redispatches
                               || ' re-dispatches (no progress for ' || %(lease)s::interval
                               || ' each time)'
                 WHERE id = ANY(%(ids)s)
                """,
                {**params, "ids": abandoned},
            )
        gone = set(abandoned)
        resent_crawls = [c for c in touched if c not in gone]
        conn.execute(
            "UPDATE crawls SET redispatches = redispatches + 1, "
            "last_activity_at = coalesce(%(now)s, now()) "
            "WHERE id = ANY(%(ids)s) AND status IN ('queued', 'running')",
            {**params, "ids": resent_crawls},
        )
        urls = sorted(u for u, c in lost_urls if c not in gone)
        # A claimed URL sent again keeps its claim (the next claim counts the lost worker)
        # with a fresh time, so the next run does not send it again.
        conn.execute(
            "UPDATE discovered_urls SET claimed_at = coalesce(%(now)s, now()) "
            "WHERE id = ANY(%(ids)s) AND claimed_at IS NOT NULL",
            {**params, "ids": urls},
        )
    crawl_of = dict(lost_urls)
    return LostWork(
        crawls=tuple(sorted(c for c in lost_crawls if c not in gone)),
        urls=tuple(urls),
        abandoned=tuple(abandoned),
        url_crawls=tuple(crawl_of[u] for u in urls),
        idle_crawls=tuple(
            sorted(
                c
                for c, (status, _) in stale.items()
                if status == "running"
                and c not in gone
                and c not in lost_crawls
                and c not in held_crawls
            )
        ),
    )


def prune_fetches(
    conn: psycopg.Connection[Any], older_than: timedelta, *, batch: int = 10_000
) -> int:
    """Delete fetches rows older than `older_than`, in batches so no lock is held long."""
    deleted = 0
    while True:
        count = conn.execute(
            "DELETE FROM fetches WHERE id IN (SELECT id FROM fetches "
            "WHERE fetched_at < now() - %s::interval LIMIT %s)",
            (older_than, batch),
        ).rowcount
        deleted += count
        if count < batch:
            return deleted


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
    on_crawl_end: CrawlEndHook | None = None,
) -> list[int]:
    """Record what a crawl listed; return the ids of URLs to process.

    New URLs are inserted; URLs that failed transiently (fewer than max_attempts times) and
    URLs of this source left pending by a crawl that is over (abandoned) are taken over by
    this crawl. Everything else
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
                 WHERE (d.url = ANY(%(urls)s) AND d.state = 'failed' AND d.retryable
                        AND d.attempts < %(max_attempts)s)
                    -- still pending: this crawl's own (a redelivered crawl task), or left
                    -- behind by a crawl of this source that is over (its worker died), even
                    -- when the source no longer lists it or was not modified
                    OR (d.state = 'pending'
                        AND (d.url = ANY(%(urls)s) OR d.source_id = %(source)s)
                        AND (d.crawl_id = %(crawl)s OR NOT EXISTS (
                               SELECT 1 FROM crawls c WHERE c.id = d.crawl_id
                                  AND c.status IN ('queued', 'running'))))
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
        done = conn.execute(
            "UPDATE crawls SET status = 'finished', finished_at = now() "
            "WHERE id = %s AND status = 'running' AND urls_done >= urls_queued "
            "RETURNING extract(epoch FROM finished_at - queued_at)::float8",
            (crawl_id,),
        ).fetchone()
    if done is not None and on_crawl_end is not None:
        on_crawl_end("finished", done[0])
    return ids


def url_targets(
    conn: psycopg.Connection[Any], url_ids: list[int] | tuple[int, ...]
) -> list[tuple[int, str, float | None, int | None]]:
    """(id, url, source host_delay, source host_concurrency) of frontier URLs, by id."""
    rows = conn.execute(
        "SELECT d.id, d.url, s.host_delay, s.host_concurrency FROM discovered_urls d "
        "LEFT JOIN sources s ON s.id = d.source_id WHERE d.id = ANY(%s) ORDER BY d.id",
        (list(url_ids),),
    ).fetchall()
    return [(int(r[0]), str(r[1]), r[2], r[3]) for r in rows]


def pending_url(conn: psycopg.Connection[Any], url_id: int) -> PendingURL | None:
    """The URL if it still waits for processing; None when done, failed for good, or gone."""
    with conn.cursor(row_factory=class_row(PendingURL)) as cur:
        return cur.execute(
            "SELECT d.id, d.url, d.source_id, d.crawl_id, d.feed_title, d.feed_published_at, "
            "d.feed_author, s.host_delay, s.host_concurrency, d.claims, s.name AS source_name "
            "FROM discovered_urls d LEFT JOIN sources s ON s.id = d.source_id "
            "WHERE d.id = %s AND d.state = 'pending'",
            (url_id,),
        ).fetchone()


def claim_url(conn: psycopg.Connection[Any], url_id: int, claimant: str) -> PendingURL | None:
    """Take a pending URL for processing; None when it is done, failed for good, or gone.

    A claim that is never let go (finish_url or release_claim) is a worker lost in the middle
    of the URL; the next claim by another attempt counts it, so `claims` in the result is how
    many workers this URL has cost so far. Claiming again with the same claimant (one attempt
    retrying in place after an outage) counts nothing.
    """
    with conn.cursor(row_factory=class_row(PendingURL)) as cur:
        return cur.execute(
            """
            WITH claimed AS (
                UPDATE discovered_urls
                   SET claims = claims + (claimed_at IS NOT NULL
                                          AND claimed_by IS DISTINCT FROM %(who)s)::int,
                       claimed_at = now(), claimed_by = %(who)s
                 WHERE id = %(id)s AND state = 'pending'
                RETURNING id, url, source_id, crawl_id, feed_title, feed_published_at,
                          feed_author, claims
            )
            SELECT c.id, c.url, c.source_id, c.crawl_id, c.feed_title, c.feed_published_at,
                   c.feed_author, s.host_delay, s.host_concurrency, c.claims,
                   s.name AS source_name
              FROM claimed c LEFT JOIN sources s ON s.id = c.source_id
            """,
            {"id": url_id, "who": claimant},
        ).fetchone()


def release_claim(conn: psycopg.Connection[Any], url_id: int, claimant: str) -> None:
    """Let go of a URL without finishing it (it is rescheduled): not a lost worker."""
    conn.execute(
        "UPDATE discovered_urls SET claimed_at = NULL "
        "WHERE id = %s AND state = 'pending' AND claimed_by = %s",
        (url_id, claimant),
    )


def _fetch_values(fetch: FetchRecord) -> dict[str, Any]:
    return {
        "purpose": fetch.purpose,
        "url": fetch.url,
        "final_url": fetch.final_url,
        "status": fetch.status,
        "http_status": fetch.http_status,
        "error": fetch.error[:2000] if fetch.error else None,
        "content_type": fetch.content_type[:200] if fetch.content_type else None,
        "bytes": fetch.bytes,
        "elapsed_ms": fetch.elapsed_ms,
    }


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
    fingerprint: Fingerprint | None = None,
    story_window_days: float = DEFAULT_STORY_WINDOW_DAYS,
    near_dup_min_words: int = DEFAULT_NEAR_DUP_MIN_WORDS,
    on_crawl_end: CrawlEndHook | None = None,
) -> Outcome | None:
    """Store what processing one URL found, exactly once.

    In one transaction: lock the URL row; if it is no longer pending (a redelivered task
    already did this), do nothing and return None. Otherwise store the article (when there
    is one), the fetches row, the URL's new state and the crawl's counters, and finish the
    crawl if this was its last URL (then `on_crawl_end("finished", seconds)` is called after
    the commit). Pass the article's `fingerprint_article` to keep its CPU work out of the
    transaction; the other keywords are `store_article`'s.
    """
    finished: float | None = None
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
            article_id, outcome = store_article(
                conn,
                article,
                source_id,
                fingerprint=fingerprint,
                story_window_days=story_window_days,
                near_dup_min_words=near_dup_min_words,
            )
        # The fetches row, the URL's state and the crawl's counters in one statement: a
        # round trip is a good part of what storing costs.
        column = sql.Identifier(OUTCOME_COLUMNS[outcome])
        done = conn.execute(
            sql.SQL(
                """
                WITH logged AS (
                    INSERT INTO fetches (crawl_id, source_id, purpose, url, final_url, status,
                                         http_status, error, content_type, bytes, elapsed_ms,
                                         article_id)
                    VALUES (%(crawl)s, %(source)s, %(purpose)s, %(url)s, %(final_url)s,
                            %(status)s, %(http_status)s, %(error)s, %(content_type)s,
                            %(bytes)s, %(elapsed_ms)s, %(article)s)
                ), moved AS (
                    UPDATE discovered_urls
                       SET state = %(state)s, attempts = attempts + 1, last_status = %(status)s,
                           retryable = %(retryable)s,
                           article_id = coalesce(%(article)s, article_id),
                           processed_at = now(), claimed_at = NULL
                     WHERE id = %(id)s
                )
                UPDATE crawls
                   SET urls_done = urls_done + 1, {col} = {col} + 1, last_activity_at = now(),
                       status = CASE WHEN status = 'running' AND urls_done + 1 >= urls_queued
                                     THEN 'finished' ELSE status END,
                       finished_at = CASE WHEN status = 'running'
                                           AND urls_done + 1 >= urls_queued
                                          THEN now() ELSE finished_at END
                 WHERE id = %(crawl)s
                RETURNING CASE WHEN status = 'finished' AND finished_at = now()
                               THEN extract(epoch FROM finished_at - queued_at)::float8 END
                """
            ).format(col=column),
            {
                **_fetch_values(fetch),
                "crawl": crawl_id,
                "source": source_id,
                "article": article_id,
                "state": "failed" if outcome == "failed" else "done",
                "retryable": retryable,
                "id": url_id,
            },
        ).fetchone()
        finished = done[0] if done else None
    if finished is not None and on_crawl_end is not None:
        on_crawl_end("finished", finished)
    return outcome


# -- articles ---------------------------------------------------------------------------

# Near-duplicate candidates verified per article at most (best LSH matches first); a wire
# story copied by more outlets than this still finds its original, which shares the most
# bands with any copy.
MAX_NEAR_DUP_CANDIDATES = 50
# Story candidates scored per article at most (those sharing the most terms first).
MAX_STORY_CANDIDATES = 200


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """Everything dedup and story matching compute from an article's text.

    Pure CPU work: make it with `fingerprint_article` before opening the transaction, so
    the advisory locks are held for database round trips only.
    """

    content_hash: str
    text: TextSignature
    terms: tuple[str, ...]


def fingerprint_article(
    article: Article, near_dup_min_words: int = DEFAULT_NEAR_DUP_MIN_WORDS
) -> Fingerprint:
    """Content hash, shingles and LSH band keys of the body, story terms of headline + lead."""
    return Fingerprint(
        content_hash=content_hash(article.text),
        text=text_signature(body_text(article.title, article.text), near_dup_min_words),
        terms=story_terms(article.title, article.text, article.language),
    )


@dataclass(frozen=True, slots=True)
class _Match:
    original_id: int
    story_id: int | None
    kind: Literal["exact", "near"]
    similarity: float


def _lock_keys(conn: psycopg.Connection[Any], fingerprint: Fingerprint) -> None:
    """Take the text-hash lock, then the band and term locks sorted (no deadlocks), in one
    statement (a round trip per article saved).

    Two articles with the same text share the text lock; two that LSH would pair share a
    band key, two that story matching would pair share a term; whichever commits second
    waits here and then sees the first.
    """
    keys = set(fingerprint.text.bands)
    keys.update(_term_key(term) for term in fingerprint.terms)
    conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM ("
        "  SELECT hashtextextended('text:' || %s, 0) AS k, 0::bigint AS n"
        "  UNION ALL SELECT k, n FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n)"
        ") locks ORDER BY n",
        (fingerprint.content_hash, sorted(keys)),
    )


def _term_key(term: str) -> int:
    digest = hashlib.blake2b(b"term:" + term.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _find_near_duplicate(
    conn: psycopg.Connection[Any],
    fingerprint: Fingerprint,
    event_at: datetime,
    window: timedelta,
    exclude_id: int | None = None,
) -> _Match | None:
    """The original of the earliest verified near-duplicate within the window, if any."""
    bands = fingerprint.text.bands
    if not bands:
        return None
    rows = conn.execute(
        """
        WITH hits AS (
            SELECT b.article_id, count(*) AS shared
              FROM article_bands b
             WHERE b.band_key = ANY(%(keys)s::bigint[])
               AND b.event_at BETWEEN %(at)s::timestamptz - %(window)s
                                  AND %(at)s::timestamptz + %(window)s
               AND b.article_id IS DISTINCT FROM %(exclude)s
             GROUP BY b.article_id
             ORDER BY shared DESC, b.article_id
             LIMIT %(limit)s
        )
        SELECT a.id, coalesce(a.duplicate_of, a.id), a.title, a.text,
               coalesce(o.first_seen_at, a.first_seen_at), coalesce(o.story_id, a.story_id)
          FROM hits JOIN articles a ON a.id = hits.article_id
          LEFT JOIN articles o ON o.id = a.duplicate_of
        """,
        {
            "keys": list(bands),
            "at": event_at,
            "window": window,
            "exclude": exclude_id,
            "limit": MAX_NEAR_DUP_CANDIDATES,
        },
    ).fetchall()
    best: tuple[datetime, int, int | None, float] | None = None
    for _id, original_id, title, text, original_seen, story_id in rows:
        if original_id == exclude_id:
            continue  # an updated article is never a copy of its own copy
        sim = similarity(fingerprint.text.shingles, shingles(body_text(title, text)))
        if not is_near_duplicate(sim):
            continue
        candidate = (original_seen, int(original_id), story_id, sim.jaccard)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    if best is None:
        return None
    return _Match(best[1], best[2], "near", best[3])


def _find_story(
    conn: psycopg.Connection[Any], terms: tuple[str, ...], event_at: datetime, window: timedelta
) -> int | None:
    """The story of the best-matching original in the window (see workers/stories.py)."""
    if not terms:
        return None
    rows = conn.execute(
        """
        SELECT t.term, p.article_id, p.story_id
          FROM unnest(%(terms)s::text[]) AS t(term)
          CROSS JOIN LATERAL (
                SELECT article_id, story_id FROM article_terms
                 WHERE term = t.term
                   AND event_at BETWEEN %(at)s::timestamptz - %(window)s
                                    AND %(at)s::timestamptz + %(window)s
                 ORDER BY event_at DESC
                 LIMIT %(cap)s
          ) p
        """,
        {"terms": list(terms), "at": event_at, "window": window, "cap": TERM_POSTINGS_CAP + 1},
    ).fetchall()
    postings: dict[str, int] = {}
    shared: dict[int, int] = {}
    story_of: dict[int, int] = {}
    for term, _article_id, _story_id in rows:
        postings[term] = postings.get(term, 0) + 1
    for term, article_id, story_id in rows:
        if postings[term] > TERM_POSTINGS_CAP:
            continue  # too common in this window to tell stories apart
        shared[article_id] = shared.get(article_id, 0) + 1
        story_of[article_id] = story_id
    ids = [a for a, n in shared.items() if n >= SHARED_TERMS_MIN]
    if not ids:
        return None
    ids.sort(key=lambda a: (-shared[a], a))
    found = conn.execute(
        "SELECT id, story_terms FROM articles WHERE id = ANY(%s)", (ids[:MAX_STORY_CANDIDATES],)
    ).fetchall()
    candidates = [StoryCandidate(int(i), story_of[int(i)], tuple(t)) for i, t in found]
    return best_story(terms, candidates, postings)


def _index_article(
    conn: psycopg.Connection[Any],
    article_id: int,
    fingerprint: Fingerprint,
    event_at: datetime,
    story_id: int | None,
    *,
    original: bool,
    new: bool = False,
) -> None:
    """(Re)write the article's band keys, and for an original its story terms, in one
    statement (a new article has none to delete)."""
    terms = list(fingerprint.terms) if original and story_id is not None else []
    if not new:
        # Apart from the inserts: in one statement, an insert of a key the delete removes
        # may run first and collide with it.
        conn.execute(
            "WITH gone AS (DELETE FROM article_bands WHERE article_id = %(id)s) "
            "DELETE FROM article_terms WHERE article_id = %(id)s",
            {"id": article_id},
        )
    conn.execute(
        """
        WITH bands AS (
            INSERT INTO article_bands (band_key, event_at, article_id)
            SELECT DISTINCT k, %(at)s::timestamptz, %(id)s FROM unnest(%(bands)s::bigint[]) k
        )
        INSERT INTO article_terms (term, event_at, article_id, story_id)
        SELECT DISTINCT t, %(at)s::timestamptz, %(id)s, %(story)s
          FROM unnest(%(terms)s::text[]) t
        """,
        {
            "id": article_id,
            "at": event_at,
            "bands": list(fingerprint.text.bands),
            "story": story_id,
            "terms": terms,
        },
    )


def _event_at(published_at: datetime | None) -> datetime:
    """When the article's news happened, for the windows: its publication time, unless
    unknown or in the future (then now)."""
    now = datetime.now(UTC)
    return now if published_at is None or published_at > now else published_at


def store_article(
    conn: psycopg.Connection[Any],
    article: Article,
    source_id: int | None,
    *,
    fingerprint: Fingerprint | None = None,
    story_window_days: float = DEFAULT_STORY_WINDOW_DAYS,
    near_dup_min_words: int = DEFAULT_NEAR_DUP_MIN_WORDS,
) -> tuple[int, Outcome]:
    """Insert or update the article for its canonical URL; return (id, outcome).

    Must run inside a transaction. Advisory locks, always taken in this order, make
    concurrent stores race-free: the canonical URL's (one row per URL), the text hash's
    (one original per text), then the LSH band keys' and story terms' together, sorted (one
    original per near-duplicate group; related articles stored at the same instant meet in
    one story). Near-duplicates and stories are looked for only among articles whose
    event_at lies within story_window_days of this one's.
    """
    fingerprint = fingerprint or fingerprint_article(article, near_dup_min_words)
    story_window = timedelta(days=story_window_days)
    digest = fingerprint.content_hash
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('url:' || %s, 0))", (article.canonical_url,)
    )
    # FOR NO KEY UPDATE (the refresh changes no key): a copy of this article stored
    # meanwhile holds the band locks this refresh may wait for, and its foreign key to this
    # row must not wait for the refresh in turn (FOR UPDATE would: a deadlock).
    existing = conn.execute(
        "SELECT id, content_hash, revision, duplicate_of, event_at FROM articles "
        "WHERE canonical_url = %s FOR NO KEY UPDATE",
        (article.canonical_url,),
    ).fetchone()
    if existing is not None:
        return _refresh_article(conn, article, fingerprint, existing)
    _lock_keys(conn, fingerprint)
    event_at = _event_at(article.published_at)
    match: _Match | None = None
    exact = conn.execute(
        "SELECT coalesce(duplicate_of, id), story_id FROM articles WHERE content_hash = %s "
        "ORDER BY first_seen_at, id LIMIT 1",
        (digest,),
    ).fetchone()
    if exact is not None:
        match = _Match(int(exact[0]), exact[1], "exact", 1.0)
    else:
        match = _find_near_duplicate(conn, fingerprint, event_at, story_window)
    story_id = match.story_id if match is not None else None
    if story_id is None:
        story_id = _find_story(conn, fingerprint.terms, event_at, story_window)
    if story_id is None:
        story_id = _create_story(conn, article)
    else:
        conn.execute("UPDATE stories SET last_seen_at = now() WHERE id = %s", (story_id,))
    row = conn.execute(
        """
        INSERT INTO articles (source_id, url, canonical_url, title, author, published_at,
                              language, sitename, description, tags, image_url, text,
                              word_count, content_hash, duplicate_of, duplicate_kind,
                              duplicate_similarity, story_id, story_terms, event_at,
                              published_source, modified_at, modified_source, authors)
        VALUES (%(source_id)s, %(url)s, %(canonical_url)s, %(title)s, %(author)s,
                %(published_at)s, %(language)s, %(sitename)s, %(description)s, %(tags)s,
                %(image_url)s, %(text)s, %(word_count)s, %(content_hash)s, %(duplicate_of)s,
                %(duplicate_kind)s, %(duplicate_similarity)s, %(story_id)s, %(story_terms)s,
                %(event_at)s, %(published_source)s, %(modified_at)s, %(modified_source)s,
                %(authors)s)
        RETURNING id
        """,
        {
            **article_values(article, digest),
            "source_id": source_id,
            "duplicate_of": match.original_id if match else None,
            "duplicate_kind": match.kind if match else None,
            "duplicate_similarity": match.similarity if match else None,
            "story_id": story_id,
            "story_terms": [] if match else list(fingerprint.terms),
            "event_at": event_at,
        },
    ).fetchone()
    assert row is not None
    article_id = int(row[0])
    _index_article(
        conn, article_id, fingerprint, event_at, story_id, original=match is None, new=True
    )
    return article_id, "duplicate" if match is not None else "stored"


def article_values(article: Article, digest: str) -> dict[str, Any]:
    """The columns an extracted article provides, as named query parameters."""
    return {
        "url": article.url,
        "canonical_url": article.canonical_url,
        "title": article.title,
        "author": article.author,
        "published_at": article.published_at,
        "language": article.language,
        "sitename": article.sitename,
        "description": article.description,
        "tags": list(article.tags),
        "image_url": article.image_url,
        "text": article.text,
        "word_count": article.word_count,
        "content_hash": digest,
        "published_source": article.published_source if article.published_at else None,
        "modified_at": article.modified_at,
        "modified_source": article.modified_source if article.modified_at else None,
        "authors": list(article.authors),
    }


def _create_story(conn: psycopg.Connection[Any], article: Article) -> int:
    row = conn.execute(
        "INSERT INTO stories (title) VALUES (%s) RETURNING id",
        (article.title or article.canonical_url,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _refresh_article(
    conn: psycopg.Connection[Any],
    article: Article,
    fingerprint: Fingerprint,
    existing: tuple[Any, ...],
) -> tuple[int, Outcome]:
    """A known canonical URL fetched again: keep the old text as a revision if it changed.

    The row keeps its id, story and first_seen_at. Its band keys and terms are recomputed,
    and it is never compared with itself: an original stays an original; a duplicate whose
    new text no longer matches its original becomes an original (in the same story).
    """
    article_id, old_hash, revision = int(existing[0]), existing[1], int(existing[2])
    duplicate_of = existing[3]
    digest = fingerprint.content_hash
    if old_hash == digest:
        conn.execute("UPDATE articles SET fetched_at = now() WHERE id = %s", (article_id,))
        return article_id, "unchanged"
    _lock_keys(conn, fingerprint)
    conn.execute(
        "INSERT INTO article_revisions "
        "(article_id, revision, title, text, content_hash, fetched_at) "
        "SELECT id, revision, title, text, content_hash, fetched_at FROM articles WHERE id = %s "
        "ON CONFLICT (article_id, revision) DO NOTHING",
        (article_id,),
    )
    kind: str | None = None
    score: float | None = None
    if duplicate_of is not None:
        original = conn.execute(
            "SELECT content_hash, text, title FROM articles WHERE id = %s", (duplicate_of,)
        ).fetchone()
        if original is not None and original[0] == digest:
            kind, score = "exact", 1.0
        elif original is not None:
            sim = similarity(
                fingerprint.text.shingles, shingles(body_text(original[2], original[1]))
            )
            if is_near_duplicate(sim):
                kind, score = "near", sim.jaccard
        if kind is None:
            duplicate_of = None
    row = conn.execute(
        """
        UPDATE articles
           SET url = %(url)s, title = coalesce(%(title)s, title),
               author = coalesce(%(author)s, author),
               published_at = coalesce(published_at, %(published_at)s),
               published_source = CASE WHEN published_at IS NULL THEN %(published_source)s
                                       ELSE published_source END,
               modified_at = coalesce(%(modified_at)s, modified_at),
               modified_source = CASE WHEN %(modified_at)s::timestamptz IS NULL
                                      THEN modified_source ELSE %(modified_source)s END,
               authors = CASE WHEN cardinality(%(authors)s::text[]) > 0 THEN %(authors)s::text[]
                              ELSE authors END,
               language = coalesce(%(language)s, language),
               sitename = coalesce(%(sitename)s, sitename),
               description = coalesce(%(description)s, description),
               tags = %(tags)s, image_url = coalesce(%(image_url)s, image_url),
               text = %(text)s, word_count = %(word_count)s, content_hash = %(content_hash)s,
               revision = %(revision)s, duplicate_of = %(duplicate_of)s,
               duplicate_kind = %(duplicate_kind)s,
               duplicate_similarity = %(duplicate_similarity)s,
               story_terms = CASE WHEN %(duplicate_of)s::bigint IS NULL
                                  THEN %(story_terms)s::text[] ELSE '{}' END,
               event_at = coalesce(event_at, first_seen_at),
               fetched_at = now(), updated_at = now()
         WHERE id = %(id)s
        RETURNING story_id, event_at
        """,
        {
            **article_values(article, digest),
            "revision": revision + 1,
            "duplicate_of": duplicate_of,
            "duplicate_kind": kind,
            "duplicate_similarity": score,
            "story_terms": list(fingerprint.terms),
            "id": article_id,
        },
    ).fetchone()
    assert row is not None
    _index_article(conn, article_id, fingerprint, row[1], row[0], original=duplicate_of is None)
    return article_id, "updated"
