"""Postgres as the consumer's API: search, notifications, views, the reader and writer roles."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.test_store import make_article
from workers import store

Conn = psycopg.Connection[Any]


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}{port}"))


@pytest.fixture
def login(database: str) -> Iterator[Any]:
    """Create login roles that are members of a newsagg group role; dropped at the end."""
    made: list[str] = []

    def make(group: str) -> str:
        name = f"{group}_login_{os.getpid()}_{len(made)}"
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE {group}')
        made.append(name)
        return as_user(database, name)

    yield make
    with psycopg.connect(database, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def source(conn: Conn) -> store.Source:
    return store.add_source(conn, "coast", "https://coast.example/feed.xml", "feed")


def test_full_text_search_weights_title_and_stems(conn: Conn, source: store.Source) -> None:
    body = "Residents of the harbour town cleaned up after the night. " * 10
    store.store_article(
        conn,
        make_article("https://a.example/1", title="Storms hit the coast", text=body),
        source.id,
    )
    store.store_article(
        conn,
        make_article(
            "https://a.example/2",
            title="Harbour reopens",
            text="A storm passed. " + body[:-1] + " Other.",
        ),
        source.id,
    )
    store.store_article(
        conn,
        make_article(
            "https://a.example/3",
            title="Sturm an der Küste",
            language="de",
            text="Die Häuser an der Küste wurden beschädigt. " * 12,
        ),
        source.id,
    )
    rows = conn.execute(
        "SELECT title, ts_rank(search, q) AS rank FROM articles, "
        "websearch_to_tsquery(newsagg_ts_config('en'), 'storm') q "
        "WHERE search @@ q ORDER BY rank DESC"
    ).fetchall()
    assert [r[0] for r in rows] == [
        "Storms hit the coast",
        "Harbour reopens",
    ]  # stemmed, title first
    german = conn.execute(
        "SELECT title FROM articles WHERE search @@ "
        "websearch_to_tsquery(newsagg_ts_config('de'), 'Haus')"
    ).fetchall()
    assert german == [("Sturm an der Küste",)]
    conn.execute("SET enable_seqscan = off")  # a tiny table: make the planner show the index
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            "EXPLAIN SELECT id FROM articles WHERE search @@ "
            "websearch_to_tsquery(newsagg_ts_config('en'), 'storm')"
        ).fetchall()
    )
    assert "articles_search" in plan


def test_notifications_after_commit_on_three_channels(
    database: str, conn: Conn, source: store.Source
) -> None:
    with psycopg.connect(database, autocommit=True) as listener:
        for channel in ("articles", "article_duplicates", "article_revisions"):
            listener.execute(f"LISTEN {channel}")
        with conn.transaction():
            first, _ = store.store_article(conn, make_article("https://a.example/x"), source.id)
            copy, _ = store.store_article(conn, make_article("https://b.example/x"), source.id)
            assert list(listener.notifies(timeout=0.5)) == []  # nothing before commit
        changed = replace(
            make_article("https://a.example/x"),
            text="Storm hits the coast. " * 30 + "Update: power is back.",
        )
        with conn.transaction():
            store.store_article(conn, changed, source.id)
        notes = [(n.channel, n.payload) for n in listener.notifies(timeout=2, stop_after=3)]
    assert notes == [
        ("articles", str(first)),
        ("article_duplicates", str(copy)),
        ("article_revisions", str(first)),
    ]


def test_story_articles_view(conn: Conn, source: store.Source) -> None:
    first, _ = store.store_article(conn, make_article("https://a.example/x"), source.id)
    store.store_article(conn, make_article("https://b.example/x"), source.id)
    story = conn.execute("SELECT story_id FROM articles WHERE id = %s", (first,)).fetchone()
    rows = conn.execute(
        "SELECT article_id, source, duplicate_of FROM story_articles WHERE story_id = %s "
        "ORDER BY article_id",
        story,
    ).fetchall()
    assert rows == [(first, "coast", None), (first + 1, "coast", first)]


def test_date_provenance_and_authors_stored(conn: Conn, source: store.Source) -> None:
    modified = datetime(2024, 5, 18, 9, 0, tzinfo=UTC)
    article = replace(
        make_article("https://a.example/x"),
        published_source="metadata",
        modified_at=modified,
        modified_source="metadata",
        authors=("Jane Doe", "John Roe"),
    )
    store.store_article(conn, article, source.id)
    row = conn.execute(
        "SELECT published_source, modified_at, modified_source, authors FROM articles"
    ).fetchone()
    assert row == ("metadata", modified, "metadata", ["Jane Doe", "John Roe"])


def test_reader_role_reads_public_tables_and_nothing_else(
    conn: Conn, source: store.Source, login: Any
) -> None:
    store.store_article(conn, make_article("https://a.example/x"), source.id)
    with psycopg.connect(login("newsagg_reader"), autocommit=True) as reader:
        for relation in (
            "articles",
            "sources",
            "crawls",
            "fetches",
            "stories",
            "article_revisions",
            "unique_articles",
            "story_articles",
            "source_status",
            "crawl_history",
        ):
            reader.execute(f"SELECT * FROM {relation} LIMIT 1").fetchall()
        assert reader.execute("SELECT count(*) FROM unique_articles").fetchone() == (1,)
        forbidden = [
            "INSERT INTO sources (name, url, kind) VALUES ('x', 'https://x/', 'feed')",
            "UPDATE articles SET title = 'x'",
            "DELETE FROM articles",
            "SELECT * FROM article_bands",
            "SELECT * FROM article_terms",
            "SELECT * FROM schema_migrations",
            "CREATE TABLE mine (id int)",
            "TRUNCATE articles",
        ]
        for statement in forbidden:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(statement)


def test_writer_role_runs_the_pipeline_without_superuser(
    conn: Conn, login: Any, settings: Any
) -> None:
    with psycopg.connect(login("newsagg_writer"), autocommit=True) as writer:
        superuser = writer.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert superuser.fetchone() == (False,)
        source = store.add_source(writer, "w", "https://w.example/feed", "feed")
        writer.execute("UPDATE sources SET next_crawl_at = now() - interval '1 minute'")
        [(crawl_id, _)] = store.claim_due_sources(writer)
        store.start_crawl(writer, crawl_id)
        [url_id] = store.queue_urls(
            writer, crawl_id, source.id, [store.Listed("https://w.example/a")], max_attempts=3
        )
        outcome = store.finish_url(
            writer,
            url_id,
            store.FetchRecord(url="https://w.example/a", status="ok"),
            make_article("https://w.example/a"),
        )
        assert outcome == "stored"
        store.find_lost_work(writer, timedelta(hours=1), max_redispatches=3)
        store.prune_fetches(writer, timedelta(days=30))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            writer.execute("DROP TABLE articles")
