"""Politeness against real Redis and a loopback server: robots.txt, pacing, back-off."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from tests.conftest import REDIS_URL
from workers.fetch import Fetcher, FetchResult
from workers.politeness import (
    HostBusy,
    HostPolicy,
    Politeness,
    origin_of,
    parse_retry_after,
)
from workers.settings import Settings

ROBOTS = {
    "/rules": (200, b"User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n"),
    "/none": (404, b""),
    "/broken": (503, b""),
}


def make_server(robots: tuple[int, bytes]) -> ThreadingHTTPServer:
    status, body = robots

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/robots.txt":
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.server.robots_hits += 1  # type: ignore[attr-defined]
            else:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.robots_hits = 0  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def polite(redis_db: redis.Redis, settings: Settings) -> Politeness:
    return Politeness(redis_db, settings)


@pytest.fixture
def servers() -> Iterator[dict[str, str]]:
    started = {name: make_server(spec) for name, spec in ROBOTS.items()}
    yield {name: f"http://127.0.0.1:{s.server_address[1]}" for name, s in started.items()}
    for s in started.values():
        s.shutdown()


def test_robots_rules_and_crawl_delay(
    polite: Politeness, fetcher: Fetcher, servers: dict[str, str]
) -> None:
    base = servers["/rules"]
    allowed = polite.robots(f"{base}/news/a", fetcher)
    assert allowed.allowed and allowed.crawl_delay == 2.0
    denied = polite.robots(f"{base}/private/x", fetcher)
    assert not denied.allowed and "robots.txt" in (denied.reason or "")


def test_robots_fetched_once_per_origin(
    polite: Politeness, fetcher: Fetcher, servers: dict[str, str], redis_db: redis.Redis
) -> None:
    base = servers["/rules"]
    for i in range(5):
        polite.robots(f"{base}/news/{i}", fetcher)
    assert redis_db.ttl(f"newsagg:robots:{origin_of(base)}") > 3600


def test_robots_404_allows_and_5xx_denies_briefly(
    polite: Politeness,
    fetcher: Fetcher,
    servers: dict[str, str],
    redis_db: redis.Redis,
    settings: Settings,
) -> None:
    assert polite.robots(f"{servers['/none']}/a", fetcher).allowed
    verdict = polite.robots(f"{servers['/broken']}/a", fetcher)
    assert not verdict.allowed and "assuming disallow" in (verdict.reason or "")
    ttl = redis_db.ttl(f"newsagg:robots:{origin_of(servers['/broken'])}")
    assert 0 < ttl <= settings.robots_error_ttl


def test_pacing_keeps_min_gap(polite: Politeness) -> None:
    origin = "http://pacing.example"
    policy = HostPolicy(min_delay=0.3, max_inflight=5)
    polite.release(origin, polite.acquire(origin, policy))
    with pytest.raises(HostBusy) as busy:
        polite.acquire(origin, policy)
    assert 0 < busy.value.wait <= 0.3
    time.sleep(busy.value.wait + 0.02)
    polite.acquire(origin, policy)


def test_pacing_limits_inflight(polite: Politeness) -> None:
    origin = "http://inflight.example"
    policy = HostPolicy(min_delay=0.0, max_inflight=2)
    first = polite.acquire(origin, policy)
    polite.acquire(origin, policy)
    with pytest.raises(HostBusy):
        polite.acquire(origin, policy)
    polite.release(origin, first)
    polite.acquire(origin, policy)


def test_slot_waits_inline_for_short_gaps(polite: Politeness) -> None:
    policy = HostPolicy(min_delay=0.2, max_inflight=1)
    started = time.monotonic()
    for _ in range(3):
        with polite.slot("http://slot.example/a", policy):
            pass
    assert time.monotonic() - started >= 0.38


def test_pacing_is_shared_between_clients(redis_db: redis.Redis, settings: Settings) -> None:
    """Two Politeness objects (two processes' worth) on one Redis see one schedule."""
    other = Politeness(redis.Redis.from_url(REDIS_URL), settings)
    mine = Politeness(redis_db, settings)
    policy = HostPolicy(min_delay=5, max_inflight=10)
    mine.acquire("http://shared.example", policy)
    with pytest.raises(HostBusy):
        other.acquire("http://shared.example", policy)


def test_retry_after_pauses_host(polite: Politeness) -> None:
    url = "http://busy.example/a"
    result = FetchResult(
        url=url,
        status="http_error",
        http_status=429,
        retry_after="3",
        retryable=True,
        error="HTTP 429",
    )
    note = polite.record(url, result)
    assert note and "paused for 3s" in note
    with pytest.raises(HostBusy) as busy:
        polite.acquire(origin_of(url), HostPolicy(min_delay=0, max_inflight=5))
    assert 2.0 < busy.value.wait <= 3.0


def test_repeated_failures_back_off_and_success_resets(
    polite: Politeness, settings: Settings
) -> None:
    url = "http://flaky.example/a"
    failure = FetchResult(url=url, status="timeout", retryable=True, error="slow")
    polite.record(url, failure)
    polite.record(url, failure)
    note = polite.record(url, failure)
    assert note and "backed off" in note
    assert polite._backoff(origin_of(url)) == settings.host_delay * 8
    polite.record(url, FetchResult(url=url, status="ok", http_status=200))
    assert polite._backoff(origin_of(url)) == 0


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    now = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
    assert parse_retry_after("Fri, 17 May 2024 12:01:00 GMT", now) == 60.0
    assert parse_retry_after("Fri, 17 May 2024 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_origin_of() -> None:
    assert origin_of("HTTPS://News.Example.com/a?b") == "https://news.example.com"
    assert origin_of("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080"


def test_tickets_spread_a_burst_over_the_hosts_turns(polite: Politeness) -> None:
    origin = "http://burst.example"
    policy = HostPolicy(min_delay=0.5, max_inflight=2)
    token = polite.acquire(origin, policy)  # the host's turn is taken now
    waits = polite.tickets(origin, policy, 4)
    assert 0.3 < waits[0] <= 0.5  # from its next turn on
    # a gap apart, and a little more (a late start must not make the next request miss its turn)
    assert [round(b - a, 3) for a, b in itertools.pairwise(waits)] == [0.625, 0.625, 0.625]
    # the next burst lines up behind the reserved turns, not on top of them
    later = polite.tickets(origin, policy, 1)
    assert later[0] >= waits[-1] + 0.625 - 0.01
    polite.release(origin, token)


def test_a_task_sent_back_gets_a_turn_of_its_own(polite: Politeness) -> None:
    policy = HostPolicy(min_delay=1.0, max_inflight=5)
    with polite.slot("http://herd.example/a", policy):
        pass
    waits = []
    for _ in range(3):  # three tasks that find the host busy, one after the other
        with (
            pytest.raises(HostBusy) as busy,
            polite.slot("http://herd.example/b", policy, max_wait=0),
        ):
            pass
        assert busy.value.pacing
        waits.append(busy.value.wait)
    # not all at the next turn (where two of three would find it taken again)
    assert waits[1] - waits[0] > 0.9 and waits[2] - waits[1] > 0.9


def test_a_reserved_turn_goes_before_a_request_without_one(polite: Politeness) -> None:
    policy = HostPolicy(min_delay=0.3, max_inflight=5)
    with polite.slot("http://turns.example/a", policy):
        pass
    # a request finds the host paced and is given a turn of its own
    with (
        pytest.raises(HostBusy) as busy,
        polite.slot("http://turns.example/b", policy, max_wait=0),
    ):
        pass
    time.sleep(busy.value.wait)
    # at that turn, a newcomer without one queues behind it instead of taking it ...
    with (
        pytest.raises(HostBusy) as newcomer,
        polite.slot("http://turns.example/c", policy, max_wait=0),
    ):
        pass
    assert newcomer.value.pacing and newcomer.value.wait > 0.2
    # ... and the request that holds the turn gets the host at once
    started = time.monotonic()
    with polite.slot("http://turns.example/b", policy, max_wait=0, has_turn=True):
        pass
    assert time.monotonic() - started < 0.1
