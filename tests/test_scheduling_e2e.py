"""Scheduling with real processes: two beats and two workers never double a crawl; a worker
killed mid-crawl loses its lease and the source is crawled again, nothing stored twice."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import ROOT, TEST_ENV, newsagg
from tests.test_hostile import PacedSite
from workers import store

pytestmark = pytest.mark.e2e
Conn = psycopg.Connection[Any]


def start_beat(tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "beat", "--schedule", str(tmp_path / name)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, **TEST_ENV, "NEWSAGG_DISPATCH_EVERY": "0.5"},
        start_new_session=True,
    )


def wait_idle(conn: Conn, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = conn.execute(
            "SELECT count(*) FROM crawls WHERE status IN ('queued', 'running')"
        ).fetchone()
        if active == (0,):
            return
        time.sleep(0.3)
    raise AssertionError("crawls still active")


def test_two_beats_two_workers_crawl_once_per_due_time(
    workers: Any, conn: Conn, sites: list[Any], tmp_path: Path
) -> None:
    workers("alpha")
    workers("beta")
    for site in sites:
        newsagg(
            "sources",
            "add",
            site.name,
            site.base_url + site.feed_path,
            "--min-interval",
            "2s",
            "--max-interval",
            "2s",
        )
    beats = [start_beat(tmp_path, "beat-a"), start_beat(tmp_path, "beat-b")]
    try:
        time.sleep(14)
    finally:
        for beat in beats:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(timeout=30)
    wait_idle(conn)
    rows = conn.execute(
        "SELECT source_id, trigger, due_at, started_at, finished_at, status FROM crawls "
        "ORDER BY source_id, started_at"
    ).fetchall()
    by_source: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_source.setdefault(row[0], []).append(row)
    assert len(by_source) == len(sites)
    for crawls in by_source.values():
        assert {c[1] for c in crawls} == {"schedule"}
        assert {c[5] for c in crawls} == {"finished"}
        due_times = [c[2] for c in crawls]
        assert len(due_times) == len(set(due_times)), "a due time was crawled twice"
        # several cycles happened, and never two crawls of one source at once
        assert len(crawls) >= 3, crawls
        for earlier, later in itertools.pairwise(crawls):
            assert earlier[4] <= later[3], "two crawls of one source overlapped"
        # at most one crawl per 2 s interval over the ~14 s (plus the first one)
        assert len(crawls) <= 14 / 2 + 2
    # each crawl read its source exactly once
    reads = conn.execute(
        "SELECT crawl_id, count(*) FROM fetches WHERE purpose = 'source' GROUP BY crawl_id"
    ).fetchall()
    assert {r[1] for r in reads} == {1}
    assert len(reads) == len(rows)
    # and no article was stored twice
    dupes = conn.execute("SELECT count(*) - count(DISTINCT canonical_url) FROM articles").fetchone()
    assert dupes == (0,)


def test_killed_worker_loses_its_lease_and_nothing_is_stored_twice(
    workers: Any, conn: Conn
) -> None:
    site = PacedSite(articles=8, service_time=0.5)
    try:
        first = workers("doomed")
        newsagg(
            "sources",
            "add",
            "paced",
            site.base_url + "/feed.xml",
            "--host-delay",
            "0.1",
            "--host-concurrency",
            "2",
        )
        newsagg("crawl", "paced")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = conn.execute("SELECT urls_done FROM crawls").fetchone()
            if done and done[0] >= 2:
                break
            time.sleep(0.1)
        os.killpg(first.pid, signal.SIGKILL)  # the whole worker, children included
        first.wait(timeout=10)
        [(crawl_id, status, done)] = conn.execute(
            "SELECT id, status, urls_done FROM crawls"
        ).fetchall()
        assert status == "running" and 2 <= done < 8
        # the lease runs out; housekeeping (the task's function) releases the crawl
        time.sleep(1.5)
        assert store.abandon_stale_crawls(conn, timedelta(seconds=1)) == [crawl_id]
        workers("rescuer")
        newsagg("crawl", "paced", "--wait", "--timeout", "240", timeout=270)
    finally:
        site.httpd.shutdown()
    crawls = conn.execute("SELECT status FROM crawls ORDER BY id").fetchall()
    assert crawls == [("abandoned",), ("finished",)]
    urls = [r[0] for r in conn.execute("SELECT canonical_url FROM articles").fetchall()]
    assert len(urls) == 8 and len(set(urls)) == 8
    # URLs stored before the kill were not fetched again
    refetched = conn.execute(
        "SELECT count(*) FROM (SELECT url FROM fetches WHERE purpose = 'article' "
        "AND status = 'ok' GROUP BY url HAVING count(*) > 1) t"
    ).fetchone()
    assert refetched is not None and refetched[0] <= 2  # at most those in flight at the kill
