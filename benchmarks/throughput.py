"""Throughput and memory: newsagg against the machine's limit and against trafilatura's crawler.

Run: .venv/bin/python -m benchmarks.throughput [--runs 3] [--hosts 100] [--long 5000]

In one run on this machine it serves a local news web (tests/newsweb.py: --hosts sites on
loopback addresses, every page of ../shared/corpus/extraction, half the sites listing theirs
in an RSS feed, half in a sitemap) from a process of its own, then measures, --runs times
each, interleaved:

1. the limit: trafilatura's default extraction with metadata
   (`bare_extraction(html, url=…, with_metadata=True)`) over the same pages from memory, in
   as many processes as cores, after one untimed warm-up pass;
2. newsagg: a fresh database, `newsagg worker` as the README recommends for this machine,
   `newsagg crawl --all --wait`, from the web's first request to the last row committed;
3. trafilatura's own crawler as a user runs it: `trafilatura --feed -i feeds.txt` and,
   at the same time, `trafilatura --sitemap -i sitemaps.txt --list` then `-i urls.txt`,
   both with `--json --with-metadata`, its default parallel downloads and SLEEP_TIME = 0
   (benchmarks/peer.py resolves the sites' names to loopback for it);

and prints pages/s for each (median of the runs, every run shown), the ratios, body F1 of
each on the same pages (the corpus' snippet scoring), the peak RSS of every process, and,
with --long N, the RSS of newsagg's worker processes at the start and end of a crawl of N
pages (each page served under several URLs), with a check that none was lost or doubled.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import limit
from benchmarks.extraction import Score
from benchmarks.peer import url_filename
from tests.newsweb import CORPUS, NewsWeb, build_web, serve_web

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("NEWSAGG_BENCH_SERVER", "postgresql://localhost/postgres")
REDIS = os.environ.get("NEWSAGG_BENCH_REDIS", "redis://localhost:6379/14")
DBNAME = "newsagg_bench"
MB = 1024 * 1024
# --profile FILE: py-spy's collapsed stacks of newsagg's worker processes during its crawl.
PROFILE: str | None = None
PROFILE_MAIN = bool(os.environ.get("NEWSAGG_BENCH_PROFILE_MAIN"))
# The dev extra installs it next to this interpreter, which need not be on PATH.
PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"


# -- the web, in a process of its own -----------------------------------------------------


@dataclass
class Served:
    web: NewsWeb
    first: Any  # multiprocessing Values: time of the first and last request, request count
    last: Any
    count: Any
    proc: multiprocessing.process.BaseProcess

    def reset(self) -> None:
        with self.first.get_lock():
            self.first.value = 0.0
            self.last.value = 0.0
            self.count.value = 0


def _serve(web: NewsWeb, first: Any, last: Any, count: Any, pipe: Any) -> None:
    def seen() -> None:
        now = time.time()
        if first.value == 0.0:
            first.value = now
        last.value = now
        count.value += 1

    web.on_request = seen
    with serve_web(web) as served:
        pipe.send([(h.address, h.port) for h in served.hosts])
        while True:
            time.sleep(3600)


@contextmanager
def served_web(hosts: int, copies: int = 1, pages: int | None = None) -> Iterator[Served]:
    web = build_web(hosts=hosts, pages=pages, copies=copies)
    ctx = multiprocessing.get_context("fork")
    first, last, count = ctx.Value("d", 0.0), ctx.Value("d", 0.0), ctx.Value("i", 0)
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(web, first, last, count, child), daemon=True)
    proc.start()
    for host, (address, port) in zip(web.hosts, parent.recv(), strict=True):
        host.address, host.port = address, port
    try:
        yield Served(web, first, last, count, proc)
    finally:
        proc.terminate()
        proc.join(10)


# -- scoring -------------------------------------------------------------------------------


def load_truth() -> dict[str, Any]:
    truth: dict[str, Any] = json.loads((CORPUS / "extraction" / "groundtruth.json").read_text())
    return truth


def score(texts: dict[str, str], web: NewsWeb, truth: dict[str, Any], by_name: bool) -> Score:
    """Snippet scoring over every page of the web (a page without text scores as empty)."""
    total = Score()
    for host, page in web.pages:
        text = texts.get(host.origin(by_name) + page.path, "")
        entry = truth[page.corpus_url]
        for snippet in entry.get("with") or []:
            if snippet in text:
                total.tp += 1
            else:
                total.fn += 1
        for snippet in entry.get("without") or []:
            if snippet in text:
                total.fp += 1
            else:
                total.tn += 1
    return total


# -- memory of processes -------------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return fields


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == sid:  # field 6 of stat: the session id
                pids.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return pids


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """User + system CPU time a process has used; with `reaped`, plus that of its children
    that have exited and been waited for."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])
        if reaped:
            ticks += int(fields[13]) + int(fields[14])
        return ticks / _TICK
    except (OSError, ValueError, IndexError):
        return 0.0


