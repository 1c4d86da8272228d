"""Migrations: an old database migrated forward has exactly the schema of a fresh one."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import SERVER_URL, _database_url
from workers import store

# Everything a consumer or a worker can observe of the schema, order-insensitive.
CATALOG = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity, a.attcompression
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v')""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'""",
    "functions": """
        SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace""",
    "triggers": """
        SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal""",
    "comments": """
        SELECT classoid::regclass::text, objoid::regclass::text, objsubid, description
          FROM pg_description WHERE classoid = 'pg_class'::regclass
           AND objoid IN (SELECT oid FROM pg_class
                           WHERE relnamespace = 'public'::regnamespace)
        UNION ALL
        SELECT classoid::regclass::text, p.proname, objsubid, description
          FROM pg_description JOIN pg_proc p ON p.oid = objoid
         WHERE classoid = 'pg_proc'::regclass AND p.pronamespace = 'public'::regnamespace
        UNION ALL
        SELECT classoid::regclass::text, t.tgname, objsubid, description
          FROM pg_description JOIN pg_trigger t ON t.oid = objoid
         WHERE classoid = 'pg_trigger'::regclass""",
    "grants": """
        SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants
         WHERE table_schema = 'public' AND grantee IN ('newsagg_reader', 'newsagg_writer')""",
    "versions": "SELECT version, name FROM schema_migrations",
}


def snapshot(url: str) -> dict[str, set[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {name: set(conn.execute(query).fetchall()) for name, query in CATALOG.items()}


@pytest.fixture
def scratch() -> Iterator[Any]:
    """Make throw-away databases; all dropped at the end."""
    made: list[str] = []

    def make(label: str) -> str:
        name = f"newsagg_mig_{label}_{os.getpid()}"
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        store.create_database(SERVER_URL, name)
        made.append(name)
        return _database_url(name)

    yield make
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrated_database_equals_fresh_schema(scratch: Any) -> None:
    fresh, old = scratch("fresh"), scratch("old")
    with psycopg.connect(fresh, autocommit=True) as conn:
        assert store.migrate(conn) == [m.version for m in store.list_migrations()]
    with psycopg.connect(old, autocommit=True) as conn:
        assert store.migrate(conn, target=1) == [1]
        conn.execute("INSERT INTO sources (name, url, kind) VALUES ('kept', 'https://k/', 'feed')")
        assert store.migrate(conn) == [m.version for m in store.list_migrations()][1:]
        assert store.migrate(conn) == []
        assert conn.execute("SELECT name FROM sources").fetchall() == [("kept",)]
    a, b = snapshot(fresh), snapshot(old)
    for part in CATALOG:
        assert a[part] - b[part] == set() and b[part] - a[part] == set(), part


def test_database_from_before_migrations_is_upgraded(scratch: Any) -> None:
    """A database made by applying 0001's file directly (as schema.sql was before
    migrations existed) has no schema_migrations table; it is taken to be at 0001."""
    fresh, legacy = scratch("fresh2"), scratch("legacy")
    with psycopg.connect(fresh, autocommit=True) as conn:
        store.migrate(conn)
    first = store.list_migrations()[0]
    with psycopg.connect(legacy, autocommit=True) as conn:
        conn.execute(first.path.read_bytes())
        applied = store.migrate(conn)
    assert applied == [m.version for m in store.list_migrations()][1:]
    a, b = snapshot(fresh), snapshot(legacy)
    for part in CATALOG:
        assert a[part] == b[part], part


def test_schema_file_records_every_migration() -> None:
    recorded = re.findall(
        r"\((\d+), '(\w+)'\)",
        store.SCHEMA_FILE.read_text().split("INSERT INTO schema_migrations", 1)[1].split(";", 1)[0],
    )
    assert [(int(v), n) for v, n in recorded] == [
        (m.version, m.name) for m in store.list_migrations()
    ]
    versions = [m.version for m in store.list_migrations()]
    assert versions == list(range(1, len(versions) + 1))  # ordered, no gaps


def test_texts_are_compressed_with_lz4_where_the_server_has_it(scratch: Any) -> None:
    """The TOASTed columns every stored page writes use lz4 (faster than pglz at the same
    size) on a server built with it, and the server's default elsewhere."""
    url = scratch("lz4")
    with psycopg.connect(url, autocommit=True) as conn:
        store.migrate(conn)
        has_lz4 = conn.execute(
            "SELECT 'lz4' = ANY (enumvals) FROM pg_settings "
            "WHERE name = 'default_toast_compression'"
        ).fetchone()
        rows = conn.execute(
            "SELECT attrelid::regclass::text || '.' || attname, attcompression FROM pg_attribute "
            "WHERE attrelid IN ('articles'::regclass, 'article_revisions'::regclass) "
            "AND attname IN ('text', 'search') ORDER BY 1"
        ).fetchall()
        expected = "l" if has_lz4 and has_lz4[0] else ""
        assert rows == [
            ("article_revisions.text", expected),
            ("articles.search", expected),
            ("articles.text", expected),
        ]
        # A stored text is compressed with it (long enough to be compressed at all).
        conn.execute("INSERT INTO sources (name, url, kind) VALUES ('s', 'https://s/', 'feed')")
        conn.execute(
            "INSERT INTO articles (url, canonical_url, text, content_hash) "
            "VALUES ('https://s/a', 'https://s/a', repeat('news text ', 1000), 'h')"
        )
        method = conn.execute("SELECT pg_column_compression(text) FROM articles").fetchone()
        assert method == (("lz4" if expected else "pglz"),)
