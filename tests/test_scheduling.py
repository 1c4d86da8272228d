"""Scheduling in Postgres with a controllable clock: adaptive intervals, back-off and
recovery, hints, due times claimed once, leases, housekeeping, backfill."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from workers import pipeline, store
from workers.fetch import Fetcher
from workers.settings import Settings

Conn = psycopg.Connection[Any]
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class FeedServer:
    """A feed whose status, body hints and headers a test can change between crawls."""

    def __init__(self) -> None:
        self.status = 200
        self.ttl: int | None = None
        self.headers: dict[str, str] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ttl = f"<ttl>{server.ttl}</ttl>" if server.ttl else ""
                # a new item each time, so the body never repeats
                body = (
                    f'<rss version="2.0"><channel><title>F</title>{ttl}<item><title>x</title>'
                    f"<link>{server.url}/story/{threading.get_ident()}-{id(self)}</link>"
                    "</item></channel></rss>"
                ).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body)))
                for name, value in server.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.httpd.shutdown()


def crawl(
    conn: Conn,
    fetcher: Fetcher,
    settings: Settings,
    source_id: int,
    now: datetime,
    trigger: store.Trigger = "manual",
) -> store.Crawl:
    crawl_id = store.create_crawl(conn, source_id, trigger)
    assert crawl_id is not None
    pipeline.crawl_source(conn, fetcher, settings, crawl_id, now=now, jitter=0.5)
    # articles are not processed here: scheduling depends on what the source lists
    conn.execute(
        "UPDATE crawls SET status = 'finished' WHERE id = %s AND status = 'running'", (crawl_id,)
    )
    result = store.get_crawl(conn, crawl_id)
    assert result is not None
    return result


def schedule_of(conn: Conn, source_id: int) -> tuple[timedelta, datetime, bool, str]:
    row = conn.execute(
        "SELECT crawl_interval, next_crawl_at, healthy, schedule_reason FROM sources WHERE id = %s",
        (source_id,),
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


def publish(conn: Conn, source_id: int, count: int, now: datetime) -> None:
    """`count` URLs first listed by the source, spread over the week before `now`."""
    conn.execute(
        "INSERT INTO discovered_urls (url, source_id, state, discovered_at) "
        "SELECT 'https://busy.example/' || %(sid)s || '/' || g, %(sid)s, 'done', "
        "%(now)s - (g * interval '1 second' * 600000 / %(count)s) "
        "FROM generate_series(1, %(count)s) g",
        {"sid": source_id, "now": now, "count": count},
    )


def test_busy_and_quiet_feeds(
    conn: Conn, fetcher: Fetcher, settings: Settings, feed: FeedServer
) -> None:
    busy = store.add_source(conn, "busy", feed.url + "/busy.xml", "feed")
    quiet = store.add_source(conn, "quiet", feed.url + "/quiet.xml", "feed")
    publish(conn, busy.id, 5000, T0)  # ~30 an hour
    crawl(conn, fetcher, settings, busy.id, T0)
    crawl(conn, fetcher, settings, quiet.id, T0)
    busy_interval, busy_next, _, reason = schedule_of(conn, busy.id)
    quiet_interval, quiet_next, _, _ = schedule_of(conn, quiet.id)
    assert busy_interval == timedelta(minutes=5)  # 7 d / 5001 → clamped to the minimum
    assert busy_next == T0 + busy_interval
    assert "5001 new in 7 days" in reason
    assert quiet_interval == timedelta(hours=6)  # 7 d / 1 new → clamped to the maximum
    assert quiet_next == T0 + timedelta(hours=6)
    # the busy one, once its burst is more than a week old, slows down too
    later = T0 + timedelta(days=8)
    crawl(conn, fetcher, settings, busy.id, later)
    assert schedule_of(conn, busy.id)[0] == timedelta(hours=6)


def test_backoff_unhealthy_and_recovery(
    conn: Conn, fetcher: Fetcher, settings: Settings, feed: FeedServer
) -> None:
    source = store.add_source(conn, "flaky", feed.url + "/feed.xml", "feed")
    publish(conn, source.id, 168, T0)  # hourly
    crawl(conn, fetcher, settings, source.id, T0)
    normal = schedule_of(conn, source.id)[0]
    assert timedelta(minutes=55) < normal < timedelta(minutes=65)
    feed.status = 500
    intervals = []
    for i in range(1, 6):
        result = crawl(conn, fetcher, settings, source.id, T0 + timedelta(hours=i))
        assert result.status == "failed"
        intervals.append(schedule_of(conn, source.id))
    # doubling per failure (the rate itself drifts a little as the clock moves), then capped
    assert abs(intervals[0][0] / normal - 2) < 0.05
    assert abs(intervals[1][0] / normal - 4) < 0.1
    assert intervals[2][0] == timedelta(hours=6)
    interval, next_at, healthy, reason = intervals[4]
    assert not healthy and interval == timedelta(days=1) and "unhealthy" in reason
    assert next_at == T0 + timedelta(hours=5, days=1)
    feed.status = 200
    crawl(conn, fetcher, settings, source.id, T0 + timedelta(hours=6))
    interval, _, healthy, _ = schedule_of(conn, source.id)
    assert healthy and interval < timedelta(hours=2)


def test_hints_are_lower_bounds(
    conn: Conn, fetcher: Fetcher, settings: Settings, feed: FeedServer
) -> None:
    source = store.add_source(conn, "hinted", feed.url + "/feed.xml", "feed")
    publish(conn, source.id, 5000, T0)
    feed.ttl = 90  # minutes
    crawl(conn, fetcher, settings, source.id, T0)
    assert schedule_of(conn, source.id)[0] == timedelta(minutes=90)
    feed.ttl = None
    feed.headers = {"Cache-Control": "public, max-age=1800"}
    crawl(conn, fetcher, settings, source.id, T0 + timedelta(hours=2))
    assert schedule_of(conn, source.id)[0] == timedelta(minutes=30)
    feed.headers = {"Cache-Control": "max-age=99999999"}
    crawl(conn, fetcher, settings, source.id, T0 + timedelta(hours=4))
    assert schedule_of(conn, source.id)[0] == timedelta(hours=6)  # capped at the maximum
    feed.status = 503
    feed.headers = {"Retry-After": "7200"}
    crawl(conn, fetcher, settings, source.id, T0 + timedelta(hours=6))
    assert schedule_of(conn, source.id)[0] >= timedelta(hours=2)


def test_per_source_bounds(
    conn: Conn, fetcher: Fetcher, settings: Settings, feed: FeedServer
) -> None:
    source = store.add_source(
        conn,
        "bounded",
        feed.url + "/feed.xml",
        "feed",
        min_interval=timedelta(minutes=20),
        max_interval=timedelta(hours=1),
    )
    publish(conn, source.id, 5000, T0)
    crawl(conn, fetcher, settings, source.id, T0)
    assert schedule_of(conn, source.id)[0] == timedelta(minutes=20)
    crawl(conn, fetcher, settings, source.id, T0 + timedelta(days=9))
    assert schedule_of(conn, source.id)[0] == timedelta(hours=1)


def test_dispatcher_with_controllable_clock(conn: Conn) -> None:
    source = store.add_source(
        conn, "clocked", "https://c.example/feed", "feed", interval=timedelta(minutes=10)
    )
    conn.execute("UPDATE sources SET next_crawl_at = %s", (T0,))
    assert store.claim_due_sources(conn, now=T0 - timedelta(seconds=1)) == []
    [(first, _)] = store.claim_due_sources(conn, now=T0)
    assert store.claim_due_sources(conn, now=T0 + timedelta(minutes=5)) == []
    # still running at the next due time: no second crawl
    assert store.claim_due_sources(conn, now=T0 + timedelta(minutes=10)) == []
    store.fail_crawl(conn, first, "done")
    [(second, _)] = store.claim_due_sources(conn, now=T0 + timedelta(minutes=21))
    due = conn.execute("SELECT due_at FROM crawls ORDER BY id").fetchall()
    assert [d[0] for d in due] == [T0, T0 + timedelta(minutes=20)]
    assert second != first
    assert source.id


def test_a_due_time_is_claimed_once(conn: Conn) -> None:
    """A dispatcher with a stale view (the due time put back) cannot start that crawl again."""
    store.add_source(conn, "once", "https://o.example/feed", "feed")
    conn.execute("UPDATE sources SET next_crawl_at = %s", (T0,))
    [(crawl_id, _)] = store.claim_due_sources(conn, now=T0)
    store.fail_crawl(conn, crawl_id, "done")
    conn.execute("UPDATE sources SET next_crawl_at = %s", (T0,))
    assert store.claim_due_sources(conn, now=T0 + timedelta(seconds=1)) == []
    assert conn.execute("SELECT count(*) FROM crawls").fetchone() == (1,)


def test_lease_expiry_redispatch_abandon_and_pruning(conn: Conn) -> None:
    source = store.add_source(conn, "leased", "https://l.example/feed", "feed")
    crawl_id = store.create_crawl(conn, source.id, "schedule")
    lease = timedelta(minutes=30)

    def lost(minutes: float) -> store.LostWork:
        return store.find_lost_work(
            conn, lease, max_redispatches=1, now=T0 + timedelta(minutes=minutes)
        )

    conn.execute("UPDATE crawls SET last_activity_at = %s", (T0,))
    assert lost(29) == store.LostWork()
    # idle past its lease, never started: its message was lost; the source is read again
    assert lost(31) == store.LostWork(crawls=(crawl_id,))
    assert lost(31 + 29) == store.LostWork()  # taking it back renewed the lease
    # lost again: re-dispatched once already, so it is given up
    assert lost(31 + 31) == store.LostWork(abandoned=(crawl_id,))
    crawl = store.get_crawl(conn, crawl_id)  # type: ignore[arg-type]
    assert crawl is not None and crawl.status == "abandoned"
    assert crawl.error and "re-dispatches" in crawl.error
    for age in (1, 40, 41):
        conn.execute(
            "INSERT INTO fetches (purpose, url, status, fetched_at) "
            "VALUES ('article', 'u', 'ok', now() - %s * interval '1 day')",
            (age,),
        )
    assert store.prune_fetches(conn, timedelta(days=30), batch=1) == 2
    assert conn.execute("SELECT count(*) FROM fetches").fetchone() == (1,)


def test_manual_crawl_reschedules_like_a_scheduled_one(
    conn: Conn, fetcher: Fetcher, settings: Settings, feed: FeedServer
) -> None:
    source = store.add_source(conn, "manual", feed.url + "/feed.xml", "feed")
    crawl(conn, fetcher, settings, source.id, T0, trigger="manual")
    interval, next_at, _, _ = schedule_of(conn, source.id)
    assert next_at == T0 + interval
    assert conn.execute("SELECT trigger FROM crawls").fetchone() == ("manual",)


def article_fetches(conn: Conn) -> dict[str, int]:
    rows = conn.execute(
        "SELECT url, count(*) FROM fetches WHERE purpose = 'article' GROUP BY url"
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def test_backfill_stops_at_since_and_resumes(
    conn: Conn, fetcher: Fetcher, settings: Settings, sites: list[Any]
) -> None:
    site = sites[0]  # its robots.txt names its sitemap index (news sitemap + gzip sitemap)
    source = store.add_source(conn, site.name, site.base_url + site.feed_path, "feed")
    since = datetime(2020, 6, 1, tzinfo=UTC)
    crawl_id = store.create_crawl(conn, source.id, "backfill", backfill_since=since)
    assert crawl_id is not None
    plan = pipeline.crawl_source(conn, fetcher, settings, crawl_id)
    assert plan.url_ids
    half = len(plan.url_ids) // 2
    for url_id in plan.url_ids[:half]:
        pipeline.process_article(conn, fetcher, settings, url_id)
    # interrupted: its worker died; the lease runs out
    conn.execute("UPDATE crawls SET last_activity_at = now() - interval '2 hours'")
    lost = store.find_lost_work(conn, timedelta(hours=1), max_redispatches=0)
    assert lost.abandoned == (crawl_id,)
    resumed = store.create_crawl(conn, source.id, "backfill", backfill_since=since)
    assert resumed is not None
    plan2 = pipeline.crawl_source(conn, fetcher, settings, resumed)
    assert set(plan2.url_ids) == set(plan.url_ids[half:])  # only what was left
    for url_id in plan2.url_ids:
        pipeline.process_article(conn, fetcher, settings, url_id)
    crawl2 = store.get_crawl(conn, resumed)
    assert crawl2 is not None and crawl2.status == "finished"
    # nothing fetched twice
    assert set(article_fetches(conn).values()) == {1}
    stored = {r[0] for r in conn.execute("SELECT canonical_url FROM articles").fetchall()}
    for article in site.articles:
        url = site.base_url + article.path
        if article.published and article.published >= "2020-06-01":
            assert url in stored, url
        elif article.published:
            assert url not in stored, url
    # the sitemap walk was recorded, newest child first
    sources = conn.execute(
        "SELECT url FROM fetches WHERE purpose = 'source' AND crawl_id = %s ORDER BY id",
        (crawl_id,),
    ).fetchall()
    assert sources and sources[0][0].endswith("/sitemap.xml")


def test_backfill_without_any_sitemap_fails_clearly(
    conn: Conn, fetcher: Fetcher, settings: Settings, feed: FeedServer
) -> None:
    source = store.add_source(conn, "nositemap", feed.url + "/feed.xml", "feed")
    feed.status = 404
    crawl_id = store.create_crawl(conn, source.id, "backfill")
    assert crawl_id is not None
    pipeline.crawl_source(conn, fetcher, settings, crawl_id)
    crawl_row = store.get_crawl(conn, crawl_id)
    assert crawl_row is not None and crawl_row.status == "failed"
    assert "no readable sitemap" in (crawl_row.error or "")
