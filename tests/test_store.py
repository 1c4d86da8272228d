"""store.py against a real PostgreSQL: idempotence, exactly-once counting, races."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from workers import dedup, store
from workers.extract import Article

Conn = psycopg.Connection[Any]


def make_article(url: str, text: str = "Storm hits the coast. " * 30, **kw: Any) -> Article:
    fields: dict[str, Any] = {
        "url": url,
        "canonical_url": url,
        "title": "Storm hits the coast",
        "author": "Jane Doe",
        "published_at": datetime(2024, 5, 17, 8, 0, tzinfo=UTC),
        "language": "en",
        "sitename": "Coast Times",
        "description": None,
        "tags": ("weather",),
        "image_url": None,
        "text": text,
    }
    fields.update(kw)
    return Article(**fields)


def fetch_ok(url: str) -> store.FetchRecord:
    return store.FetchRecord(url=url, status="ok", final_url=url, http_status=200)


@pytest.fixture
def source(conn: Conn) -> store.Source:
    return store.add_source(conn, "coast", "https://coast.example/feed.xml", "feed")


def queue(conn: Conn, source: store.Source, *urls: str) -> tuple[int, list[int]]:
    crawl_id = store.create_crawl(conn, source.id, "manual")
    assert crawl_id is not None
    assert store.start_crawl(conn, crawl_id) is not None
    ids = store.queue_urls(
        conn, crawl_id, source.id, [store.Listed(u) for u in urls], max_attempts=3
    )
    return crawl_id, ids


def test_every_table_view_and_column_is_commented(conn: Conn) -> None:
    missing = conn.execute(
        """
        SELECT c.relname || coalesce('.' || a.attname, '')
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
          LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                  AND c.relkind = 'r'
         WHERE c.relkind IN ('r', 'v')
           AND obj_description(c.oid, 'pg_class') IS NULL
            OR (a.attname IS NOT NULL AND col_description(c.oid, a.attnum) IS NULL
                AND n.nspname = 'public')
        """
    ).fetchall()
    assert missing == []


def test_band_comments_state_the_lsh_layout(conn: Conn) -> None:
    """The comments consumers read agree with workers/dedup.py's bands and rows."""
    table, column = conn.execute(
        "SELECT obj_description('article_bands'::regclass, 'pg_class'), "
        "col_description('article_bands'::regclass, 1)"
    ).fetchone()
    assert f"({dedup.BANDS} per article" in table
    assert f"the band's {dedup.ROWS} MinHash values" in column
    assert len(dedup.text_signature(" ".join(f"w{i}" for i in range(200)), 50).bands) == (
        dedup.BANDS
    )


def test_schema_reapplies_cleanly(conn: Conn) -> None:
    store.migrate(conn)
    assert conn.execute("SELECT count(*) FROM sources").fetchone() == (0,)


def test_sources_add_list_remove(conn: Conn, source: store.Source) -> None:
    with pytest.raises(store.StoreError, match="already exists"):
        store.add_source(conn, "coast", "https://other.example/", "feed")
    updated = store.add_source(
        conn, "coast", "https://coast.example/rss", "feed", timedelta(minutes=5), replace=True
    )
    assert updated.id == source.id and updated.crawl_interval == timedelta(minutes=5)
    assert [s.name for s in store.find_sources(conn)] == ["coast"]
    assert store.remove_source(conn, "coast")
    assert not store.remove_source(conn, "coast")


def test_one_active_crawl_per_source(conn: Conn, source: store.Source) -> None:
    first = store.create_crawl(conn, source.id, "manual")
    assert first is not None
    assert store.create_crawl(conn, source.id, "schedule") is None
    assert store.active_crawl(conn, source.id) == first
    store.fail_crawl(conn, first, "boom")
    assert store.create_crawl(conn, source.id, "manual") is not None


def test_claim_due_sources_moves_schedule(conn: Conn, source: store.Source) -> None:
    claimed = store.claim_due_sources(conn)
    assert [s for _, s in claimed] == [source.id]
    assert store.claim_due_sources(conn) == []  # next_crawl_at moved forward
    row = conn.execute("SELECT next_crawl_at > now() FROM sources").fetchone()
    assert row == (True,)


