"""Private PostgreSQL and Redis servers that a fault test may restart, kill and lose.

The machine's own servers are shared by the whole test run; a test that restarts a server
gets one of its own instead, from the same binaries (PostgreSQL's initdb/pg_ctl, Debian's
redis-server), on a free loopback port, in a temporary directory. When a binary is missing
the test fails with the reason: CI must not pass by testing less.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check()  # type: ignore[operator]
            return
        except Exception as exc:
            error = exc
            time.sleep(0.1)
    raise AssertionError(f"{what} did not come up: {error}")


class PrivateRedis:
    """redis-server on its own port, keeping nothing on disk (like the machine's)."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: redis.Redis.from_url(self.url).ping(), f"redis on port {self.port}")

    def stop(self) -> None:
        """Gone, and everything in it: the messages, the pacing, the robots cache."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down_for: float = 1.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb), trust auth on loopback."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        initdb = str(found[-1]) if found else shutil.which("initdb")
        if initdb is None:
            raise AssertionError(
                "PostgreSQL's initdb is not installed (apt-get install postgresql)"
            )
        self.bin = Path(initdb).parent
        # Its own directory straight under the temporary directory: the postgres user must
        # be able to reach it, and pytest's per-test directories are private to their owner.
        self.directory = Path(tempfile.mkdtemp(prefix="newsagg-pg-"))
        self.directory.chmod(0o755)
        self.data = self.directory / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/newsagg"
        # initdb refuses to run as root: then the cluster belongs to the postgres user.
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=120)

    def init(self) -> None:
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()
        with psycopg.connect(self.url.replace("/newsagg", "/postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE newsagg")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.directory} -c fsync=off -c max_connections=100"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "log"),
            "-w",
            "start",
        )
        admin = self.url.replace("/newsagg", "/postgres")
        _wait(lambda: psycopg.connect(admin, connect_timeout=2).close(), "postgres")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, down_for: float = 1.0, mode: str = "fast") -> None:
        """Every connection is cut; nothing committed is lost."""
        self.stop(mode)
        time.sleep(down_for)
        self.start()


@contextmanager
def private_redis(directory: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(server.directory, ignore_errors=True)
