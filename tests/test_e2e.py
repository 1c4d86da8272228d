"""End to end: the real `newsagg` CLI, a real Celery worker (and beat), Redis, PostgreSQL and
the local news sites over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import ROOT, TEST_ENV, newsagg
from tests.test_pipeline import articles_by_url, check_site_rows

pytestmark = pytest.mark.e2e
Conn = psycopg.Connection[Any]


def test_crawl_wait_stores_every_article_and_failure(
    worker: subprocess.Popen[bytes], conn: Conn, sites: list[Any]
) -> None:
    for site in sites:
        newsagg("sources", "add", site.name, site.base_url + site.feed_path, "--kind", "feed")
    listing = newsagg("sources", "list")
    assert all(site.name in listing.stdout for site in sites)

    proc = newsagg(
        "crawl", *[site.name for site in sites], "--wait", "--timeout", "150", timeout=180
    )
    assert "found" in proc.stdout and "duplicates" in proc.stdout
    crawls = conn.execute(
        "SELECT status, trigger, urls_queued, urls_done, failures FROM crawls ORDER BY id"
    ).fetchall()
    assert len(crawls) == len(sites)
    for status, trigger, queued, done, _failures in crawls:
        assert (status, trigger) == ("finished", "manual")
        assert queued == done > 0
    for site in sites:
        check_site_rows(conn, site)
    expected = {s.base_url + a.path for s in sites for a in s.articles}
    assert set(articles_by_url(conn)) == expected
    total_failures = sum(len(s.failures) for s in sites)
    assert sum(c[4] for c in crawls) == total_failures

    status = newsagg("status")
    for site in sites:
        assert site.name in status.stdout
    for column in ("health", "interval", "next crawl", "last crawl", "result", "24 h"):
        assert column in status.stdout
    assert "finished:" in status.stdout and " ok " in status.stdout
    # a second crawl finds nothing new and stores nothing twice
    newsagg("crawl", sites[0].name, "--wait", "--timeout", "60", timeout=90)
    assert set(articles_by_url(conn)) == expected
    assert b"Traceback" not in worker.log_path.read_bytes()  # type: ignore[attr-defined]


def test_crawl_of_unreadable_source_exits_non_zero(
    worker: subprocess.Popen[bytes], conn: Conn, sites: list[Any]
) -> None:
    newsagg("sources", "add", "gone", sites[0].base_url + "/no-such-feed.xml", "--kind", "feed")
    proc = newsagg("crawl", "gone", "--wait", "--timeout", "60", timeout=90, check=False)
    assert proc.returncode == 1
    assert "failed" in proc.stdout
    assert "404" in proc.stderr


def test_crawl_unknown_source_is_a_clear_error(conn: Conn) -> None:
    proc = newsagg("crawl", "nope", check=False)
    assert proc.returncode != 0
    assert "no source named nope" in proc.stderr


def test_run_starts_worker_and_beat_that_crawl_on_schedule(
    conn: Conn, redis_db: Any, sites: list[Any], tmp_path: Path
) -> None:
    site = sites[1]
    newsagg("sources", "add", site.name, site.base_url + site.feed_path, "--kind", "feed")
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
        env={**os.environ, **TEST_ENV, "NEWSAGG_DISPATCH_EVERY": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        row = None
        while time.monotonic() < deadline:
            row = conn.execute("SELECT status, trigger FROM crawls").fetchone()
            if row and row[0] == "finished":
                break
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            time.sleep(0.5)
        assert row == ("finished", "schedule"), (tmp_path / "run.log").read_text()
        check_site_rows(conn, site)
        # exactly one crawl per due time: the source's next crawl moved forward
        assert conn.execute("SELECT count(*) FROM crawls").fetchone() == (1,)
    finally:
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    output = (tmp_path / "run.log").read_text()
    assert code == 0, output
    assert "beat: Starting" in output and "ready." in output
    assert "Traceback" not in output
