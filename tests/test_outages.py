"""Which errors mean "a service is down" (wait for it) and which mean "this page or this
statement is bad" (bounded retries, then a failure row): real errors from real servers."""

from __future__ import annotations

import random
import time
from typing import Any

import psycopg
import pytest
import redis

from tests.services import free_port
from workers import pipeline
from workers.discover import Candidate, Discovery
from workers.extract import TooComplex, extract_article
from workers.outages import Outage, outage_of, through_outages


def test_unreachable_servers_are_outages() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(psycopg.OperationalError) as pg:
        psycopg.connect(f"postgresql://127.0.0.1:{port}/x", connect_timeout=2)
    assert outage_of(pg.value) == "postgres"
    with pytest.raises(redis.ConnectionError) as rd:
        redis.Redis(port=port, socket_connect_timeout=2).ping()
    assert outage_of(rd.value) == "redis"


def test_a_bad_statement_is_not_an_outage(conn: psycopg.Connection[Any]) -> None:
    # An index entry too large for a btree page: PostgreSQL refuses it on every try, with
    # an OperationalError subclass. Waiting for it to pass would wait forever.
    conn.execute("CREATE TEMP TABLE wide (v text PRIMARY KEY)")
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as big:
        conn.execute(
            "INSERT INTO wide SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i"
        )
    assert isinstance(big.value, psycopg.OperationalError)
    assert outage_of(big.value) is None
    with pytest.raises(psycopg.errors.DivisionByZero) as zero:
        conn.execute("SELECT 1 / 0")
    assert outage_of(zero.value) is None


def test_through_outages_waits_then_gives_up_and_lets_other_errors_through() -> None:
    with pytest.raises(redis.ConnectionError) as refused:
        redis.Redis(port=free_port(), socket_connect_timeout=1).ping()
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise refused.value

    started = time.monotonic()
    with pytest.raises(Outage) as gone:
        through_outages(down, wait=2.0)
    assert gone.value.service == "redis" and calls >= 3  # pauses 0.25, 0.5, 1 s
    assert time.monotonic() - started < 3

    def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        through_outages(broken, wait=10.0)


def test_over_long_urls_are_not_listed() -> None:
    long = "https://example.com/" + "a" * 3000
    found = Discovery(candidates=(Candidate(long), Candidate("https://example.com/ok")))
    assert [item.url for item in pipeline.list_candidates(found, 10)] == ["https://example.com/ok"]


def test_a_text_longer_than_any_article_is_refused() -> None:
    words = [
        "council",
        "harbour",
        "storm",
        "budget",
        "minister",
        "station",
        "market",
        "river",
        "school",
        "vote",
    ]
    rng = random.Random(1)

    def sentence() -> str:
        return " ".join(rng.choice(words) for _ in range(12)).capitalize() + "."

    body = "".join("<p>" + " ".join(sentence() for _ in range(8)) + "</p>" for _ in range(800))
    html = f"<html><body><article><h1>Long</h1>{body}</article></body></html>"
    with pytest.raises(TooComplex, match="longer than any article"):
        extract_article(html, "https://example.com/long")


def test_worker_pool_checks_only_idle_connections(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection handed out moments ago goes out again without a round trip; one idle
    longer is checked, so a connection that died with its server is replaced."""
    from workers import app

    with psycopg.connect(database, autocommit=True) as conn:
        app.check_idle_connection(conn)  # first time out of the pool: checked, alive
    # closed now: what a server restart leaves in the pool
    app.check_idle_connection(conn)  # handed out moments ago: not asked
    monkeypatch.setattr(app, "CHECK_IDLE_AFTER", 0.0)
    with pytest.raises(psycopg.OperationalError):
        app.check_idle_connection(conn)


@pytest.mark.parametrize("mode", ["off", "on"])
def test_worker_sessions_commit_as_configured(database: str, settings: Any, mode: str) -> None:
    """Asynchronous commit by default (NEWSAGG_DB_SYNCHRONOUS_COMMIT); the leases send again
    what a server crash takes back."""
    from workers.app import Resources

    resources = Resources(
        settings.model_copy(update={"database_url": database, "db_synchronous_commit": mode})
    )
    try:
        with resources.pool.connection() as conn:
            row = conn.execute("SHOW synchronous_commit").fetchone()
        assert row == (mode,)
    finally:
        resources.close()
