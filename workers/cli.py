"""The `newsagg` command: database, sources, crawls, Celery processes, status."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workers import store
from workers.schedule import parse_duration
from workers.settings import Settings, SettingsError, get_settings

app = typer.Typer(
    help="newsagg: news aggregation workers.", no_args_is_help=True, add_completion=False
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
sources_app = typer.Typer(help="Sources: feeds, sitemaps and listing pages.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sources_app, name="sources")
# Piped output (CI logs, `| less`) gets a wide table instead of rich's 80 columns.
WIDTH = shutil.get_terminal_size((160, 24)).columns
console = Console(width=WIDTH)
err = Console(stderr=True, width=WIDTH)
QUEUES = "control,crawl,articles"


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        raise fail(str(exc), 2) from None


def connect(settings: Settings) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            settings.database_url, autocommit=True, application_name="newsagg-cli"
        )
    except psycopg.OperationalError as exc:
        raise fail(
            f"cannot connect to PostgreSQL at {redact(settings.database_url)}: "
            f"{str(exc).strip()}\nIs it running? Has `newsagg db init` been run?"
        ) from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# -- db ---------------------------------------------------------------------------------


@db_app.command("init")
def db_init() -> None:
    """Create the database if missing, then create or upgrade its schema (safe to repeat)."""
    settings = settings_or_exit()
    parts = urlsplit(settings.database_url)
    dbname = parts.path.lstrip("/") or "newsagg"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    try:
        if store.create_database(admin_url, dbname):
            console.print(f"created database [bold]{dbname}[/]")
    except psycopg.Error as exc:
        # Managed databases often forbid CREATE DATABASE; the target may exist anyway.
        err.print(f"[yellow]note:[/] could not check/create database {dbname}: {str(exc).strip()}")
    with connect(settings) as conn:
        applied = store.migrate(conn)
    done = f"migrations applied: {', '.join(map(str, applied))}" if applied else "up to date"
    console.print(f"schema of [bold]{redact(settings.database_url)}[/]: {done}")


# -- sources ----------------------------------------------------------------------------


@sources_app.command("add")
def sources_add(
    name: str,
    url: str,
    kind: Annotated[str, typer.Option(help="feed, sitemap or page")] = "feed",
    interval: Annotated[int, typer.Option(help="minutes between scheduled crawls")] = 15,
    host_delay: Annotated[
        float | None, typer.Option(help="min seconds between requests to its hosts")
    ] = None,
    host_concurrency: Annotated[
        int | None, typer.Option(help="requests in flight at once to its hosts")
    ] = None,
    min_interval: Annotated[
        str | None, typer.Option(help="shortest adaptive interval, e.g. 5m (default global)")
    ] = None,
    max_interval: Annotated[
        str | None, typer.Option(help="longest adaptive interval, e.g. 6h (default global)")
    ] = None,
) -> None:
    """Add a source."""
    try:
        bounds = [parse_duration(v) if v else None for v in (min_interval, max_interval)]
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    if kind not in ("feed", "sitemap", "page"):
        raise fail(f"--kind must be feed, sitemap or page, not {kind!r}", 2)
    if not url.startswith(("http://", "https://")):
        raise fail(f"the URL must start with http:// or https://, not {url!r}", 2)
    with connect(settings_or_exit()) as conn:
        try:
            source = store.add_source(
                conn,
                name,
                url,
                cast("store.SourceKind", kind),
                timedelta(minutes=interval),
                host_delay=host_delay,
                host_concurrency=host_concurrency,
                min_interval=bounds[0],
                max_interval=bounds[1],
            )
        except store.StoreError as exc:
            raise fail(str(exc)) from None
        except psycopg.errors.CheckViolation as exc:
            raise fail(
                f"invalid source: {exc.diag.message_primary} "
                "(name: letters, digits, . _ -; url: http(s)://…)"
            ) from None
    console.print(f"added source [bold]{source.name}[/] ({source.kind}) {source.url}")


@sources_app.command("list")
def sources_list() -> None:
    """List sources."""
    with connect(settings_or_exit()) as conn:
        sources = store.find_sources(conn)
    table = Table("name", "kind", "url", "enabled", "interval", "next crawl")
    for s in sources:
        table.add_row(
            s.name,
            s.kind,
            s.url,
            "yes" if s.enabled else "no",
            str(s.crawl_interval),
            s.next_crawl_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@sources_app.command("remove")
def sources_remove(name: str) -> None:
    """Remove a source (its crawl history goes; its articles stay)."""
    with connect(settings_or_exit()) as conn:
        if not store.remove_source(conn, name):
            raise fail(f"no source named {name}")
    console.print(f"removed source [bold]{name}[/]")


@sources_app.command("load")
def sources_load(
    file: Annotated[
        Path | None, typer.Argument(help="TOML file; default schedules/sources.toml")
    ] = None,
) -> None:
    """Add or update the sources listed in a TOML file."""
    settings = settings_or_exit()
    path = file or settings.sources_file
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8")).get("source", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    with connect(settings) as conn:
        for entry in entries:
            store.add_source(
                conn,
                entry["name"],
                entry["url"],
                entry.get("kind", "feed"),
                timedelta(minutes=int(entry.get("interval", 15))),
                host_delay=entry.get("host_delay"),
                host_concurrency=entry.get("host_concurrency"),
                min_interval=parse_duration(entry["min_interval"])
                if "min_interval" in entry
                else None,
                max_interval=parse_duration(entry["max_interval"])
                if "max_interval" in entry
                else None,
                replace=True,
            )
    console.print(f"loaded {len(entries)} sources from {path}")


# -- crawl ------------------------------------------------------------------------------


@app.command()
def crawl(
    names: Annotated[list[str] | None, typer.Argument(help="source names")] = None,
    all_sources: Annotated[bool, typer.Option("--all", help="crawl every source")] = False,
    wait: Annotated[bool, typer.Option(help="wait until every URL found is processed")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits at most")] = 3600,
) -> None:
    """Enqueue a crawl now (a crawl already queued or running is watched, not doubled)."""
    if not names and not all_sources:
        raise fail("name one or more sources, or pass --all", 2)
    start_crawls(None if all_sources else list(names or []), "manual", None, wait, timeout)


@app.command()
def backfill(
    name: Annotated[str, typer.Argument(help="source name")],
    since: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"], help="stop at this date"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="wait until every URL found is processed")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits at most")] = 86400,
) -> None:
    """Walk the source's sitemaps (a sitemap source's own, else those its site's robots.txt
    names, else /sitemap.xml), newest first, down to --since. Run it again to resume: stored
    URLs are never fetched twice."""
    when = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
    start_crawls([name], "backfill", when, wait, timeout)


def start_crawls(
    names: list[str] | None,
    trigger: store.Trigger,
    since: datetime | None,
    wait: bool,
    timeout: float,
) -> None:
    """Queue one crawl per source through the scheduler's path, optionally watch them."""
    from workers.tasks import crawl_source

    settings = settings_or_exit()
    with connect(settings) as conn:
        sources = store.find_sources(conn, names)
        missing = set(names or []) - {s.name for s in sources}
        if missing:
            raise fail(f"no source named {', '.join(sorted(missing))}")
        crawls: dict[int, str] = {}
        for source in sources:
            crawl_id = store.create_crawl(conn, source.id, trigger, backfill_since=since)
            if crawl_id is None:
                crawl_id = store.active_crawl(conn, source.id)
                console.print(
                    f"{source.name}: a crawl is already under way (#{crawl_id}); watching it"
                )
            else:
                try:
                    crawl_source.delay(crawl_id)
                except Exception as exc:
                    store.fail_crawl(conn, crawl_id, f"could not enqueue: {exc}")
                    raise fail(
                        f"cannot reach the broker at {redact(settings.redis_url)}: {exc}"
                    ) from None
                console.print(f"{source.name}: {trigger} crawl #{crawl_id} queued")
            if crawl_id is not None:
                crawls[crawl_id] = source.name
        if not wait:
            return
        results = watch_crawls(conn, crawls, timeout)
    print_summary(results, crawls)
    if any(c.status != "finished" for c in results.values()):
        raise typer.Exit(1)


