"""Shared fixtures: a real PostgreSQL database, real Redis, the local news sites.

A missing service fails the run (pytest.exit), never skips: CI must not pass by testing less.
The test database is created for this run and dropped at its end, so runs never share state.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
# Real pages, feeds and sitemaps (../shared/corpus beside the repository, read-only).
CORPUS = Path(os.environ.get("NEWSAGG_CORPUS") or ROOT.parent / "shared" / "corpus")
SERVER_URL = os.environ.get("NEWSAGG_TEST_DATABASE_URL", "postgresql://localhost/postgres")
TEST_DB = f"newsagg_test_{os.getpid()}"
# A Redis database of its own per run (1-15, never the default 0), so two test runs on one
# machine do not take each other's tasks.
REDIS_URL = os.environ.get(
    "NEWSAGG_TEST_REDIS_URL", f"redis://localhost:6379/{1 + os.getpid() % 15}"
)


def _database_url(dbname: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{dbname}"))


# Settings are read once per process, so the environment is fixed before workers imports.
TEST_ENV = {
    "DATABASE_URL": _database_url(TEST_DB),
    "REDIS_URL": REDIS_URL,
    "NEWSAGG_ALLOWED_NETWORKS": "127.0.0.0/8",
    "NEWSAGG_CONNECT_TIMEOUT": "2",
    "NEWSAGG_READ_TIMEOUT": "2",
    "NEWSAGG_TOTAL_TIMEOUT": "6",
    "NEWSAGG_FETCH_RETRIES": "1",
    "NEWSAGG_RETRY_BACKOFF": "0.2",
    "NEWSAGG_TEST_SLOW_SECONDS": "4",
    # All local sites share 127.0.0.1; the politeness tests set their own pacing.
    "NEWSAGG_HOST_DELAY": "0.02",
    "NEWSAGG_HOST_CONCURRENCY": "4",
    "NEWSAGG_LOG_LEVEL": "INFO",
}
os.environ.update(TEST_ENV)

TABLES = "fetches, discovered_urls, article_revisions, articles, stories, crawls, sources"


def pytest_sessionstart(session: pytest.Session) -> None:
    if not (CORPUS / "README.md").is_file():
        pytest.exit(f"the corpus is missing at {CORPUS} (set NEWSAGG_CORPUS)", returncode=3)
    try:
        psycopg.connect(SERVER_URL, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is not reachable at {SERVER_URL}: {exc}", returncode=3)
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is not reachable at {REDIS_URL}: {exc}", returncode=3)


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    """A fresh database with schema.sql applied (twice: the schema must be idempotent)."""
    from workers import store

    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}"')
    store.create_database(SERVER_URL, TEST_DB)
    url = _database_url(TEST_DB)
    with psycopg.connect(url, autocommit=True) as conn:
        store.migrate(conn)
        store.migrate(conn)
    yield url
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')


@pytest.fixture
def conn(database: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to an emptied test database."""
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        yield connection


@pytest.fixture
def settings() -> Any:
    from workers.settings import load_settings

    return load_settings()


@pytest.fixture
def fetcher(settings: Any) -> Iterator[Any]:
    from workers.fetch import Fetcher

    with Fetcher(settings) as f:
        yield f


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def sites() -> Iterator[list[Any]]:
    """The local news sites (tests/sites.py), served on loopback for the whole run."""
    from tests.sites import build_sites, serve_sites

    with serve_sites(build_sites()) as served:
        yield served


def newsagg(
    *args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `newsagg` command with the test environment (and `env` on top)."""
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **TEST_ENV, "COLUMNS": "200", **(env or {})},
        cwd=ROOT,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"newsagg {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def start_worker(
    log_path: Path,
    name: str,
    concurrency: int = 2,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    app: str = "workers.app",
) -> subprocess.Popen[bytes]:
    """Start a real Celery worker (prefork) on the test database and Redis; wait until ready.

    It gets a session of its own, so a test can kill its whole process group. `app` is the
    Celery app's module (`newsagg worker` runs workers.app)."""
    log = log_path.open("w")
    extra = ["--concurrency", str(concurrency), "-n", f"{name}{os.getpid()}@%h", *args]
    if app == "workers.app":
        command = [sys.executable, "-m", "workers.cli", "worker", *extra]
    else:
        # The command `newsagg worker` would run, with the app module swapped.
        from workers.cli import worker_command
        from workers.settings import Settings

        with mock.patch.dict(os.environ, env or {}):
            settings = Settings()  # as the worker will read its environment
        command = worker_command(settings, extra, app=app)
    proc = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **TEST_ENV, **(env or {})},
        cwd=ROOT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = log_path.read_text()
        if " ready." in text:
            proc.log_path = log_path  # type: ignore[attr-defined]
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{text}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"worker did not become ready:\n{text}")


def start_beat(
    tmp_path: Path, name: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a real Celery beat (in a session of its own) on the test database and Redis."""
    log = (tmp_path / f"{name}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "beat", "--schedule", str(tmp_path / name)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, **TEST_ENV, "NEWSAGG_DISPATCH_EVERY": "0.5", **(env or {})},
        start_new_session=True,
    )
    log.close()
    proc.log_path = tmp_path / f"{name}.log"  # type: ignore[attr-defined]
    return proc


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process started in a session of its own, with all its children."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()  # warm shutdown
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def workers(conn: psycopg.Connection[Any], redis_db: redis.Redis, tmp_path: Path) -> Iterator[Any]:
    """A factory of real Celery workers, all stopped at the end of the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        name: str = "test",
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{name}-{len(started)}.log"
        proc = start_worker(log, name, concurrency, env, args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_worker(proc)


@pytest.fixture
def worker(workers: Any) -> subprocess.Popen[bytes]:
    """One real Celery worker (prefork, 2 processes) on the test database and Redis."""
    return workers("test")  # type: ignore[no-any-return]
