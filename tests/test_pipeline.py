"""The pipeline's plain functions over real HTTP (local sites) and a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from workers import pipeline, store
from workers.fetch import Fetcher
from workers.settings import Settings

Conn = psycopg.Connection[Any]


def run_crawl(
    conn: Conn, fetcher: Fetcher, settings: Settings, source: store.Source
) -> store.Crawl:
    """One crawl, processed inline (what the Celery tasks do, without Celery)."""
    crawl_id = store.create_crawl(conn, source.id, "manual")
    assert crawl_id is not None
    plan = pipeline.crawl_source(conn, fetcher, settings, crawl_id)
    for url_id in plan.url_ids:
        pipeline.process_article(conn, fetcher, settings, url_id, final_attempt=True)
    crawl = store.get_crawl(conn, crawl_id)
    assert crawl is not None
    return crawl


def articles_by_url(conn: Conn) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute("SELECT * FROM articles").fetchall()
    return {r["canonical_url"]: r for r in rows}


def check_site_rows(conn: Conn, site: Any) -> None:
    """Every expected article stored once, with its title, text and date; every failure recorded."""
    stored = articles_by_url(conn)
    for expected in site.articles:
        url = site.base_url + expected.path
        assert url in stored, f"{url} not stored; have {sorted(stored)}"
        row = stored[url]
        assert expected.title_contains in (row["title"] or ""), (url, row["title"])
        for snippet in expected.text_snippets:
            assert snippet in row["text"], (url, snippet)
        if expected.published:
            assert row["published_at"] is not None, url
            assert row["published_at"].date().isoformat() == expected.published, url
        assert row["source_id"] is not None
        assert row["content_hash"] and row["story_id"] is not None
    for failure in site.failures:
        url = site.base_url + failure.path
        rows = conn.execute(
            "SELECT status, http_status, error FROM fetches WHERE url = %s AND purpose = 'article'",
            (url,),
        ).fetchall()
        assert rows, f"no fetches row for {url}"
        status, http_status, error = rows[-1]
        assert status == failure.status, (url, status, error)
        assert http_status == failure.http_status, (url, http_status)
        assert error, url


def test_feed_crawl_stores_articles_and_failures(
    conn: Conn, fetcher: Fetcher, settings: Settings, sites: list[Any]
) -> None:
    for site in sites:
        source = store.add_source(conn, site.name, site.base_url + site.feed_path, "feed")
        crawl = run_crawl(conn, fetcher, settings, source)
        assert crawl.status == "finished", crawl
        assert crawl.urls_done == crawl.urls_queued
        assert crawl.failures == len(site.failures)
        assert (
            crawl.articles_stored + crawl.duplicates + crawl.unchanged
            == crawl.urls_queued - crawl.failures
        )
        check_site_rows(conn, site)
    # every URL variant folded: one row per expected article, nothing else
    expected = {s.base_url + a.path for s in sites for a in s.articles}
    assert set(articles_by_url(conn)) == expected


def test_sitemap_and_listing_find_the_same_articles(
    conn: Conn, fetcher: Fetcher, settings: Settings, sites: list[Any]
) -> None:
    for site in sites:
        sitemap = store.add_source(
            conn, site.name + "-sitemap", site.base_url + site.sitemap_path, "sitemap"
        )
        crawl = run_crawl(conn, fetcher, settings, sitemap)
        assert crawl.status == "finished", crawl
        listing = store.add_source(
            conn, site.name + "-listing", site.base_url + site.listing_path, "page"
        )
        crawl = run_crawl(conn, fetcher, settings, listing)
        assert crawl.status == "finished", crawl
    stored = articles_by_url(conn)
    for site in sites:
        for article in site.articles:
            assert site.base_url + article.path in stored


def test_recrawl_is_not_modified_or_finds_nothing_new(
    conn: Conn, fetcher: Fetcher, settings: Settings, sites: list[Any]
) -> None:
    site = sites[0]
    source = store.add_source(conn, site.name, site.base_url + site.feed_path, "feed")
    first = run_crawl(conn, fetcher, settings, source)
    count = conn.execute("SELECT count(*) FROM articles").fetchone()
    fresh = store.get_source(conn, source.id)
    assert fresh is not None
    second = run_crawl(conn, fetcher, settings, fresh)
    assert first.urls_queued > 0
    assert second.status == "finished"
    assert second.urls_new == 0
    assert conn.execute("SELECT count(*) FROM articles").fetchone() == count


def test_redelivered_article_task_stores_nothing_twice(
    conn: Conn, fetcher: Fetcher, settings: Settings, sites: list[Any]
) -> None:
    site = sites[0]
    source = store.add_source(conn, site.name, site.base_url + site.feed_path, "feed")
    crawl_id = store.create_crawl(conn, source.id, "manual")
    assert crawl_id is not None
    plan = pipeline.crawl_source(conn, fetcher, settings, crawl_id)
    # a redelivered crawl task repeats discovery without queueing anything twice
    again = pipeline.crawl_source(conn, fetcher, settings, crawl_id)
    assert set(again.url_ids) <= set(plan.url_ids)
    for url_id in plan.url_ids:
        pipeline.process_article(conn, fetcher, settings, url_id)
    before = conn.execute("SELECT count(*) FROM fetches").fetchone()
    for url_id in plan.url_ids:
        assert pipeline.process_article(conn, fetcher, settings, url_id) is None
    assert conn.execute("SELECT count(*) FROM fetches").fetchone() == before
    crawl = store.get_crawl(conn, crawl_id)
    assert crawl is not None and crawl.urls_done == crawl.urls_queued


def test_transient_failure_asks_for_retry(
    conn: Conn, fetcher: Fetcher, settings: Settings, sites: list[Any]
) -> None:
    site = next(s for s in sites if any(f.http_status == 500 for f in s.failures))
    failure = next(f for f in site.failures if f.http_status == 500)
    source = store.add_source(conn, site.name, site.base_url + site.feed_path, "feed")
    crawl_id = store.create_crawl(conn, source.id, "manual")
    assert crawl_id is not None
    store.start_crawl(conn, crawl_id)
    [url_id] = store.queue_urls(
        conn, crawl_id, source.id, [store.Listed(site.base_url + failure.path)], max_attempts=3
    )
    assert pipeline.process_article(conn, fetcher, settings, url_id, final_attempt=False) == "retry"
    assert store.pending_url(conn, url_id) is not None  # still pending, attempt recorded
    assert pipeline.process_article(conn, fetcher, settings, url_id) == "failed"
    statuses = conn.execute("SELECT status, http_status FROM fetches").fetchall()
    assert statuses == [("http_error", 500), ("http_error", 500)]


@pytest.mark.parametrize("kind", ["feed", "sitemap"])
def test_unreadable_source_fails_the_crawl(
    conn: Conn, fetcher: Fetcher, settings: Settings, sites: list[Any], kind: str
) -> None:
    site = sites[0]
    source = store.add_source(conn, "broken", site.base_url + "/does-not-exist.xml", kind)  # type: ignore[arg-type]
    crawl = run_crawl(conn, fetcher, settings, source)
    assert crawl.status == "failed"
    assert crawl.error and "404" in crawl.error
    row = conn.execute(
        "SELECT consecutive_failures FROM sources WHERE id = %s", (source.id,)
    ).fetchone()
    assert row == (1,)


def test_malformed_feed_is_a_parse_error(
    conn: Conn, fetcher: Fetcher, settings: Settings, sites: list[Any]
) -> None:
    site = sites[0]
    # the listing page is HTML, not a feed
    source = store.add_source(conn, "not-a-feed", site.base_url + site.listing_path, "feed")
    crawl = run_crawl(conn, fetcher, settings, source)
    assert crawl.status == "failed", crawl
    row = conn.execute("SELECT status, error FROM fetches WHERE purpose = 'source'").fetchone()
    assert row is not None and row[0] == "parse_error" and row[1]


def test_conditional_get_uses_validators(
    conn: Conn, fetcher: Fetcher, settings: Settings, sites: list[Any]
) -> None:
    """The local sites send ETag/Last-Modified: the second read of the feed is a 304."""
    site = sites[0]
    source = store.add_source(conn, site.name, site.base_url + site.feed_path, "feed")
    run_crawl(conn, fetcher, settings, source)
    fresh = store.get_source(conn, source.id)
    assert fresh is not None and (fresh.etag or fresh.last_modified) and fresh.body_sha256
    run_crawl(conn, fetcher, settings, fresh)
    rows = conn.execute(
        "SELECT status, http_status FROM fetches WHERE purpose = 'source' ORDER BY id"
    ).fetchall()
    assert rows == [("ok", 200), ("not_modified", 304)]


def test_unchanged_body_without_validators_is_not_modified(
    conn: Conn, fetcher: Fetcher, settings: Settings
) -> None:
    """A server that sends no validators: the body's hash decides."""
    from tests.hostile import serve_hostile

    with serve_hostile() as hostile:
        source = store.add_source(conn, "plain", hostile.url("/feed.xml"), "feed")
        for _ in range(2):
            crawl_id = store.create_crawl(conn, source.id, "manual")
            assert crawl_id is not None
            pipeline.crawl_source(conn, fetcher, settings, crawl_id)
            conn.execute("UPDATE crawls SET status = 'finished' WHERE id = %s", (crawl_id,))
    rows = conn.execute(
        "SELECT status, http_status, error FROM fetches WHERE purpose = 'source' ORDER BY id"
    ).fetchall()
    assert [r[:2] for r in rows] == [("ok", 200), ("not_modified", 200)]
    assert rows[1][2] == "body unchanged since the last crawl"