def watch_crawls(
    conn: psycopg.Connection[Any], crawls: dict[int, str], timeout: float
) -> dict[int, store.Crawl]:
    """Show progress until every crawl is over (or timeout).

    One statement per poll for all the crawls, and one redraw per poll: `crawl --all` on a
    hundred sources would otherwise spend on its own display and on PostgreSQL (a query per
    crawl twice a second) the CPU the workers it watches need.
    """
    deadline = time.monotonic() + timeout
    results: dict[int, store.Crawl] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        auto_refresh=False,
    ) as progress:
        bars = {
            cid: progress.add_task(f"{name} #{cid}", total=None, state="queued")
            for cid, name in crawls.items()
        }
        while True:
            for crawl_id, current in store.get_crawls(conn, list(bars)).items():
                results[crawl_id] = current
                total = current.urls_queued if current.started_at else None
                progress.update(
                    bars[crawl_id],
                    total=total or (None if current.status in store.ACTIVE else 1),
                    completed=current.urls_done
                    if total
                    else (0 if current.status in store.ACTIVE else 1),
                    state=current.status,
                )
            progress.refresh()
            if all(r.status not in store.ACTIVE for r in results.values()) and len(results) == len(
                crawls
            ):
                return results
            if time.monotonic() > deadline:
                err.print(f"[yellow]gave up waiting after {timeout:g}s[/]")
                return results
            time.sleep(0.5)


