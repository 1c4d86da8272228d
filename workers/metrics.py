"""Prometheus metrics: what the workers did, how long it took, what is waiting.

Celery's prefork pool runs tasks in child processes, so the counters live in
prometheus_client's multiprocess mode: every process writes its values to memory-mapped
files in one directory and the worker's main process serves their sum. The directory has to
be known before prometheus_client is imported (it picks its value class at import), which is
why this module sets it up first thing:

- an operator may set PROMETHEUS_MULTIPROC_DIR (one directory per worker, emptied before it
  starts, as prometheus_client requires);
- otherwise each interpreter that imports this module makes a fresh directory and removes it
  at exit. Forked pool children inherit the module and its directory; a separate program
  started from here (a test starting a worker) makes its own, so two workers never share one.

Children come and go (recycled after N tasks, killed, out of memory), and each leaves files
behind; `compact` folds the files of dead processes into one archive file per type, so a
scrape reads a handful of files after months of recycling.

Gauges that describe shared state (queue depths, pending URLs) are read at scrape time from
Redis and Postgres, not kept in processes: several workers serve the same numbers, so
aggregate them with max(), not sum().
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Marks a directory this module made (and which process made it); a directory inherited
# from another program with this marker is not ours to share.
_OWNER_ENV = "NEWSAGG_METRICS_DIR_OWNER"


def _sweep_dead_dirs() -> None:
    """Remove the directories of processes that died without cleaning up (kill -9)."""
    for path in Path(tempfile.gettempdir()).glob("newsagg-metrics-*-*"):
        try:
            pid = int(path.name.split("-")[2])
            os.kill(pid, 0)
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue  # alive, someone else's


if not os.environ.get(_DIR_ENV) or os.environ.get(_OWNER_ENV):
    _sweep_dead_dirs()
    _owner = os.getpid()
    _made = tempfile.mkdtemp(prefix=f"newsagg-metrics-{_owner}-")
    os.environ[_DIR_ENV] = _made
    os.environ[_OWNER_ENV] = str(_owner)

    def _remove_dir() -> None:
        # Forked children inherit this hook but must not delete their parent's files.
        if os.getpid() != _owner:
            return
        # A second stop signal while exiting (beat raises SystemExit) must not print a trace.
        with contextlib.suppress(BaseException):
            shutil.rmtree(_made, ignore_errors=True)

    atexit.register(_remove_dir)

import logging  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

from prometheus_client import values as _values  # noqa: E402

# prometheus_client picks its value class when first imported; the `celery` command may have
# imported it already (Flower's CLI plugin does), before the directory above existed.
_values.ValueClass = _values.get_value_class()

from prometheus_client import (  # noqa: E402
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.mmap_dict import MmapedDict  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from workers import broker  # noqa: E402

log = logging.getLogger("newsagg.metrics")

# Fetches are network-bound (ms to the 30 s total time-out); extraction is CPU-bound (tens of
# ms, seconds for a hostile page); crawls last from a second to the crawl lease.
FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
EXTRACT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 600)
CRAWL_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)

PAGES_FETCHED = Counter(
    "newsagg_pages_fetched",
    "HTTP fetches by purpose (source, article, robots) and fetches.status (ok, not_modified, "
    "http_error, timeout, ...).",
    ["purpose", "status"],
)
FETCH_SECONDS = Histogram(
    "newsagg_fetch_seconds",
    "Time of one fetch, redirects included, waiting for the host's turn excluded.",
    ["purpose"],
    buckets=FETCH_BUCKETS,
)
ARTICLES = Counter(
    "newsagg_articles",
    "Article URLs processed, by outcome: stored (a new original), duplicate (a new copy of a "
    "stored text), updated (a new revision), unchanged, failed.",
    ["outcome"],
)
EXTRACTION_FAILURES = Counter(
    "newsagg_extraction_failures",
    "Fetched pages that gave no article, by reason (empty_extraction, too_complex, "
    "worker_error, worker_lost).",
    ["reason"],
)
EXTRACT_SECONDS = Histogram(
    "newsagg_extraction_seconds",
    "Time of decoding, parsing and extracting one page (trafilatura and dates).",
    buckets=EXTRACT_BUCKETS,
)
POLITENESS_WAIT = Histogram(
    "newsagg_politeness_wait_seconds",
    "Time a fetch waited in place for its host's turn (pacing, in-flight limit).",
    buckets=WAIT_BUCKETS,
)
HOST_WAIT_SECONDS = Counter(
    "newsagg_host_wait_seconds",
    "Seconds spent waiting for each host's turn, in place or by rescheduling the task.",
    ["host"],
)
HOST_BUSY = Counter(
    "newsagg_host_busy",
    "Tasks sent back to the queue because their host's turn was too far away.",
    ["host"],
)
CRAWL_SECONDS = Histogram(
    "newsagg_crawl_duration_seconds",
    "Crawls from queued to their end, by how they ended (finished, failed).",
    ["status"],
    buckets=CRAWL_BUCKETS,
)
TASKS = Counter(
    "newsagg_tasks",
    "Celery tasks run, by task name and state (success, retry, failure).",
    ["task", "state"],
)
TASK_SECONDS = Histogram(
    "newsagg_task_seconds",
    "Wall time of one task run, by task name.",
    ["task"],
    buckets=EXTRACT_BUCKETS,
)
OUTAGE_WAITS = Counter(
    "newsagg_outage_waits",
    "Times a task found PostgreSQL or Redis unreachable and waited for it, by service.",
    ["service"],
)
LOST_WORK = Counter(
    "newsagg_lost_work",
    "Work housekeeping found lost and took back: crawl (its source read again), url (sent "
    "again), abandoned (a crawl given up after repeated re-dispatches).",
    ["kind"],
)


def observe_crawl_end(status: str, seconds: float) -> None:
    """store's on_crawl_end hook."""
    CRAWL_SECONDS.labels(status).observe(max(seconds, 0.0))