def test_concurrent_dispatchers_claim_each_source_once(database: str, conn: Conn) -> None:
    for i in range(40):
        store.add_source(conn, f"s{i}", f"https://s{i}.example/feed", "feed")
    results: list[list[tuple[int, int]]] = []

    def dispatch() -> None:
        with psycopg.connect(database, autocommit=True) as c:
            results.append(store.claim_due_sources(c, limit=7))
            results.append(store.claim_due_sources(c, limit=100))

    threads = [threading.Thread(target=dispatch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sources = [s for batch in results for _, s in batch]
    assert sorted(sources) == sorted(set(sources))
    assert len(sources) == 40


def test_queue_urls_new_then_seen(conn: Conn, source: store.Source) -> None:
    crawl_id, ids = queue(conn, source, "https://coast.example/a", "https://coast.example/b")
    assert len(ids) == 2
    crawl = store.get_crawl(conn, crawl_id)
    assert crawl is not None
    assert (crawl.urls_found, crawl.urls_new, crawl.urls_queued) == (2, 2, 2)
    for url_id in ids:
        store.finish_url(conn, url_id, fetch_ok("x"), None)
    second, ids2 = queue(conn, source, "https://coast.example/a", "https://coast.example/c")
    assert len(ids2) == 1
    crawl2 = store.get_crawl(conn, second)
    assert crawl2 is not None and (crawl2.urls_found, crawl2.urls_new) == (2, 1)
    # What a watcher polls: several crawls in one statement, unknown ids left out.
    polled = store.get_crawls(conn, [crawl_id, second, -1])
    assert polled == {crawl_id: store.get_crawl(conn, crawl_id), second: crawl2}


def test_transient_failures_are_retried_by_later_crawls(conn: Conn, source: store.Source) -> None:
    _, ids = queue(conn, source, "https://coast.example/a", "https://coast.example/b")
    timeout = store.FetchRecord(url="a", status="timeout", error="slow")
    store.finish_url(conn, ids[0], timeout, None, retryable=True)
    store.finish_url(
        conn, ids[1], store.FetchRecord(url="b", status="http_error", http_status=404), None
    )
    _, again = queue(conn, source, "https://coast.example/a", "https://coast.example/b")
    assert again == [ids[0]]


def test_crawl_with_nothing_to_do_finishes_at_once(conn: Conn, source: store.Source) -> None:
    crawl_id, ids = queue(conn, source)
    crawl = store.get_crawl(conn, crawl_id)
    assert ids == [] and crawl is not None and crawl.status == "finished"


def test_finish_url_is_exactly_once_and_finishes_crawl(conn: Conn, source: store.Source) -> None:
    crawl_id, ids = queue(conn, source, "https://coast.example/a", "https://coast.example/b")
    assert (
        store.finish_url(conn, ids[0], fetch_ok("a"), make_article("https://coast.example/a"))
        == "stored"
    )
    assert (
        store.finish_url(conn, ids[0], fetch_ok("a"), make_article("https://coast.example/a"))
        is None
    )  # redelivery
    crawl = store.get_crawl(conn, crawl_id)
    assert crawl is not None and crawl.status == "running" and crawl.urls_done == 1
    assert (
        store.finish_url(conn, ids[1], store.FetchRecord(url="b", status="http_error"), None)
        == "failed"
    )
    crawl = store.get_crawl(conn, crawl_id)
    assert crawl is not None
    assert (crawl.status, crawl.urls_done, crawl.articles_stored, crawl.failures) == (
        "finished",
        2,
        1,
        1,
    )
    assert crawl.finished_at is not None
    assert conn.execute("SELECT count(*) FROM fetches").fetchone() == (2,)


def test_same_text_elsewhere_is_duplicate_of_earliest(conn: Conn, source: store.Source) -> None:
    first, outcome = store.store_article(conn, make_article("https://a.example/x"), source.id)
    assert outcome == "stored"
    second, outcome = store.store_article(conn, make_article("https://b.example/y"), source.id)
    assert outcome == "duplicate"
    third, _ = store.store_article(conn, make_article("https://c.example/z"), source.id)
    rows = conn.execute("SELECT id, duplicate_of, story_id FROM articles ORDER BY id").fetchall()
    story = rows[0][2]
    assert rows == [(first, None, story), (second, first, story), (third, first, story)]
    assert conn.execute("SELECT count(*) FROM unique_articles").fetchone() == (1,)


def test_changed_text_keeps_revision(conn: Conn, source: store.Source) -> None:
    article = make_article("https://a.example/x")
    article_id, _ = store.store_article(conn, article, source.id)
    assert store.store_article(conn, article, source.id) == (article_id, "unchanged")
    changed = replace(article, text=article.text + " Update: the road has reopened.")
    assert store.store_article(conn, changed, source.id) == (article_id, "updated")
    row = conn.execute(
        "SELECT revision, text FROM articles WHERE id = %s", (article_id,)
    ).fetchone()
    assert row == (1, changed.text)
    revs = conn.execute("SELECT revision, text FROM article_revisions").fetchall()
    assert revs == [(0, article.text)]
    assert conn.execute("SELECT duplicate_of FROM articles").fetchone() == (None,)


def test_concurrent_copies_make_one_original(
    database: str, conn: Conn, source: store.Source
) -> None:
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def insert(i: int) -> None:
        with psycopg.connect(database, autocommit=True) as c:
            barrier.wait()
            with c.transaction():
                outcomes.append(
                    store.store_article(
                        c, make_article(f"https://site{i}.example/wire"), source.id
                    )[1]
                )

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["duplicate"] * 5 + ["stored"]
    originals = conn.execute("SELECT count(*) FROM articles WHERE duplicate_of IS NULL")
    assert originals.fetchone() == (1,)


def test_concurrent_same_url_makes_one_row(database: str, conn: Conn, source: store.Source) -> None:
    barrier = threading.Barrier(4)

    def insert() -> None:
        with psycopg.connect(database, autocommit=True) as c:
            barrier.wait()
            with c.transaction():
                store.store_article(c, make_article("https://a.example/same"), source.id)

    threads = [threading.Thread(target=insert) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert conn.execute("SELECT count(*) FROM articles").fetchone() == (1,)


def test_notify_after_commit_for_originals_only(
    database: str, conn: Conn, source: store.Source
) -> None:
    with psycopg.connect(database, autocommit=True) as listener:
        listener.execute("LISTEN articles")
        with conn.transaction():
            first, _ = store.store_article(conn, make_article("https://a.example/x"), source.id)
            store.store_article(conn, make_article("https://b.example/x"), source.id)
        notes = list(listener.notifies(timeout=2, stop_after=2))
    assert [n.payload for n in notes] == [str(first)]


def test_lost_work_is_taken_back_once_per_lease(conn: Conn, source: store.Source) -> None:
    crawl_id = store.create_crawl(conn, source.id, "schedule")
    assert crawl_id is not None
    store.start_crawl(conn, crawl_id)
    listed = [store.Listed(f"https://coast.example/{n}") for n in "abc"]
    a, b, c = store.queue_urls(conn, crawl_id, source.id, listed, max_attempts=3)
    store.finish_url(conn, a, fetch_ok("a"), make_article("https://coast.example/a"))
    assert store.claim_url(conn, b, "host:1:x") is not None  # its worker dies

    def lost(**held: set[int]) -> store.LostWork:
        return store.find_lost_work(conn, timedelta(hours=1), max_redispatches=3, **held)

    def redispatches() -> int:
        row = conn.execute("SELECT redispatches FROM crawls WHERE id = %s", (crawl_id,))
        return int(row.fetchone()[0])  # type: ignore[index]

    assert lost() == store.LostWork()
    # the claim outlives the lease: that URL alone is sent again, the crawl is still busy
    conn.execute(
        "UPDATE discovered_urls SET claimed_at = now() - interval '2 hours' WHERE id = %s", (b,)
    )
    assert lost(held_urls={b}) == store.LostWork()  # the broker has it again: only late
    assert lost() == store.LostWork(urls=(b,), url_crawls=(crawl_id,))
    assert lost() == store.LostWork()  # taking it back renewed its claim's lease
    assert redispatches() == 1
    # the crawl goes idle; c is still in the queue (a long queue, not a lost message)
    conn.execute("UPDATE crawls SET last_activity_at = now() - interval '2 hours'")
    # (idle: its frontier list, if any, gets new chains)
    assert lost(held_urls={c}) == store.LostWork(idle_crawls=(crawl_id,))
    assert redispatches() == 1
    # the queue lost it (Redis restarted): c is sent again, b (sent just now) is not
    assert lost() == store.LostWork(urls=(c,), url_crawls=(crawl_id,), idle_crawls=(crawl_id,))
    assert redispatches() == 2
    crawl = store.get_crawl(conn, crawl_id)
    assert crawl is not None and crawl.status == "running"
    # the URL whose worker died costs one claim when it is taken again; c costs none
    again = store.claim_url(conn, b, "host:2:y")
    assert again is not None and again.claims == 1
    fresh = store.claim_url(conn, c, "host:2:z")
    assert fresh is not None and fresh.claims == 0
    # the same attempt claiming again (after an outage) counts nothing; letting go neither
    assert store.claim_url(conn, c, "host:2:z").claims == 0  # type: ignore[union-attr]
    store.release_claim(conn, c, "host:2:z")
    assert store.claim_url(conn, c, "host:3:w").claims == 0  # type: ignore[union-attr]


def test_crawl_whose_message_was_lost_reads_its_source_again(
    conn: Conn, source: store.Source
) -> None:
    crawl_id = store.create_crawl(conn, source.id, "manual")
    assert crawl_id is not None
    conn.execute("UPDATE crawls SET last_activity_at = now() - interval '2 hours'")
    hour = timedelta(hours=1)
    assert (
        store.find_lost_work(conn, hour, max_redispatches=3, held_crawls={crawl_id})
        == store.LostWork()
    )
    assert store.find_lost_work(conn, hour, max_redispatches=3) == store.LostWork(
        crawls=(crawl_id,)
    )


def test_abandoned_crawl_frees_its_source(conn: Conn, source: store.Source) -> None:
    crawl_id = store.create_crawl(conn, source.id, "schedule")
    conn.execute("UPDATE crawls SET last_activity_at = now() - interval '2 hours'")
    lost = store.find_lost_work(conn, timedelta(hours=1), max_redispatches=0)
    assert lost.abandoned == (crawl_id,) and not lost.crawls
    crawl = store.get_crawl(conn, crawl_id)  # type: ignore[arg-type]
    assert crawl is not None and crawl.status == "abandoned" and crawl.error
    assert store.create_crawl(conn, source.id, "schedule") is not None