def print_summary(results: dict[int, store.Crawl], names: dict[int, str]) -> None:
    table = Table(
        "source",
        "crawl",
        "status",
        "found",
        "new",
        "stored",
        "duplicates",
        "updated",
        "unchanged",
        "failed",
    )
    for crawl_id, c in results.items():
        table.add_row(
            names[crawl_id],
            str(crawl_id),
            c.status,
            str(c.urls_found),
            str(c.urls_new),
            str(c.articles_stored),
            str(c.duplicates),
            str(c.updated),
            str(c.unchanged),
            str(c.failures),
        )
    console.print(table)
    for c in results.values():
        if c.error:
            err.print(f"[red]{names[c.id]}:[/] {c.error}")


# -- status -----------------------------------------------------------------------------


@app.command()
def status() -> None:
    """The processes (workers, beat), queues and crawls in flight; then per source: health,
    interval, next crawl, last crawl and its result, articles."""
    settings = settings_or_exit()
    with connect(settings) as conn:
        rows = store.source_status(conn)
        figures = store.operational_figures(conn)
    print_system(settings, figures)
    table = Table(
        "source",
        "health",
        "interval",
        "next crawl",
        "last crawl",
        "result",
        "articles",
        "24 h",
        "failed URLs 24 h",
    )
    for r in rows:
        health = "ok" if r["healthy"] else f"UNHEALTHY ({r['consecutive_failures']} failures)"
        if not r["enabled"]:
            health = "disabled"
        elif r["healthy"] and r["consecutive_failures"]:
            health = f"failing ({r['consecutive_failures']})"
        last = format_time(r["last_crawl_at"]) if r["last_crawl_at"] else "never"
        if r["last_crawl_trigger"] and r["last_crawl_trigger"] != "schedule":
            last += f" ({r['last_crawl_trigger']})"
        result = r["last_crawl_status"] or "-"
        if r["last_crawl_status"] == "finished":
            result += f": {r['last_crawl_stored']} new, {r['last_crawl_failures']} failed"
        if r["last_crawl_error"]:
            result += f": {r['last_crawl_error']}"
        table.add_row(
            r["name"],
            health,
            format_interval(r["crawl_interval"]),
            format_time(r["next_crawl_at"]),
            last,
            result,
            str(r["articles"]),
            str(r["articles_24h"]),
            str(r["failures_24h"]),
        )
    console.print(table)


def print_system(settings: Settings, figures: dict[str, float]) -> None:
    from workers import broker, monitor

    client = redis_client(settings)
    try:
        workers = monitor.read_heartbeats(client, "worker")
        beats = monitor.read_heartbeats(client, "beat")
        depths = broker.queue_depths(client, QUEUES.split(","))
    except redis.RedisError as exc:
        err.print(f"[red]Redis unreachable at {redact(settings.redis_url)}:[/] {exc}")
        workers, beats, depths = [], [], {}
    table = Table(
        "process", "name", "pid", "processes", "running", "tasks done", "stalls", "last beat"
    )
    for beat in workers:
        table.add_row(
            "worker",
            str(beat["name"]),
            str(beat["pid"]),
            str(beat.get("processes", "")),
            str(beat.get("active", "")),
            str(beat.get("tasks", "")),
            str(beat.get("stalls", "")),
            f"{beat['age']:.0f}s ago",
        )
    for beat in beats:
        table.add_row(
            "beat", str(beat["name"]), str(beat["pid"]), "", "", "", "", f"{beat['age']:.0f}s ago"
        )
    if not workers:
        table.add_row("worker", "[red]none alive[/]", "", "", "", "", "", "")
    if not beats:
        table.add_row("beat", "[red]none alive[/]", "", "", "", "", "", "")
    console.print(table)
    queued = ", ".join(f"{q} {n}" for q, n in depths.items() if q != broker.UNACKED)
    console.print(
        f"queues: {queued or '?'}; taken by workers: {depths.get(broker.UNACKED, '?')}; "
        f"crawls in flight: {figures['crawls_running']:.0f} "
        f"(least recently active {figures['oldest_idle_seconds']:.0f}s ago); "
        f"URLs pending: {figures['urls_pending']:.0f}"
    )


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)