class SharedStateCollector(Collector):
    """Queue depths from Redis and the frontier from Postgres, read when scraped."""

    def __init__(self, queues: tuple[str, ...]) -> None:
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from workers.app import resources  # the app imports this module

        depth = GaugeMetricFamily(
            "newsagg_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]
        )
        unacked = GaugeMetricFamily(
            "newsagg_unacked_messages",
            "Messages delivered to workers and not acknowledged yet (running, reserved, or "
            "waiting for a countdown).",
        )
        try:
            depths = broker.queue_depths(resources.redis, self.queues)
            for queue in self.queues:
                depth.add_metric([queue], float(depths[queue]))
            unacked.add_metric([], float(depths[broker.UNACKED]))
            yield depth
            yield unacked
        except Exception as exc:  # a scrape must answer even when Redis is down
            log.warning("cannot read queue depths: %s", exc)
        try:
            yield from _frontier_metrics(resources)
        except Exception as exc:
            log.warning("cannot read the frontier: %s", exc)


def _frontier_metrics(resources: Any) -> Iterator[GaugeMetricFamily]:
    from workers import store

    with resources.pool.connection(timeout=2.0) as conn:
        figures = store.operational_figures(conn)
    pending = GaugeMetricFamily(
        "newsagg_urls_pending", "Article URLs discovered and not yet processed."
    )
    pending.add_metric([], float(figures["urls_pending"]))
    yield pending
    running = GaugeMetricFamily("newsagg_crawls_running", "Crawls queued or running.")
    running.add_metric([], float(figures["crawls_running"]))
    yield running
    oldest = GaugeMetricFamily(
        "newsagg_oldest_crawl_idle_seconds",
        "Seconds since the least recently active queued or running crawl did anything (its "
        "lease; housekeeping re-dispatches past NEWSAGG_CRAWL_LEASE).",
    )
    oldest.add_metric([], float(figures["oldest_idle_seconds"]))
    yield oldest
    unhealthy = GaugeMetricFamily(
        "newsagg_sources_unhealthy",
        "Enabled sources marked unhealthy after repeated failures (polled once a day).",
    )
    unhealthy.add_metric([], float(figures["sources_unhealthy"]))
    yield unhealthy


# -- the files of dead processes ---------------------------------------------------------

_FILE = re.compile(r"^(counter|histogram)_([0-9]+)\.db$")
# Serialises compaction with scrapes in the serving process, so no scrape sees a dead
# process's values both in its own file and in the archive (a counter must never go down).
_files_lock = threading.Lock()


def metrics_dir() -> str:
    return os.environ[_DIR_ENV]


def compact(alive: Iterable[int], directory: str | None = None) -> int:
    """Fold the counter and histogram files of processes not in `alive` into one archive
    file per type; returns how many files were folded.

    Counters and histogram buckets are stored as plain sums per key, so adding a dead
    process's values to the archive keeps every total exactly.
    """
    folder = Path(directory or metrics_dir())
    living = set(alive)
    folded = 0
    with _files_lock:
        archives: dict[str, MmapedDict] = {}
        try:
            for path in sorted(folder.glob("*.db")):
                match = _FILE.match(path.name)
                if match is None or int(match[2]) in living:
                    continue
                kind = match[1]
                archive = archives.get(kind)
                if archive is None:
                    archive = archives[kind] = MmapedDict(str(folder / f"{kind}_archive.db"))
                for key, value, timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
                    total, _ = archive.read_value(key)
                    archive.write_value(key, total + value, timestamp)
                path.unlink()
                folded += 1
        finally:
            for archive in archives.values():
                archive.close()
    return folded


class _Registry(CollectorRegistry):
    """What a worker serves: every process's counters (read under the files lock, so no
    scrape meets a compaction half done) and the shared state (read outside it: a slow
    Redis or PostgreSQL must not hold up the worker's timer, which compacts)."""

    def __init__(self, queues: tuple[str, ...]) -> None:
        super().__init__(auto_describe=False)
        self.files = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.files)
        self.shared = SharedStateCollector(queues) if queues else None

    def collect(self) -> Iterator[Any]:
        with _files_lock:
            metrics = list(self.files.collect())
        yield from metrics
        if self.shared is not None:
            yield from self.shared.collect()


_server_lock = threading.Lock()
_server_started = False


def serve(port: int, queues: tuple[str, ...], addr: str = "0.0.0.0") -> bool:
    """Serve /metrics for every process of this worker; False when the endpoint is off
    (port 0) or the port is taken (two workers on one host need a port each)."""
    global _server_started
    if port == 0:
        return False
    with _server_lock:
        if _server_started:
            return True
        try:
            start_http_server(port, addr=addr, registry=_Registry(queues))
        except OSError as exc:
            log.error(
                "metrics endpoint not started on %s:%s: %s (another worker on this host? "
                "give each its own NEWSAGG_METRICS_PORT)",
                addr,
                port,
                exc,
            )
            return False
        _server_started = True
        log.info("metrics served on http://%s:%s/metrics", addr, port)
        return True
