"""Configuration: environment variables → one frozen, validated Settings object per process.

Every knob has a local default so a developer can run everything with no configuration;
a bad value fails at start-up with a message naming the variable, never mid-crawl.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SOURCES_FILE = Path(__file__).resolve().parent.parent / "schedules" / "sources.toml"


class SettingsError(RuntimeError):
    """The environment holds a value newsagg cannot use; the message names the variable."""


class Settings(BaseSettings):
    """All configuration, read once from the environment (prefix ``NEWSAGG_``).

    ``DATABASE_URL`` and ``REDIS_URL`` keep their conventional unprefixed names.
    """

    model_config = SettingsConfigDict(env_prefix="NEWSAGG_", frozen=True, extra="ignore")

    database_url: str = Field(
        default="postgresql://localhost/newsagg", validation_alias="DATABASE_URL"
    )
    redis_url: str = Field(default="redis://localhost:6379/0", validation_alias="REDIS_URL")
    # Private, loopback and link-local targets are refused unless listed here: a feed is
    # untrusted input and must not be able to point the crawler at internal services.
    allowed_networks: Annotated[tuple[Network, ...], NoDecode] = ()

    user_agent: str = "newsagg/0.1 (+https://github.com/newsagg/newsagg; news aggregation crawler)"
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=15.0, gt=0)
    # A server trickling one byte every few seconds defeats a read timeout; this caps the
    # whole request, body included.
    total_timeout: float = Field(default=30.0, gt=0)
    max_redirects: int = Field(default=5, ge=0, le=20)
    max_page_bytes: int = Field(default=5_000_000, gt=1024)
    max_feed_bytes: int = Field(default=20_000_000, gt=1024)

    # Politeness (shared fleet-wide through Redis; a source may override delay/concurrency).
    host_delay: float = Field(default=1.0, ge=0, description="min seconds between requests")
    host_concurrency: int = Field(default=2, ge=1, description="requests in flight per host")
    host_backoff_max: float = Field(default=3600.0, gt=0)
    # A worker waits in place at most this long for its host's turn; longer waits
    # reschedule the task (at a turn of its own) instead of holding a worker process that
    # other hosts' pages could use.
    max_inline_wait: float = Field(default=0.25, ge=0)
    robots_ttl: int = Field(default=86_400, ge=60)
    robots_error_ttl: int = Field(default=600, ge=10)
    # Extraction bounds: a page whose tree is larger or deeper is refused before trafilatura.
    max_tree_elements: int = Field(default=100_000, ge=100)
    max_tree_depth: int = Field(default=200, ge=10)

    fetch_retries: int = Field(default=2, ge=0, le=10)
    retry_backoff: float = Field(default=30.0, ge=0)
    min_text_chars: int = Field(default=100, ge=1)

    # Scheduling (a source may override the interval bounds).
    min_interval: float = Field(default=300.0, gt=0, description="seconds")
    max_interval: float = Field(default=21_600.0, gt=0, description="seconds")
    unhealthy_after: int = Field(default=5, ge=1, description="consecutive failures")
    unhealthy_interval: float = Field(default=86_400.0, gt=0, description="seconds")
    dispatch_every: float = Field(default=10.0, gt=0)
    max_urls_per_crawl: int = Field(default=200, ge=1)
    # A crawl holds a lease, renewed by every step its workers take; when its workers die
    # the lease runs out and housekeeping closes it as 'abandoned', so the source can be
    # crawled again and its pending URLs are taken over.
    crawl_lease: float = Field(default=900.0, ge=1)
    # Re-dispatching a crawl's lost work this many times without progress abandons it.
    max_redispatches: int = Field(default=3, ge=0)
    housekeeping_every: float = Field(default=60.0, gt=0, description="seconds")
    # Surviving faults. A URL whose worker died this many times in the middle of it fails as
    # worker_lost (a page that kills its worker must not loop forever).
    max_claims: int = Field(default=3, ge=1)
    # Unexpected errors (a bug, a constraint violation) are retried this many times, with
    # the retry back-off, before the URL fails as worker_error.
    task_retries: int = Field(default=2, ge=0, le=10)
    # A task that cannot reach PostgreSQL or Redis waits in place this long (with growing
    # pauses) for them to come back before it is rescheduled.
    outage_wait: float = Field(default=60.0, ge=0)
    # SIGTERM: running tasks get this long to finish; then they are handed back to the broker.
    shutdown_grace: float = Field(default=30.0, ge=0)
    fetch_retention_days: float = Field(default=30.0, gt=0)
    backfill_max_urls: int = Field(default=5000, ge=1)
    backfill_max_sitemaps: int = Field(default=500, ge=1)
    # Deduplication and stories: near-duplicates and story matches are looked for only among
    # articles first seen within this window, so the cost stays flat as the table grows.
    story_window_days: float = Field(default=3.0, gt=0)
    # Texts shorter than this (in words) never match as near-duplicates on text alone.
    near_dup_min_words: int = Field(default=50, ge=1)

    # The workers' transactions commit without waiting for the WAL flush (PostgreSQL's
    # synchronous_commit for their sessions only). A server crash may then lose the last
    # fraction of a second of them, each whole (article, URL state and counters together):
    # their URLs are pending again and the leases send them again, so nothing is lost for
    # good, and each stored page saves two flushes (about a millisecond of CPU). "on" for
    # the server's default behaviour.
    db_synchronous_commit: Literal["on", "off", "local", "remote_write", "remote_apply"] = "off"

    sources_file: Path = DEFAULT_SOURCES_FILE
    log_level: str = "INFO"
    # text for people, json (one object per line) for log collectors.
    log_format: Literal["text", "json"] = "text"
    # Default: cores + 1 (cli.default_concurrency, chosen by measurement).
    worker_concurrency: int | None = Field(default=None, ge=1)

    # Observability. Each worker serves Prometheus metrics for all its processes on this port
    # (0: no endpoint); workers and beat write a heartbeat to Redis this often.
    metrics_port: int = Field(default=9810, ge=0, le=65535)
    metrics_addr: str = "0.0.0.0"
    heartbeat_every: float = Field(default=10.0, gt=0)
    # A worker that takes no message for this long while its queues hold some and it has a
    # free process reconnects to the broker (monitor.StallWatch).
    stall_after: float = Field(default=60.0, gt=0)
    # Task events for Flower (Flower also switches them on by itself while it runs).
    task_events: bool = False

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def parse_networks(cls, value: object) -> tuple[Network, ...]:
        if isinstance(value, tuple):
            return value
        if not isinstance(value, str):
            raise ValueError("expected comma-separated CIDRs, e.g. 127.0.0.0/8,10.1.0.0/16")
        networks = []
        for part in value.split(","):
            if part.strip():
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
        return tuple(networks)

    @model_validator(mode="after")
    def check_interval_bounds(self) -> Settings:
        if self.min_interval > self.max_interval:
            raise ValueError("NEWSAGG_MIN_INTERVAL must not exceed NEWSAGG_MAX_INTERVAL")
        return self

    @field_validator("database_url")
    @classmethod
    def check_database_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("redis_url")
    @classmethod
    def check_redis_url(cls, value: str) -> str:
        # unix:// is redis-py's, not kombu's: Celery's broker would refuse it at start.
        if not value.startswith(("redis://", "rediss://")):
            raise ValueError("must start with redis:// or rediss://")
        return value


def load_settings() -> Settings:
    """Read the environment now; raise SettingsError naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = field.upper() if field in ("DATABASE_URL", "REDIS_URL") else field
            if not name.isupper():
                name = "NEWSAGG_" + name.upper()
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