CHECKS = ("database", "redis", "worker", "beat")


@app.command()
def health(
    check: Annotated[
        str, typer.Option(help="comma-separated: database, redis, worker, beat")
    ] = ",".join(CHECKS),
    local: Annotated[
        bool, typer.Option(help="worker/beat heartbeats must come from this host")
    ] = False,
) -> None:
    """Check the system; exit 0 when every check passes, 1 otherwise (for healthchecks)."""
    from workers import monitor

    wanted = [c.strip() for c in check.split(",") if c.strip()]
    unknown = set(wanted) - set(CHECKS)
    if unknown:
        raise fail(
            f"unknown check {', '.join(sorted(unknown))} (choose from {', '.join(CHECKS)})", 2
        )
    settings = settings_or_exit()
    client = redis_client(settings)
    host = socket.gethostname() if local else None
    results = []
    for name in wanted:
        if name == "database":
            results.append(monitor.check_database(settings))
        elif name == "redis":
            results.append(monitor.check_redis(client))
        else:
            results.append(monitor.check_heartbeat(client, name, host))
    for result in results:
        mark = "[green]ok[/]  " if result.ok else "[bold red]FAIL[/]"
        console.print(f"{mark} {result.name}: {result.detail}")
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_interval(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# -- Celery processes -------------------------------------------------------------------

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def celery_command(settings: Settings, *args: str, app: str = "workers.app") -> list[str]:
    # No banner in JSON mode: every line on stdout/stderr is then one JSON object.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    return [sys.executable, "-m", "celery", "-A", app, *quiet, *args]


def default_concurrency() -> int:
    """One process more than cores: measured (benchmarks/throughput.py, README "Performance")
    about 20 % more pages/s than one per core, which leaves a core idle whenever a process
    waits on PostgreSQL or a server; two more gain nothing further."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) + 1


def worker_command(settings: Settings, extra: list[str], app: str = "workers.app") -> list[str]:
    """`app`: the Celery app's module (tests run workers.app wrapped in a fault of theirs)."""
    args = ["worker", "-Q", QUEUES, "--loglevel", settings.log_level]
    if not any(a in ("-n", "--hostname") or a.startswith("--hostname=") for a in extra):
        args += ["-n", "newsagg@%h"]
    if not any(a in ("-c", "--concurrency") or a.startswith("--concurrency=") for a in extra):
        args += ["--concurrency", str(settings.worker_concurrency or default_concurrency())]
    return celery_command(settings, *args, *extra, app=app)


def beat_command(settings: Settings, extra: list[str]) -> list[str]:
    # The schedule is static (the real one lives in Postgres), so beat's state file only
    # records last-run times; keep it out of the working directory, one per installation.
    key = hashlib.sha256(f"{settings.database_url} {settings.redis_url}".encode()).hexdigest()
    schedule = Path(tempfile.gettempdir()) / f"newsagg-beat-{os.getuid()}-{key[:12]}"
    return celery_command(
        settings, "beat", "--loglevel", settings.log_level, "--schedule", str(schedule), *extra
    )


@app.command(context_settings=PASSTHROUGH)
def worker(ctx: typer.Context) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`)."""
    settings = settings_or_exit()
    os.execv(sys.executable, worker_command(settings, list(ctx.args)))


@app.command(context_settings=PASSTHROUGH)
def beat(ctx: typer.Context) -> None:
    """Run Celery beat (run exactly one; extra arguments go to `celery beat`)."""
    settings = settings_or_exit()
    os.execv(sys.executable, beat_command(settings, list(ctx.args)))


@app.command()
def run() -> None:
    """Run one worker and one beat in the foreground; Ctrl-C stops both cleanly."""
    settings = settings_or_exit()
    # Each child in a process group of its own: Ctrl-C in a terminal signals only this
    # process, which sends each child one SIGTERM. A child that got the terminal's SIGINT
    # and then this SIGTERM could take the second while its interpreter was already exiting,
    # and print a traceback from its exit handlers.
    procs = [
        subprocess.Popen(worker_command(settings, []), process_group=0),
        subprocess.Popen(beat_command(settings, []), process_group=0),
    ]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                # SIGTERM is Celery's warm shutdown: running tasks finish, unacked requeue.
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while any(proc.poll() is None for proc in procs):
        if not stopping and any(proc.poll() is not None for proc in procs):
            err.print("[red]a child process exited; stopping the other[/]")
            code = 1
            stop(signal.SIGTERM, None)
        time.sleep(0.3)
    raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
