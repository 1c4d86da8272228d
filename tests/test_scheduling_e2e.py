"""Scheduling with real processes: two beats and two workers never double a crawl. (Workers
killed mid-crawl and lost messages: tests/test_faults.py.)"""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import newsagg, start_beat

pytestmark = pytest.mark.e2e
Conn = psycopg.Connection[Any]


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
