"""Where a page's CPU goes, stage by stage, in one process: steadier than the throughput run.

Run: .venv/bin/python -m benchmarks.stages [--rounds 3]

Over every page of ../shared/corpus/extraction (served by tests/newsweb.py on loopback from
a thread of this process), each round measures, per page:

- limit: trafilatura's default extraction with metadata (the throughput limit's work), as
  it ships: in a process of its own that never imports newsagg (benchmarks/limit.py);
- fetch: `Fetcher.fetch` of the page over HTTP;
- extract: `decode_page` + `extract_article`, as the pool runs it;
- fingerprint: `store.fingerprint_article` (content hash, shingles, MinHash, story terms);
- store: `claim_url` + `finish_url` into a fresh database, this process's CPU and the
  PostgreSQL backend's (read from /proc: the server must run on this machine);
- pipeline: `pipeline.process_article` whole (politeness in Redis, fetch, extract,
  fingerprint, store), its own CPU and the backend's, into another fresh database.

Client stages count this thread's CPU only (time.thread_time), so the web's thread is not
in them. Medians of the rounds; the limit is measured in the same rounds, interleaved.
What the throughput run adds on top (Celery, several processes sharing two cores) is the
difference between its CPU per page and the pipeline figure here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

os.environ.setdefault("NEWSAGG_ALLOWED_NETWORKS", "127.0.0.0/8")

from benchmarks.throughput import PG, REDIS, cpu_seconds
from tests.newsweb import build_web, serve_web
from workers import pipeline, store
from workers.extract import Article, FeedHints, extract_article
from workers.fetch import Fetcher, decode_page
from workers.politeness import Politeness
from workers.settings import Settings

DBNAME = "newsagg_bench_stages"


def backend_cpu(pid: int) -> float:
    """The backend's CPU seconds (throughput's reader, which says 0 for a process it cannot
    see: here that would be a wrong figure, so a missing one is an error)."""
    if not Path(f"/proc/{pid}/stat").exists():
        raise RuntimeError(f"PostgreSQL backend {pid} is not on this machine: cannot read its CPU")
    return cpu_seconds(pid)


def fresh_database(settings: Settings) -> psycopg.Connection[Any]:
    """A fresh schema, connected as the workers' sessions are (their synchronous_commit)."""
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DBNAME}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DBNAME}"')
    conn = psycopg.connect(
        urlunsplit(urlsplit(PG)._replace(path=f"/{DBNAME}")),
        autocommit=True,
        options=f"-c synchronous_commit={settings.db_synchronous_commit}",
    )
    store.migrate(conn)
    return conn


def queue(conn: psycopg.Connection[Any], urls: list[str]) -> list[int]:
    """One running crawl listing every URL, each dated (as the feeds and sitemaps do); the
    URLs' ids, in order."""
    source = store.add_source(conn, "bench", "http://bench.invalid/feed", "feed")
    crawl = store.create_crawl(conn, source.id, "manual")
    assert crawl is not None
    store.start_crawl(conn, crawl)
    now = datetime.now(UTC)
    listed = [store.Listed(u, None, now - timedelta(minutes=i)) for i, u in enumerate(urls)]
    store.queue_urls(conn, crawl, source.id, listed, max_attempts=3)
    ids = dict(conn.execute("SELECT url, id FROM discovered_urls").fetchall())
    return [int(ids[url]) for url in urls]  # in the order of `urls`


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.thread_time()
    result = fn()
    return time.thread_time() - started, result


def one_round(urls: list[str], settings: Settings) -> dict[str, float]:
    """CPU seconds of each stage over all pages."""
    spent: dict[str, float] = {}
    n = len(urls)
    # In a process of its own that never imports newsagg (see benchmarks/limit.py).
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.limit", "--rounds", "1"],
        input=json.dumps(urls),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    spent["limit"] = json.loads(done.stdout)[0] * n / 1000
    with Fetcher(settings) as fetcher:
        spent["fetch"], results = timed(lambda: [fetcher.fetch(u, expect="html") for u in urls])
        assert all(r.ok for r in results), "the local web failed a fetch"
        # The pipeline's pages get their listed dates (queue); any plausible date will do.
        hints = FeedHints(None, datetime.now(UTC) - timedelta(hours=1), None)

        def extract() -> list[Article | None]:
            out: list[Article | None] = []
            for url, result in zip(urls, results, strict=True):
                html, utf8 = decode_page(result.body, result.content_type)
                try:
                    out.append(extract_article(html, url, hints, utf8=utf8))
                except Exception:  # too short to keep: stored as a failure
                    out.append(None)
            return out

        spent["extract"], articles = timed(extract)
        spent["fingerprint"], prints = timed(
            lambda: [store.fingerprint_article(a) if a else None for a in articles]
        )
        conn = fresh_database(settings)
        ids = queue(conn, urls)
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        before = backend_cpu(backend[0])

        def save() -> None:
            for url_id, url, article, fingerprint in zip(ids, urls, articles, prints, strict=True):
                store.claim_url(conn, url_id, "bench")
                fetch = store.FetchRecord(url=url, status="ok", http_status=200)
                store.finish_url(conn, url_id, fetch, article, fingerprint=fingerprint)

        spent["store"], _ = timed(save)
        spent["store: PostgreSQL"] = backend_cpu(backend[0]) - before
        conn.close()

        conn = fresh_database(settings)
        ids = queue(conn, urls)
        client = redis.Redis.from_url(REDIS)
        client.flushdb()
        politeness = Politeness(client, settings)
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        before = backend_cpu(backend[0])
        spent["pipeline"], _ = timed(
            lambda: [
                pipeline.process_article(conn, fetcher, settings, i, politeness=politeness)
                for i in ids
            ]
        )
        spent["pipeline: PostgreSQL"] = backend_cpu(backend[0]) - before
        conn.close()
        client.close()
    return {stage: seconds * 1000 / n for stage, seconds in spent.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)  # the pipeline's "article failed" lines
    from workers import logs

    logs.configure_logging("WARNING", "text")
    settings = Settings(host_delay=0, host_concurrency=1000)
    web = build_web(100)
    figures: dict[str, list[float]] = defaultdict(list)
    with serve_web(web) as served:
        urls = served.article_urls()
        one_round(urls, settings)  # warm-up: imports, caches, prepared statements
        for number in range(1, args.rounds + 1):
            for stage, ms in one_round(urls, settings).items():
                figures[stage].append(ms)
            print(f"round {number} done", file=sys.stderr, flush=True)
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DBNAME}" WITH (FORCE)')
    print(f"{len(urls)} pages, CPU ms per page, median of {args.rounds} rounds (each round)")
    for stage, values in figures.items():
        each = " ".join(f"{v:.2f}" for v in values)
        print(f"  {stage:22s} {statistics.median(values):7.2f}   ({each})")
    median = {stage: statistics.median(values) for stage, values in figures.items()}
    parts = sum(median[s] for s in ("fetch", "extract", "fingerprint", "store"))
    print(
        f"fetch + extract + fingerprint + store: {parts:.2f}; the pipeline's own CPU beyond "
        f"them (politeness, claims, logs, metrics, and each stage run between the others "
        f"instead of back to back): {median['pipeline'] - parts:.2f}"
    )
    print(f"extract / limit: {median['extract'] / median['limit']:.2f}")


if __name__ == "__main__":
    main()
