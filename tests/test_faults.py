"""Faults during a crawl of 300 real pages on 10 local sites, with real processes: a killed
pool child, a killed worker, Redis restarted with its data lost, PostgreSQL restarted, a page
that fails every time, a page that kills its worker every time, and SIGTERM.

After each: every article URL the crawl found is stored exactly once or has a failure row
saying why, and every crawl is finished.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.conftest import TEST_ENV, newsagg, start_beat, start_worker, stop_process
from tests.newsweb import NewsWeb, build_web, serve_web
from tests.services import PrivatePostgres, private_postgres, private_redis
from workers import monitor, store

pytestmark = pytest.mark.e2e
Conn = psycopg.Connection[Any]

PAGES = 300
# Short leases and a housekeeping tick every second, so lost work comes back in seconds.
FAULT_ENV = {
    "NEWSAGG_CRAWL_LEASE": "4",
    "NEWSAGG_HOUSEKEEPING_EVERY": "1",
    "NEWSAGG_HOST_DELAY": "0",
    "NEWSAGG_HOST_CONCURRENCY": "8",
    "NEWSAGG_SHUTDOWN_GRACE": "3",
    "NEWSAGG_TASK_RETRIES": "2",
    "NEWSAGG_RETRY_BACKOFF": "0.2",
    "NEWSAGG_METRICS_PORT": "0",
    "NEWSAGG_HEARTBEAT_EVERY": "1",
}


@pytest.fixture(scope="module")
def web() -> Iterator[NewsWeb]:
    with serve_web(build_web(hosts=10, pages=PAGES)) as served:
        yield served


@pytest.fixture(autouse=True)
def paced(web: NewsWeb) -> Iterator[None]:
    web.delay = 0.05  # long enough to be in the middle of the crawl when the fault hits
    web.slow.clear()
    yield
    web.delay = 0.0
    web.slow.clear()


class System:
    """Workers and a beat (for housekeeping) against one database and one Redis."""

    def __init__(self, tmp_path: Path, database_url: str, redis_url: str) -> None:
        self.tmp_path = tmp_path
        self.env = {**FAULT_ENV, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
        self.database_url = database_url
        self.procs: list[subprocess.Popen[bytes]] = []

    def worker(
        self, name: str, concurrency: int = 4, app: str = "workers.app"
    ) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}-{len(self.procs)}.log"
        proc = start_worker(log, name, concurrency, self.env, app=app)
        self.procs.append(proc)
        return proc

    def beat(self) -> subprocess.Popen[bytes]:
        proc = start_beat(self.tmp_path, f"beat-{len(self.procs)}", self.env)
        self.procs.append(proc)
        return proc

    def crawl_all(self, web: NewsWeb) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            for host in web.hosts:
                store.add_source(conn, f"site{host.index}", host.source_url(), host.kind)  # type: ignore[arg-type]
        newsagg("crawl", "--all", env=self.env)

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)

    def log_tails(self, chars: int = 8000) -> str:
        """The end of each process's log, without beat's every-tick lines, which would
        otherwise fill the whole message and hide the worker's."""
        tails = []
        for proc in self.procs:
            path: Path | None = getattr(proc, "log_path", None)
            if path is None:
                continue
            lines = path.read_text(errors="replace").splitlines()
            kept = "\n".join(line for line in lines if "Sending due task" not in line)
            tails.append(f"==> {path.name} <==\n{kept[-chars:]}")
        return "\n".join(tails)

    def logs(self) -> str:
        return "\n".join(
            p.log_path.read_text(errors="replace")  # type: ignore[attr-defined]
            for p in self.procs
            if hasattr(p, "log_path")
        )


@pytest.fixture
def system(conn: Conn, redis_db: Any, tmp_path: Path) -> Iterator[System]:
    """Runs on the shared test database and Redis."""
    running = System(tmp_path, TEST_ENV["DATABASE_URL"], TEST_ENV["REDIS_URL"])
    yield running
    running.stop()


