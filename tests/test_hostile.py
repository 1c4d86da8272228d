"""A crawl over hostile input with real workers: every good article stored, one clear
failure per bad URL, workers alive with bounded memory; per-host pacing held fleet-wide."""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import newsagg
from tests.hostile import BAD, GOOD, Hostile, serve_hostile

pytestmark = pytest.mark.e2e
Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    with serve_hostile() as served:
        yield served


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_children(proc: subprocess.Popen[bytes]) -> list[int]:
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def test_hostile_crawl(worker: subprocess.Popen[bytes], conn: Conn, hostile: Hostile) -> None:
    children_before = worker_children(worker)
    newsagg("sources", "add", "hostile", hostile.url("/feed.xml"), "--kind", "feed")
    newsagg("sources", "add", "laughs", hostile.url("/feeds/billion-laughs.xml"))
    newsagg("sources", "add", "malformed", hostile.url("/feeds/malformed.xml"))
    newsagg("sources", "add", "selfmap", hostile.url("/sitemap-self.xml"), "--kind", "sitemap")
    started = time.monotonic()
    proc = newsagg("crawl", "--all", "--wait", "--timeout", "240", timeout=300, check=False)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr  # two sources cannot be read
    crawls = dict(
        conn.execute(
            "SELECT s.name, c.status FROM crawls c JOIN sources s ON s.id = c.source_id"
        ).fetchall()
    )
    assert crawls == {
        "hostile": "finished",
        "laughs": "failed",
        "malformed": "failed",
        "selfmap": "finished",
    }

    # every good article stored, with its text decoded right
    texts = dict(conn.execute("SELECT canonical_url, text FROM articles").fetchall())
    for good in GOOD:
        url = hostile.url(good.path)
        assert url in texts, f"{good.path} not stored"
        assert good.snippet in texts[url], (good.path, texts[url][:200])
    assert len(texts) == len(GOOD)

    # one clear outcome per bad URL, the last fetches row of each says what happened
    for bad in BAD:
        rows = conn.execute(
            "SELECT status, http_status, error FROM fetches WHERE url = %s ORDER BY id",
            (hostile.url(bad.path),),
        ).fetchall()
        assert rows, f"no fetches row for {bad.path}"
        status, http_status, error = rows[-1]
        assert (status, http_status) == (bad.status, bad.http_status), (bad.path, rows)
        assert error and len(error) > 10, (bad.path, error)
        state = conn.execute(
            "SELECT state, last_status FROM discovered_urls WHERE url = %s",
            (hostile.url(bad.path),),
        ).fetchone()
        assert state == ("failed", bad.status), bad.path

    # source-level failures are recorded too
    source_errors = dict(
        conn.execute(
            "SELECT s.name, f.status || ': ' || f.error FROM fetches f "
            "JOIN sources s ON s.id = f.source_id WHERE f.purpose = 'source' AND f.status <> 'ok'"
        ).fetchall()
    )
    assert "entities" in source_errors["laughs"]
    assert source_errors["malformed"].startswith("parse_error")
    # the self-listing index was read once, its child once
    reads = [p for s, p in hostile.requests if p.startswith("/sitemap-")]
    assert sorted(reads) == ["/sitemap-articles.xml", "/sitemap-self.xml"]
    # nothing was ever sent towards the internal addresses
    assert not [p for s, p in hostile.requests if "169.254" in p or "10.0.0.1" in p]

    # the worker and its children survived, none was replaced, memory stayed bounded
    assert worker.poll() is None
    assert worker_children(worker) == children_before
    for pid in worker_children(worker):
        assert rss_kib(pid) < 400_000, f"worker child {pid} uses {rss_kib(pid)} KiB"
    log = worker.log_path.read_text()  # type: ignore[attr-defined]
    assert "WorkerLostError" not in log and "Traceback" not in log
    assert elapsed < 200


class PacedSite:
    """A site that logs when each request starts and ends, to measure pacing server-side."""

    def __init__(self, articles: int = 10, service_time: float = 0.15) -> None:
        self.articles = articles
        self.service_time = service_time
        self.log: list[tuple[float, float, str]] = []
        self.lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                start = time.monotonic()
                if self.path == "/feed.xml":
                    items = "".join(
                        f"<item><title>Story {i}</title><link>{site.base_url}/story/{i}</link>"
                        "</item>"
                        for i in range(site.articles)
                    )
                    body = f'<rss version="2.0"><channel><title>P</title>{items}</channel></rss>'
                    ctype = "application/rss+xml"
                elif self.path.startswith("/story/"):
                    time.sleep(site.service_time)
                    text = f"Story {self.path} tells about the council meeting at length. " * 12
                    body = (
                        f"<html><head><title>{self.path}</title></head><body><article>"
                        f"<h1>{self.path}</h1><p>{text}</p><p>{text}</p></article></body></html>"
                    )
                    ctype = "text/html"
                else:
                    body, ctype = "", "text/plain"
                data = body.encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if self.path.startswith("/story/"):
                    with site.lock:
                        site.log.append((start, time.monotonic(), self.path))

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_per_host_limit_holds_across_two_workers(workers: Any, conn: Conn) -> None:
    site = PacedSite()
    try:
        first = workers("alpha", 2)
        second = workers("beta", 2)
        newsagg(
            "sources",
            "add",
            "paced",
            site.base_url + "/feed.xml",
            "--kind",
            "feed",
            "--host-delay",
            "0.5",
            "--host-concurrency",
            "1",
        )
        newsagg("crawl", "paced", "--wait", "--timeout", "120", timeout=150)
    finally:
        site.httpd.shutdown()
    log = sorted(site.log)
    assert len(log) == site.articles
    # never two requests in flight at once, fleet-wide
    max_concurrent = max(sum(1 for s, e, _ in log if s <= start < e) for start, _, _ in log)
    assert max_concurrent == 1
    # and at least the configured gap between two request starts
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(log)]
    assert min(gaps) >= 0.5 - 0.03, gaps
    # both workers did part of the work: the limit was shared, not a single worker's
    for proc in (first, second):
        assert "workers.process_article" in proc.log_path.read_text()
    assert conn.execute("SELECT count(*) FROM articles").fetchone() == (site.articles,)