def service_cpu() -> dict[str, float]:
    """CPU seconds used so far by PostgreSQL and Redis: the live processes, and through the
    postmaster's reaped children, the backends that have exited (a worker's connections come
    and go with its pool processes)."""
    return {
        name: sum(cpu_seconds(pid, reaped=True) for pid in pids)
        for name, pids in service_pids().items()
    }


def service_pids() -> dict[str, list[int]]:
    """The machine's PostgreSQL and Redis server processes (where their CPU goes)."""
    found: dict[str, list[int]] = {"postgres": [], "redis": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if name.startswith("postgres"):
            found["postgres"].append(int(entry.name))
        elif name.startswith("redis-server"):
            found["redis"].append(int(entry.name))
    return found


class MemoryWatch:
    """Samples the RSS of every process in some sessions; keeps each pid's peak."""

    def __init__(self, sessions: list[int], every: float = 0.25) -> None:
        self.sessions = sessions
        self.every = every
        self.peak: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.cpu0: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.samples: list[tuple[float, dict[int, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def used(self, pid: int) -> float:
        return self.cpu.get(pid, 0.0) - self.cpu0.get(pid, 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            now: dict[int, int] = {}
            for sid in self.sessions:
                for pid in session_pids(sid):
                    status = _status(pid)
                    self.cpu[pid] = cpu_seconds(pid)
                    # what a process had used before the watch began is not the run's
                    self.cpu0.setdefault(pid, self.cpu[pid] if not self.samples else 0.0)
                    if "VmHWM" in status:
                        self.peak[pid] = max(self.peak.get(pid, 0), status["VmHWM"])
                        now[pid] = status["VmRSS"]
                        if pid not in self.names:
                            self.names[pid] = "main" if pid == sid else "child"
            self.samples.append((time.time(), now))
            self._stop.wait(self.every)


# -- 1. the limit --------------------------------------------------------------------------


def measure_limit(web: NewsWeb, processes: int) -> tuple[float, dict[str, str]]:
    """Spawned processes (benchmarks/limit.py): this one has imported newsagg, which
    speeds up trafilatura in it, and a fork would inherit that."""
    pages = [(host.origin() + page.path, page.body) for host, page in web.pages]
    indices = list(range(len(pages)))
    chunks = [indices[i : i + 4] for i in range(0, len(indices), 4)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        processes, mp_context=ctx, initializer=limit.load, initargs=(pages,)
    ) as pool:
        list(pool.map(limit.extract_chunk, chunks))  # warm-up, untimed
        started = time.perf_counter()
        results = list(pool.map(limit.extract_chunk, chunks))
        elapsed = time.perf_counter() - started
    texts = {url: text for chunk in results for url, text in chunk}
    return len(pages) / elapsed, texts


# -- 2. newsagg ----------------------------------------------------------------------------


def bench_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    from urllib.parse import urlsplit, urlunsplit

    url = urlunsplit(urlsplit(PG)._replace(path=f"/{DBNAME}"))
    return {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": REDIS,
        "NEWSAGG_ALLOWED_NETWORKS": "127.0.0.0/8",
        "NEWSAGG_METRICS_PORT": "0",
        "NEWSAGG_LOG_LEVEL": "WARNING",
        **(extra or {}),
    }


def newsagg(*args: str, env: dict[str, str], timeout: float = 3600) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"newsagg {' '.join(args)}: {proc.stdout}\n{proc.stderr}")
    return proc.stdout


def fresh_database(env: dict[str, str]) -> None:
    import redis

    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DBNAME}" WITH (FORCE)')
    redis.Redis.from_url(REDIS).flushdb()
    newsagg("db", "init", env=env)


@dataclass
class Run:
    pages_per_s: float
    pages: int
    f1: Score
    peak_rss: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def start_worker(env: dict[str, str], args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "worker", *args],
        env={**env, "NEWSAGG_LOG_LEVEL": env.get("NEWSAGG_BENCH_LOG_LEVEL", "INFO")},
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    deadline = time.monotonic() + 60
    while " ready." not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError("the worker did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.1)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def measure_newsagg(
    served: Served,
    truth: dict[str, Any],
    worker_args: list[str],
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    long_run: bool = False,
) -> Run:
    env = bench_env(extra_env)
    fresh_database(env)
    web = served.web
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        from workers import store

        for host in web.hosts:
            store.add_source(conn, f"site{host.index:03d}", host.source_url(), host.kind)  # type: ignore[arg-type]
    worker = start_worker(env, worker_args, workdir / "worker.log")
    profiler = None
    try:
        if PROFILE:
            # py-spy samples the worker and its children (collapsed stacks, for flame graphs)
            profiler = subprocess.Popen(
                [PY_SPY, "record", *(["--subprocesses"] if not PROFILE_MAIN else []),
                 "--format", "raw", "--rate", "100", "-o", PROFILE, "--pid", str(worker.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1)
        served.reset()
        before = service_cpu()
        web_before = cpu_seconds(served.proc.pid)  # type: ignore[arg-type]
        with MemoryWatch([worker.pid]) as memory:
            newsagg("crawl", "--all", "--wait", "--timeout", "3000", env=env)
        used = {
            "worker main": memory.used(worker.pid),
            "worker children": sum(memory.used(p) for p in memory.cpu if p != worker.pid),
            **{k: v - before[k] for k, v in service_cpu().items()},
            "web server": cpu_seconds(served.proc.pid) - web_before,  # type: ignore[arg-type]
        }
        if profiler is not None:
            profiler.send_signal(2)
            profiler.wait(30)
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM max(processed_at))::float8, "
                "count(*) FILTER (WHERE state <> 'pending'), "
                "count(*) FILTER (WHERE state = 'pending') FROM discovered_urls"
            ).fetchone()
            assert row is not None
            last, processed, pending = row
            texts = dict(
                conn.execute(
                    "SELECT d.url, a.text FROM discovered_urls d JOIN articles a "
                    "ON a.id = d.article_id"
                ).fetchall()
            )
            doubled = conn.execute(
                "SELECT count(*) - count(DISTINCT article_id) FROM discovered_urls "
                "WHERE article_id IS NOT NULL"
            ).fetchone()
            articles = conn.execute("SELECT count(*) FROM articles").fetchone()
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.kill()
        stop(worker)
    elapsed = last - served.first.value
    run = Run(processed / elapsed, processed, score(texts, web, truth, by_name=False))
    log = (workdir / "worker.log").read_text(errors="replace")
    bounced = log.count("host not ready, rescheduled")
    if bounced:  # logged at DEBUG (--env NEWSAGG_BENCH_LOG_LEVEL=DEBUG)
        run.notes.append(f"{bounced} tasks sent back for their host's turn")
    run.notes.append(
        "CPU ms per page: "
        + ", ".join(f"{k} {v / processed * 1000:.1f}" for k, v in used.items())
        + f" (wall {elapsed:.1f} s)"
    )
    run.peak_rss = {f"{memory.names[p]} {p}": v for p, v in sorted(memory.peak.items())}
    if pending:
        run.notes.append(f"{pending} URLs still pending")
    if processed != len(web.pages):
        run.notes.append(f"{processed} URLs processed of {len(web.pages)}")
    if long_run:
        run.notes.append(
            f"articles {articles[0] if articles else '?'}; URLs sharing an article "
            f"{doubled[0] if doubled else '?'} (the same page under several URLs is one "
            "article per URL: expected 0)"
        )
        run.notes.extend(memory_trend(memory, env))
    return run


def memory_trend(memory: MemoryWatch, env: dict[str, str]) -> list[str]:
    """RSS of the worker's children at the start, the middle and the end of the run."""
    samples = [
        (t, {p: r for p, r in rss.items() if memory.names.get(p) == "child"})
        for t, rss in memory.samples
    ]
    samples = [(t, rss) for t, rss in samples if rss]
    if len(samples) < 3:
        return ["too few memory samples"]
    # skip the first seconds (imports, first pages) for the start figure
    start = samples[min(len(samples) - 1, int(4 / memory.every))]
    middle = samples[len(samples) // 2]
    end = samples[-1]

    def show(rss: dict[int, int]) -> str:
        return " + ".join(f"{v / MB:.0f}" for v in rss.values()) + " MB"

    recycled = len({p for _, rss in samples for p in rss})
    peak = max(v for p, v in memory.peak.items() if memory.names[p] == "child")
    # Replacing a process every N tasks hides a leak from the run's start and end figures;
    # the trend shows in each process over its own life, and in the mean across the run.
    lives: dict[int, list[int]] = {}
    for _, rss in samples:
        for pid, value in rss.items():
            lives.setdefault(pid, []).append(value)
    settle = int(4 / memory.every)
    growth = sorted(
        (life[-1] - life[settle]) / MB for life in lives.values() if len(life) > 4 * settle
    )
    fifths = [samples[len(samples) * k // 5 : len(samples) * (k + 1) // 5] for k in range(5)]
    means = [
        statistics.mean(v for _, rss in part for v in rss.values()) / MB for part in fifths if part
    ]
    lines = [
        f"worker children RSS: start {show(start[1])}, middle {show(middle[1])}, "
        f"end {show(end[1])}; {recycled} child processes over the run (recycled ones included)",
        f"max child RSS {peak / MB:.0f} MB; mean child RSS by fifth of the run: "
        + ", ".join(f"{m:.0f}" for m in means)
        + " MB",
    ]
    if growth:
        lines.append(
            f"RSS growth of a child over its life (after its first {settle * memory.every:.0f} s, "
            f"{len(growth)} children): median {statistics.median(growth):+.0f} MB, "
            f"max {growth[-1]:+.0f} MB"
        )
    # A child starts as a copy of the main process: children born later starting bigger
    # point at the main process, growth within lives at the children.
    born = [life[settle] / MB for life in lives.values() if len(life) > settle]
    if len(born) >= 2:
        lines.append(
            "child RSS after its first seconds, by birth: "
            + ", ".join(f"{b:.0f}" for b in born)
            + " MB"
        )
    main = [rss[pid] for _, rss in memory.samples for pid in rss if memory.names.get(pid) == "main"]
    if main:
        picks = [main[len(main) * k // 5] for k in range(5)] + [main[-1]]
        lines.append(
            "worker main RSS through the run: " + ", ".join(f"{v / MB:.0f}" for v in picks) + " MB"
        )
    return lines


# -- 3. trafilatura's crawler --------------------------------------------------------------


def peer_config(directory: Path) -> Path:
    import trafilatura

    default = Path(trafilatura.__file__).parent / "settings.cfg"
    text = default.read_text()
    text = text.replace("SLEEP_TIME = 5.0", "SLEEP_TIME = 0")
    # the news web is on loopback: its downloader refuses that by default
    text = text.replace("SSRF_PROTECTION = on", "SSRF_PROTECTION = off")
    path = directory / "settings.cfg"
    path.write_text(text)
    return path


# Longer than any run here: a hung peer fails the benchmark instead of stalling it.
PEER_TIMEOUT = 3600


def measure_peer(served: Served, truth: dict[str, Any], workdir: Path) -> Run:
    web = served.web
    config = peer_config(workdir)
    feeds = workdir / "feeds.txt"
    sitemaps = workdir / "sitemaps.txt"
    feeds.write_text(
        "".join(h.source_url(by_name=True) + "\n" for h in web.hosts if h.kind == "feed")
    )
    sitemaps.write_text(
        "".join(h.source_url(by_name=True) + "\n" for h in web.hosts if h.kind == "sitemap")
    )
    out_feeds, out_sitemaps = workdir / "out-feeds", workdir / "out-sitemaps"
    for d in (out_feeds, out_sitemaps):
        shutil.rmtree(d, ignore_errors=True)
    common = ["--json", "--with-metadata", "--config-file", str(config)]

    def peer(*args: str, **kw: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.peer", *args],
            cwd=ROOT,
            start_new_session=True,
            stderr=subprocess.DEVNULL,
            **kw,
        )

    served.reset()
    sessions: list[int] = []
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **kw: Any) -> subprocess.Popen[bytes]:
        proc = peer(*args, **kw)
        started.append(proc)
        sessions.append(proc.pid)
        return proc

    try:
        with MemoryWatch(sessions) as memory:
            by_feed = start("--feed", "-i", str(feeds), *common, "-o", str(out_feeds),
                            stdout=subprocess.DEVNULL)  # fmt: skip
            with (workdir / "urls.txt").open("w") as urls:
                start("--sitemap", "-i", str(sitemaps), "--list", "--config-file",
                      str(config), stdout=urls).wait(PEER_TIMEOUT)  # fmt: skip
            by_sitemap = start("-i", str(workdir / "urls.txt"), *common, "-o",
                               str(out_sitemaps), stdout=subprocess.DEVNULL)  # fmt: skip
            by_feed.wait(PEER_TIMEOUT)
            by_sitemap.wait(PEER_TIMEOUT)
    finally:
        for proc in started:
            stop(proc)
    by_file = {url_filename(url): url for url in web.article_urls(by_name=True)}
    texts: dict[str, str] = {}
    last = 0.0
    for directory in (out_feeds, out_sitemaps):
        for path in directory.rglob("*.json"):
            last = max(last, path.stat().st_mtime)
            if path.stem in by_file:
                texts[by_file[path.stem]] = json.loads(path.read_text()).get("text") or ""
    elapsed = last - served.first.value
    pages = len(web.pages)
    run = Run(pages / elapsed, pages, score(texts, web, truth, by_name=True))
    run.peak_rss = {f"peer {p}": v for p, v in sorted(memory.peak.items())}
    run.notes.append(f"{len(texts)} documents written of {pages} pages")
    return run


# -- report --------------------------------------------------------------------------------


def median(runs: list[Run]) -> float:
    return statistics.median(r.pages_per_s for r in runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--pages", type=int, default=0, help="corpus pages served (0: all)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--long", type=int, default=0, help="pages of the memory run (0: none)")
    parser.add_argument(
        "--worker-args", default="", help="arguments for `newsagg worker` (default: README's)"
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="ARGS",
        help="also measure newsagg with these worker arguments, in the same runs",
    )
    parser.add_argument("--only", default="limit,newsagg,peer")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for newsagg's processes"
    )
    parser.add_argument("--profile", help="py-spy collapsed stacks of newsagg's workers")
    args = parser.parse_args(argv)
    global PROFILE
    PROFILE = args.profile
    only = set(args.only.split(","))
    truth = load_truth()
    worker_args = args.worker_args.split()
    extra_env = dict(item.split("=", 1) for item in args.env)
    workdir = Path(tempfile.mkdtemp(prefix="newsagg-bench-"))
    # Each newsagg configuration is measured in every run, interleaved with the others: the
    # machine's speed drifts between runs more than configurations differ.
    configs = {"newsagg": worker_args, **{f"newsagg {a}": a.split() for a in args.compare}}
    results: dict[str, list[Run]] = {"limit": [], **{c: [] for c in configs}, "peer": []}
    with served_web(args.hosts, pages=args.pages or None) as served:
        web = served.web
        feeds = sum(1 for h in web.hosts if h.kind == "feed")
        print(
            f"news web: {len(web.hosts)} sites on loopback ({feeds} feeds, "
            f"{len(web.hosts) - feeds} sitemaps), {len(web.pages)} article pages; "
            f"{args.processes} cores; {args.runs} runs"
        )
        for n in range(args.runs):
            if "limit" in only:
                rate, texts = measure_limit(web, args.processes)
                results["limit"].append(Run(rate, len(web.pages), score(texts, web, truth, False)))
                print(f"run {n + 1} limit   {rate:6.1f} pages/s", flush=True)
            for config, config_args in configs.items() if "newsagg" in only else ():
                run = measure_newsagg(served, truth, config_args, workdir, extra_env)
                results[config].append(run)
                print(
                    f"run {n + 1} {config} {run.pages_per_s:6.1f} pages/s {'; '.join(run.notes)}",
                    flush=True,
                )
            if "peer" in only:
                run = measure_peer(served, truth, workdir)
                results["peer"].append(run)
                print(
                    f"run {n + 1} peer    {run.pages_per_s:6.1f} pages/s {'; '.join(run.notes)}",
                    flush=True,
                )
    print()
    print(f"{'':<40} {'pages/s (median)':>16} {'runs':>24} {'body F1':>8} {'P':>6} {'R':>6}")
    labels = {
        "limit": "limit: trafilatura default, memory",
        "newsagg": "newsagg crawl --all --wait",
        "peer": "trafilatura --feed/--sitemap",
    }
    for name, runs in results.items():
        if not runs:
            continue
        f1 = runs[-1].f1
        shown = " ".join(f"{r.pages_per_s:.1f}" for r in runs)
        print(
            f"{labels.get(name, name):<40} {median(runs):>16.1f} {shown:>24} {f1.f1:>8.3f} "
            f"{f1.precision:>6.3f} {f1.recall:>6.3f}"
        )
    if results["newsagg"] and results["limit"]:
        print(f"newsagg / limit: {median(results['newsagg']) / median(results['limit']):.2f}")
    if results["newsagg"] and results["peer"]:
        print(f"newsagg / peer:  {median(results['newsagg']) / median(results['peer']):.2f}")
    if results["peer"] and results["limit"]:
        print(f"peer / limit:    {median(results['peer']) / median(results['limit']):.2f}")
    for name in [*configs, "peer"]:
        if results[name]:
            peaks = results[name][-1].peak_rss
            shown = ", ".join(f"{k} {v / MB:.0f} MB" for k, v in peaks.items())
            print(f"peak RSS, {name} (last run): {shown}")
    if args.long:
        copies = -(-args.long // len(build_web(hosts=args.hosts).pages))
        with served_web(args.hosts, copies=copies) as served:
            run = measure_newsagg(served, truth, worker_args, workdir, extra_env, long_run=True)
        print()
        print(
            f"memory run: {run.pages} pages ({copies} URLs per page), {run.pages_per_s:.1f} pages/s"
        )
        for note in run.notes:
            print("  " + note)
    if not os.environ.get("NEWSAGG_BENCH_KEEP"):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"kept {workdir}")


if __name__ == "__main__":
    main()