def progress(conn: Conn) -> tuple[int, int]:
    row = conn.execute(
        "SELECT coalesce(sum(urls_done), 0), coalesce(sum(urls_queued), 0) FROM crawls"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def wait_until(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except psycopg.OperationalError:
            pass  # the database is the fault being tested
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_done(connect: Callable[[], Conn], fraction: float) -> None:
    def far_enough() -> bool:
        with connect() as conn:
            done, queued = progress(conn)
            return queued >= PAGES and done >= fraction * PAGES

    wait_until(far_enough, f"{fraction:.0%} of the crawl")


def wait_finished(connect: Callable[[], Conn], system: System, timeout: float = 180) -> None:
    def finished() -> bool:
        with connect() as conn:
            active = conn.execute(
                "SELECT count(*) FROM crawls WHERE status IN ('queued', 'running')"
            ).fetchone()
            total = conn.execute("SELECT count(*) FROM crawls").fetchone()
            return active == (0,) and total is not None and total[0] > 0

    try:
        wait_until(finished, "every crawl to end", timeout)
    except AssertionError:
        raise AssertionError("crawls did not finish; logs:\n" + system.log_tails()) from None


def check_all_accounted_for(conn: Conn, web: NewsWeb) -> dict[str, int]:
    """Every URL found is stored exactly once or failed with a row saying why; every crawl
    finished. Returns the URLs' final statuses, counted."""
    crawls = conn.execute("SELECT status, urls_queued, urls_done FROM crawls").fetchall()
    assert crawls and {c[0] for c in crawls} == {"finished"}, crawls
    assert all(queued == done for _, queued, done in crawls), crawls
    rows = conn.execute(
        "SELECT d.url, d.state, d.article_id, d.last_status, "
        "       (SELECT count(*) FROM fetches f WHERE f.url = d.url AND f.status = d.last_status) "
        "  FROM discovered_urls d"
    ).fetchall()
    assert {r[0] for r in rows} == set(web.article_urls())
    statuses: dict[str, int] = {}
    for url, state, article_id, last_status, rows_saying_so in rows:
        assert state in ("done", "failed"), (url, state)
        if state == "done":
            assert article_id is not None, url
        else:
            assert rows_saying_so >= 1, (url, last_status)
        statuses[last_status] = statuses.get(last_status, 0) + 1
    # every article row came from one of these URLs, none was stored twice
    articles = conn.execute("SELECT count(*) FROM articles").fetchone()
    linked = conn.execute(
        "SELECT count(DISTINCT article_id) FROM discovered_urls WHERE state = 'done'"
    ).fetchone()
    assert articles == linked
    return statuses


def claimed_child(conn: Conn, main_pid: int) -> int:
    """The pid of a pool child holding a URL now (from discovered_urls.claimed_by)."""
    pid = 0

    def holder() -> bool:
        nonlocal pid
        row = conn.execute(
            "SELECT claimed_by FROM discovered_urls WHERE state = 'pending' "
            "AND claimed_at IS NOT NULL ORDER BY claimed_at DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return False
        pid = int(str(row[0]).split(":")[1])
        return pid != main_pid

    wait_until(holder, "a URL in progress")
    return pid


def test_killed_pool_child_loses_nothing(system: System, conn: Conn, web: NewsWeb) -> None:
    worker = system.worker("alpha")
    system.beat()
    system.crawl_all(web)
    wait_done(lambda: psycopg.connect(system.database_url, autocommit=True), 0.25)
    for _ in range(2):
        os.kill(claimed_child(conn, worker.pid), signal.SIGKILL)
        time.sleep(1)
    wait_finished(lambda: psycopg.connect(system.database_url, autocommit=True), system)
    check_all_accounted_for(conn, web)
    assert worker.poll() is None  # the main process replaced its child and went on


def test_killed_worker_restarted_loses_nothing(system: System, conn: Conn, web: NewsWeb) -> None:
    first = system.worker("doomed")
    system.beat()
    system.crawl_all(web)
    wait_done(lambda: psycopg.connect(system.database_url, autocommit=True), 0.3)
    os.killpg(first.pid, signal.SIGKILL)  # the whole worker: main process and children
    first.wait(10)
    done, _ = progress(conn)
    assert done < PAGES
    # Its reserved and running messages sit unacknowledged in Redis for the visibility
    # timeout (an hour); the leases bring that work back within seconds instead.
    system.worker("rescuer")
    wait_finished(lambda: psycopg.connect(system.database_url, autocommit=True), system)
    check_all_accounted_for(conn, web)
    # the work it held came back through the leases
    redispatched = conn.execute("SELECT sum(redispatches) FROM crawls").fetchone()
    assert redispatched is not None and redispatched[0] >= 1


def test_redis_restarted_with_its_data_lost(conn: Conn, web: NewsWeb, tmp_path: Path) -> None:
    with private_redis(tmp_path) as broker:
        system = System(tmp_path, TEST_ENV["DATABASE_URL"], broker.url)
        try:
            worker = system.worker("alpha")
            system.beat()
            system.crawl_all(web)
            wait_done(lambda: psycopg.connect(system.database_url, autocommit=True), 0.3)
            broker.restart(down_for=2)  # every queued and unacknowledged message is gone
            wait_finished(lambda: psycopg.connect(system.database_url, autocommit=True), system)
            check_all_accounted_for(conn, web)
            # the work came back through the leases, not by luck
            row = conn.execute("SELECT sum(redispatches) FROM crawls").fetchone()
            assert row is not None and row[0] >= 1
            assert worker.poll() is None, "the worker must reconnect, not exit"
            # worker and beat beat again into the new Redis, and beat dispatches again
            health = newsagg("health", env=system.env)
            assert "ok   worker" in health.stdout and "ok   beat" in health.stdout
        finally:
            system.stop()


def test_catatonic_consumer_reconnects_and_goes_on(
    system: System, conn: Conn, web: NewsWeb
) -> None:
    # Its consumer stops asking Redis for messages after the first (tests/catatonic.py):
    # alive, beating, holding nothing, while the queues fill. The stall watch must see it.
    system.env["NEWSAGG_STALL_AFTER"] = "3"
    worker = system.worker("catatonic", app="tests.catatonic")
    system.beat()
    system.crawl_all(web)
    wait_finished(lambda: psycopg.connect(system.database_url, autocommit=True), system)
    check_all_accounted_for(conn, web)
    assert "consumer stalled" in system.logs()
    assert worker.poll() is None, "the worker must reconnect, not exit"
    beats = monitor.read_heartbeats(redis.Redis.from_url(system.env["REDIS_URL"]), "worker")
    stalls = [b["stalls"] for b in beats if b["pid"] == worker.pid]
    assert stalls and stalls[0] >= 1, beats


def test_postgres_restarted_mid_crawl(web: NewsWeb, tmp_path: Path, redis_db: Any) -> None:
    with private_postgres() as database:
        system = System(tmp_path, database.url, TEST_ENV["REDIS_URL"])
        # A lease longer than the outage: whatever finishes, the tasks finished themselves.
        system.env["NEWSAGG_CRAWL_LEASE"] = "60"

        def connect() -> Conn:
            return psycopg.connect(database.url, autocommit=True)

        try:
            newsagg("db", "init", env=system.env)
            worker = system.worker("alpha")
            system.beat()
            system.crawl_all(web)
            wait_done(connect, 0.3)
            restart(database)
            wait_finished(connect, system)
            with connect() as conn:
                statuses = check_all_accounted_for(conn, web)
                # tasks waited for the database and went on: none was lost or failed by it
                assert "worker_error" not in statuses, statuses
                row = conn.execute("SELECT sum(redispatches) FROM crawls").fetchone()
                assert row == (0,), "a task was lost and had to be re-dispatched"
            assert worker.poll() is None
            assert "service unreachable, waiting" in system.logs()
        finally:
            system.stop()


def restart(database: PrivatePostgres) -> None:
    database.restart(down_for=2)


def test_page_that_fails_every_time_ends_as_a_failure_row(
    system: System, conn: Conn, web: NewsWeb
) -> None:
    host, page = web.pages[7]
    poisoned = host.origin() + page.path
    conn.execute(
        """
        CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.canonical_url = current_setting('newsagg.poisoned', true) THEN
                RAISE EXCEPTION 'poisoned row %', NEW.canonical_url;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER poison BEFORE INSERT ON articles FOR EACH ROW EXECUTE FUNCTION poison();
        """
    )
    dbname = conn.info.dbname
    conn.execute(f"ALTER DATABASE \"{dbname}\" SET newsagg.poisoned = '{poisoned}'")
    try:
        system.worker("alpha")
        system.crawl_all(web)
        wait_finished(lambda: psycopg.connect(system.database_url, autocommit=True), system)
        statuses = check_all_accounted_for(conn, web)
        assert statuses.get("worker_error") == 1
        attempts = conn.execute(
            "SELECT status, error FROM fetches WHERE url = %s ORDER BY id", (poisoned,)
        ).fetchall()
        # two failed attempts recorded as such, then the final failure row
        assert len(attempts) == 3, attempts
        assert all(a[0] == "worker_error" and "poisoned row" in a[1] for a in attempts)
        assert "will retry" in attempts[0][1] and "failed 3 times" in attempts[-1][1]
    finally:
        conn.execute(f'ALTER DATABASE "{dbname}" RESET newsagg.poisoned')
        conn.execute("DROP TRIGGER IF EXISTS poison ON articles; DROP FUNCTION IF EXISTS poison()")


def test_page_that_kills_its_worker_every_time_fails_as_worker_lost(
    system: System, conn: Conn, web: NewsWeb
) -> None:
    host, page = web.pages[3]
    deadly = host.origin() + page.path
    web.slow[page.path] = 30.0  # long enough to be caught in the act, every time
    worker = system.worker("alpha")
    system.crawl_all(web)
    killed: set[int] = set()
    for _ in range(3):  # NEWSAGG_MAX_CLAIMS

        def holder() -> bool:
            row = conn.execute(
                "SELECT claimed_by FROM discovered_urls WHERE url = %s AND claimed_at IS NOT NULL",
                (deadly,),
            ).fetchone()
            return row is not None and int(str(row[0]).split(":")[1]) not in killed

        wait_until(holder, "the deadly page to be taken")
        row = conn.execute("SELECT claimed_by FROM discovered_urls WHERE url = %s", (deadly,))
        pid = int(str(row.fetchone()[0]).split(":")[1])  # type: ignore[index]
        assert pid != worker.pid
        killed.add(pid)
        os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer would
    wait_finished(lambda: psycopg.connect(system.database_url, autocommit=True), system)
    statuses = check_all_accounted_for(conn, web)
    assert statuses.get("worker_lost") == 1
    [(error,)] = conn.execute(
        "SELECT error FROM fetches WHERE url = %s AND status = 'worker_lost'", (deadly,)
    ).fetchall()
    assert "lost 3 times" in error
    assert worker.poll() is None


# (grace, slow page): Celery itself needs about 2 s to stop an idle pool, so the page that
# finishes is given a grace period with room for that.
@pytest.mark.parametrize(
    ("grace", "slow_page"), [(8.0, 1.0), (3.0, 20.0)], ids=["finishes", "hands-back"]
)
def test_sigterm_finishes_or_hands_back_within_the_grace_period(
    system: System, conn: Conn, web: NewsWeb, grace: float, slow_page: float
) -> None:
    system.env["NEWSAGG_SHUTDOWN_GRACE"] = str(grace)
    slow = [h.origin() + p.path for h, p in web.pages[::25]]
    for _host, page in web.pages[::25]:
        web.slow[page.path] = slow_page
    # No beat: nothing is re-dispatched by the leases; what the first worker does not finish
    # must come back through the queue alone.
    first = system.worker("alpha")
    system.crawl_all(web)

    def in_flight() -> list[int]:
        rows = conn.execute(
            "SELECT id FROM discovered_urls WHERE state = 'pending' "
            "AND claimed_at IS NOT NULL AND url = ANY(%s)",
            (slow,),
        ).fetchall()
        return [int(r[0]) for r in rows]

    wait_until(lambda: len(in_flight()) >= 1, "a slow page in flight")
    held = in_flight()
    stopping = time.monotonic()
    first.send_signal(signal.SIGTERM)  # to the main process, as docker stop does
    first.wait(timeout=grace + 15)
    took = time.monotonic() - stopping
    log = first.log_path.read_text()  # type: ignore[attr-defined]
    states = dict(
        conn.execute("SELECT id, state FROM discovered_urls WHERE id = ANY(%s)", (held,)).fetchall()
    )
    if slow_page < grace:
        # it finished what it had, and exited as soon as it had
        assert took < grace, f"shutdown took {took:.1f}s"
        assert "handing them back" not in log
        assert all(state != "pending" for state in states.values()), states
    else:
        # it gave up waiting at the grace period and handed its pages back, claims included
        assert grace - 0.5 < took < grace + 5, f"shutdown took {took:.1f}s, grace {grace}s"
        assert "handing them back" in log
        assert set(states.values()) == {"pending"}, states
        claims = conn.execute(
            "SELECT max(claims), count(*) FILTER (WHERE claimed_at IS NOT NULL) "
            "FROM discovered_urls WHERE id = ANY(%s)",
            (held,),
        ).fetchone()
        assert claims == (0, 0), "a deploy must not count as a lost worker"
    system.worker("beta")
    wait_finished(lambda: psycopg.connect(system.database_url, autocommit=True), system)
    check_all_accounted_for(conn, web)
    assert conn.execute("SELECT sum(redispatches) FROM crawls").fetchone() == (0,)
    assert "Traceback" not in log
