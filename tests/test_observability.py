"""What an operator sees: Prometheus metrics from every worker process (and children that
came and went), JSON logs with the page's context on every line, `newsagg health` and
`newsagg status`, and Flower against the running system."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flower.events import Events
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, TEST_ENV, newsagg, start_beat, stop_process
from tests.newsweb import NewsWeb, build_web, serve_web
from tests.services import free_port
from workers import metrics, store

Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module")
def web() -> Iterator[NewsWeb]:
    with serve_web(build_web(hosts=4, pages=40)) as served:
        yield served


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def crawl_everything(conn: Conn, web: NewsWeb, env: dict[str, str]) -> None:
    for host in web.hosts:
        store.add_source(conn, f"site{host.index}", host.source_url(), host.kind)  # type: ignore[arg-type]
    newsagg("crawl", "--all", "--wait", "--timeout", "120", timeout=150, env=env)


def test_compacting_dead_processes_keeps_every_total(tmp_path: Path) -> None:
    """Children recycled over months leave files behind; folding them keeps the sums."""
    script = (
        "import os, sys; os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]\n"
        "from prometheus_client import values; values.ValueClass = values.get_value_class()\n"
        "from prometheus_client import Counter, Histogram\n"
        "c = Counter('jobs', 'j', ['kind']); h = Histogram('took', 't', buckets=(1, 2))\n"
        "c.labels('a').inc(int(sys.argv[2])); c.labels('b').inc(); h.observe(1.5)\n"
    )
    for n in range(1, 6):  # five processes that came and went
        subprocess.run([sys.executable, "-c", script, str(tmp_path), str(n)], check=True)
    files = sorted(p.name for p in tmp_path.glob("*.db"))
    assert len(files) == 10

    def read() -> dict[str, float]:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
        text = generate_latest(registry).decode()
        return {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }

    before = read()
    assert metrics.compact(alive=[], directory=str(tmp_path)) == 10
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_archive.db",
        "histogram_archive.db",
    ]
    assert read() == before
    assert before["jobs_total[('kind', 'a')]"] == 15
    assert before["took_bucket[('le', '2.0')]"] == 5
    # a second generation folds into the same archive
    subprocess.run([sys.executable, "-c", script, str(tmp_path), "1"], check=True)
    assert metrics.compact(alive=[], directory=str(tmp_path)) == 2
    assert read()["jobs_total[('kind', 'a')]"] == 16


@pytest.mark.e2e
def test_metrics_count_what_the_workers_did(
    workers: Any, conn: Conn, web: NewsWeb, tmp_path: Path
) -> None:
    port = free_port()
    env = {"NEWSAGG_METRICS_PORT": str(port), "NEWSAGG_METRICS_ADDR": "127.0.0.1"}
    workers("metrics", 2, env)
    crawl_everything(conn, web, env)
    outcomes = dict(
        conn.execute(
            "SELECT coalesce(last_status, state), count(*) FROM discovered_urls GROUP BY 1"
        ).fetchall()
    )
    stored = conn.execute("SELECT count(*) FROM articles WHERE duplicate_of IS NULL").fetchone()
    time.sleep(1.5)  # the heartbeat timer folds the files of replaced children
    samples = scrape(port)
    assert total(samples, "newsagg_pages_fetched_total", purpose="article", status="ok") >= 1
    assert total(samples, "newsagg_pages_fetched_total", purpose="source") == len(web.hosts)
    processed = sum(outcomes.values())
    assert total(samples, "newsagg_articles_total") == processed
    assert total(samples, "newsagg_articles_total", outcome="stored") == stored[0]  # type: ignore[index]
    assert total(samples, "newsagg_fetch_seconds_count", purpose="article") >= processed
    assert total(samples, "newsagg_extraction_seconds_count") >= 1
    assert total(samples, "newsagg_crawl_duration_seconds_count", status="finished") == len(
        web.hosts
    )
    assert total(samples, "newsagg_tasks_total", task="workers.process_article") >= processed
    assert ("newsagg_queue_depth", (("queue", "articles"),)) in samples
    assert total(samples, "newsagg_urls_pending") == 0
    assert total(samples, "newsagg_politeness_wait_seconds_count") >= processed
    failures = total(samples, "newsagg_extraction_failures_total")
    assert failures == outcomes.get("empty_extraction", 0) + outcomes.get("too_complex", 0)


@pytest.mark.e2e
def test_recycled_children_keep_their_counts_and_leave_few_files(
    workers: Any, conn: Conn, web: NewsWeb
) -> None:
    port = free_port()
    env = {"NEWSAGG_METRICS_PORT": str(port), "NEWSAGG_HEARTBEAT_EVERY": "0.5"}
    # children replaced every 5 tasks (the production default is 500)
    worker = workers("recycled", 2, env, ("--max-tasks-per-child", "5"))
    crawl_everything(conn, web, env)
    time.sleep(1.5)  # the heartbeat timer folds the files of replaced children
    processed = conn.execute("SELECT count(*) FROM discovered_urls").fetchone()
    samples = scrape(port)
    assert total(samples, "newsagg_articles_total") == processed[0]  # type: ignore[index]
    [directory] = Path(tempfile.gettempdir()).glob(f"newsagg-metrics-{worker.pid}-*")
    files = sorted(f.name for f in directory.glob("*.db"))
    # about ten children came and went; what is left is the main process, the two living
    # children and the archives
    assert len(files) <= 2 + 2 * 3, files
    assert "counter_archive.db" in files


@pytest.mark.e2e
def test_json_logs_carry_the_page_context(
    workers: Any, conn: Conn, web: NewsWeb, tmp_path: Path
) -> None:
    env = {"NEWSAGG_LOG_FORMAT": "json", "NEWSAGG_METRICS_PORT": "0"}
    worker = workers("jsonlog", 2, env)
    crawl_everything(conn, web, env)
    stop_process(worker)
    lines = worker.log_path.read_text().splitlines()  # type: ignore[attr-defined]
    records = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    assert all({"event", "level", "timestamp"} <= set(r) for r in records)
    pages = [r for r in records if r["event"] in ("article processed", "article failed")]
    assert len(pages) == len(web.pages)
    for record in pages:
        assert {"source", "crawl_id", "url", "url_id", "task_id"} <= set(record), record
        assert record["url"].startswith("http://127.0.")
    listed = [r for r in records if r["event"] == "crawl listed URLs"]
    assert len(listed) == len(web.hosts)
    assert all(r["task_id"] and r["crawl_id"] and r["source"] for r in listed)


@pytest.mark.e2e
def test_health_and_status_see_the_processes(
    workers: Any, conn: Conn, redis_db: Any, tmp_path: Path
) -> None:
    env = {"NEWSAGG_HEARTBEAT_EVERY": "1", "NEWSAGG_METRICS_PORT": "0"}
    down = newsagg("health", check=False, env=env)
    assert down.returncode == 1
    assert "ok   database" in down.stdout and "ok   redis" in down.stdout
    assert "FAIL worker" in down.stdout and "FAIL beat" in down.stdout
    workers("healthy", 1, env)
    beat = start_beat(tmp_path, "beat", env)
    try:
        deadline = time.monotonic() + 30
        up = down
        while time.monotonic() < deadline:
            up = newsagg("health", check=False, env=env)
            if up.returncode == 0:
                break
            time.sleep(0.5)
        assert up.returncode == 0, up.stdout
        local = newsagg("health", "--check", "worker,beat", "--local", env=env)
        assert "ok   worker" in local.stdout
        status = newsagg("status", env=env)
        assert "worker" in status.stdout and "healthy" in status.stdout
        assert "beat" in status.stdout and "queues: control 0" in status.stdout
        # a dead beat stops beating: its heartbeat expires within three periods
        os.killpg(beat.pid, signal.SIGKILL)
        beat.wait(10)
        time.sleep(3.5)
        after = newsagg("health", "--check", "beat", check=False, env=env)
        assert after.returncode == 1 and "FAIL beat" in after.stdout
    finally:
        stop_process(beat)
    bad = newsagg(
        "health", "--check", "database", check=False,
        env={"DATABASE_URL": "postgresql://127.0.0.1:1/nowhere"},
    )  # fmt: skip
    assert bad.returncode == 1 and "FAIL database" in bad.stdout
    unknown = newsagg("health", "--check", "disk", check=False)
    assert unknown.returncode == 2


@pytest.mark.e2e
def test_flower_shows_the_workers_and_their_tasks(
    workers: Any, conn: Conn, web: NewsWeb, tmp_path: Path
) -> None:
    port = free_port()
    log = (tmp_path / "flower.log").open("w")
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "flower",
         f"--port={port}", "--address=127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, **TEST_ENV, "FLOWER_UNAUTHENTICATED_API": "true"},
        start_new_session=True,
    )  # fmt: skip
    try:
        workers("flowered", 1, {"NEWSAGG_METRICS_PORT": "0"})
        deadline = time.monotonic() + 60
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                raw = urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=10
                ).read()
                seen = json.loads(raw)
                if any(name.startswith("flowered") for name in seen):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert any(name.startswith("flowered") for name in seen), seen
        # Flower switches task events on by itself, every events_enable_interval: once it
        # hears the worker (its heartbeats come without task events), one interval more and
        # they are on. A crawl before that can be over before Flower hears of any task.
        alive: dict[str, Any] = {}
        while time.monotonic() < deadline + 30:
            raw = urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/workers?status=1", timeout=10
            ).read()
            alive = json.loads(raw)
            if any(name.startswith("flowered") and up for name, up in alive.items()):
                break
            time.sleep(0.5)
        assert any(name.startswith("flowered") and up for name, up in alive.items()), alive
        time.sleep(Events.events_enable_interval / 1000 + 1)
        # the crawl's tasks show up there
        crawl_everything(conn, web, {})
        deadline = time.monotonic() + 30
        tasks: dict[str, Any] = {}
        while time.monotonic() < deadline:
            raw = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=10).read()
            tasks = json.loads(raw)
            if any(t.get("name") == "workers.process_article" for t in tasks.values()):
                break
            time.sleep(1)
        assert any(t.get("name") == "workers.process_article" for t in tasks.values())
    finally:
        stop_process(flower)
        log.close()


def test_stall_watch_sees_a_consumer_that_takes_nothing_while_work_waits() -> None:
    from workers.monitor import StallWatch

    watch = StallWatch(after=10)
    # messages waiting, a free process, nothing taken since the first look (which only
    # learns the count): stalled once 10 s have passed
    assert not watch.stalled(0, waiting=5, free=2, taken=7)
    assert not watch.stalled(1, waiting=5, free=2, taken=7)
    assert not watch.stalled(10, waiting=5, free=2, taken=7)
    assert watch.stalled(11, waiting=5, free=2, taken=7)
    # it starts again after saying so
    assert not watch.stalled(12, waiting=5, free=2, taken=7)
    assert not watch.stalled(21, waiting=5, free=2, taken=7)
    assert watch.stalled(22, waiting=5, free=2, taken=7)
    # anything taken, nothing waiting, or no free process: not stalled, and the clock restarts
    for now, waiting, free, taken in ((30, 5, 2, 8), (35, 0, 2, 8), (40, 5, 0, 8)):
        assert not watch.stalled(now, waiting=waiting, free=free, taken=taken)
    assert not watch.stalled(45, waiting=5, free=2, taken=8)
    assert not watch.stalled(54, waiting=5, free=2, taken=8)
    assert watch.stalled(55, waiting=5, free=2, taken=8)
    # a new consumer connection (the reconnect itself may have taken long): the clock restarts
    assert not watch.stalled(60, waiting=5, free=2, taken=8, connection=0)
    assert not watch.stalled(61, waiting=5, free=2, taken=8, connection=0)
    assert not watch.stalled(70, waiting=5, free=2, taken=8, connection=1)
    assert not watch.stalled(71, waiting=5, free=2, taken=8, connection=1)
    assert not watch.stalled(80, waiting=5, free=2, taken=8, connection=1)
    assert watch.stalled(81, waiting=5, free=2, taken=8, connection=1)
