"""Politeness shared by every worker on every host: robots.txt and per-host pacing in Redis.

Celery's own ``rate_limit`` is per worker process and per task type, so it cannot keep a
fleet polite to one site. Here the state lives in Redis, keyed by origin
(``scheme://host:port``, the unit robots.txt applies to):

- ``robots:<origin>``: the robots.txt body (or a verdict when it could not be read), cached
  with an expiry, parsed with protego; ``Crawl-delay`` raises the host's minimum gap.
- ``host:<origin>:next``: the earliest time (Redis server clock, ms) the next request may
  start. A Lua script checks and moves it atomically, so two workers never both go.
- ``host:<origin>:inflight``: a sorted set of leases (token → expiry) bounding requests in
  flight; a lease expires by itself if its worker dies.
- ``host:<origin>:failures``: consecutive failures, for exponential back-off.
- ``host:<origin>:tail``: the end of the turns reserved for requests that come back later
  (`Politeness.tickets`): a crawl's burst of one host's URLs is spread over its turns.

A worker that would have to wait longer than a moment does not sleep in its slot: it gets
the wait back (`HostBusy`) and the task is rescheduled.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from protego import Protego

from workers import metrics

if TYPE_CHECKING:
    import redis

    from workers.fetch import Fetcher, FetchResult
    from workers.settings import Settings

PREFIX = "newsagg:"
# Reserved turns are spaced by the host's gap plus this share of it (at most a second).
TURN_SLACK = 0.25
# robots.txt verdicts kept in each process, for this long, for at most this many origins.
LOCAL_ROBOTS_TTL = 60.0
LOCAL_ROBOTS_MAX = 10_000

# Atomically: drop expired leases; refuse if the host is at its concurrency limit or its
# next-allowed time is in the future (returning how long to wait), or, for a request
# without a reserved turn, if turns are reserved ahead (_TICKETS): it queues behind them;
# else take a lease and move the next-allowed time on by the minimum gap.
_ACQUIRE = """
local next_key, inflight_key, failures_key, tail_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local gap_ms, max_inflight, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local token, base_ms, cap_ms = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local has_turn = ARGV[7] == '1'
local failures = tonumber(redis.call('GET', failures_key) or '0')
if failures >= 2 then
  gap_ms = math.max(gap_ms, math.min(cap_ms, base_ms * 2 ^ math.min(failures, 20)))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now)
if redis.call('ZCARD', inflight_key) >= max_inflight then
  local first = redis.call('ZRANGE', inflight_key, 0, 0, 'WITHSCORES')
  local wait = math.min(tonumber(first[2]) - now, 1000)
  return {0, math.max(wait, 50), 0, failures}
end
local next_at = tonumber(redis.call('GET', next_key) or '0')
if next_at > now then
  return {0, next_at - now, 1, failures}
end
if not has_turn then
  local tail = tonumber(redis.call('GET', tail_key) or '0')
  if tail > now then
    return {0, tail - now, 1, failures}
  end
end
redis.call('SET', next_key, now + gap_ms, 'PX', gap_ms + 3600000)
redis.call('ZADD', inflight_key, now + lease_ms, token)
redis.call('PEXPIRE', inflight_key, lease_ms + 60000)
return {1, 0, 0, failures}
"""

# Reserve `count` turns of a host, `gap` apart, after every turn handed out or reserved so
# far; returns how long until the first. Tasks that would all wake at the host's next turn
# and all but one find it taken (a herd, each retry costing a message) get a turn each.
_TICKETS = """
local next_key, tail_key = KEYS[1], KEYS[2]
local gap_ms, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = math.max(now, tonumber(redis.call('GET', next_key) or '0'),
                       tonumber(redis.call('GET', tail_key) or '0'))
local tail = first + gap_ms * count
redis.call('SET', tail_key, tail, 'PX', tail - now + 3600000)
return first - now
"""

# Push the host's next-allowed time to at least now + delay (never pulls it earlier).
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 3600000)
end
return until_ms - now
"""


class HostBusy(Exception):
    """The host may not be asked now; try again after `wait` seconds."""

    def __init__(self, origin: str, wait: float, pacing: bool = True) -> None:
        super().__init__(f"{origin} is paced: next request allowed in {wait:.1f}s")
        self.origin = origin
        self.wait = wait
        # True when the host's gap (or a pause) is the reason, False for its in-flight limit.
        self.pacing = pacing


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """How hard one host may be asked. Defaults come from Settings; a source may override.

    >>> HostPolicy(min_delay=1.0, max_inflight=2)
    HostPolicy(min_delay=1.0, max_inflight=2)
    """

    min_delay: float
    max_inflight: int


@dataclass(frozen=True, slots=True)
class RobotsVerdict:
    allowed: bool
    crawl_delay: float | None = None
    reason: str | None = None


def origin_of(url: str) -> str:
    """scheme://host[:port], lower-cased: the unit robots.txt and pacing apply to."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date.

    >>> parse_retry_after("120")
    120.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Politeness:
    """robots.txt and fleet-wide per-host pacing. One per process, sharing one Redis."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self._acquire = client.register_script(_ACQUIRE)
        self._pause = client.register_script(_PAUSE)
        self._tickets = client.register_script(_TICKETS)
        self._local_robots: dict[str, tuple[float, str, str, Protego | None]] = {}
        # Hosts whose failure count was non-zero at their last acquire.
        self._failing: set[str] = set()

    # -- robots.txt ------------------------------------------------------------------

    def robots(self, url: str, fetcher: Fetcher) -> RobotsVerdict:
        """May url be fetched by our user agent? Reads robots.txt once per origin per TTL."""
        origin = origin_of(url)
        kind, detail = self._robots_entry(origin, fetcher)
        if kind == "allow":
            return RobotsVerdict(True)
        if kind == "deny":
            return RobotsVerdict(False, reason=detail)
        rules = self._local_robots[origin][3] or Protego.parse(detail)
        agent = self.settings.user_agent
        delay = rules.crawl_delay(agent)
        crawl_delay = float(delay) if delay else None
        if rules.can_fetch(url, agent):
            return RobotsVerdict(True, crawl_delay)
        return RobotsVerdict(False, crawl_delay, f"disallowed by {origin}/robots.txt")

    def declared_sitemaps(self, origin: str, fetcher: Fetcher) -> list[str]:
        """The ``Sitemap:`` lines of the origin's robots.txt."""
        kind, detail = self._robots_entry(origin, fetcher)
        return list(Protego.parse(detail).sitemaps) if kind == "rules" else []

    def _robots_entry(self, origin: str, fetcher: Fetcher) -> tuple[str, str]:
        """(kind, detail) from the cache, fetching robots.txt on a miss: kind is "rules"
        (detail: the file), "allow" or "deny" (detail: why)."""
        local = self._local_robots.get(origin)
        if local is not None and local[0] > time.monotonic():
            return local[1], local[2]
        key = f"{PREFIX}robots:{origin}"
        raw = self.redis.get(key)
        if raw is not None:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            kind, _, detail = text.partition("\n")
        else:
            kind, detail = self._fetch_robots(origin, fetcher)
            ttl = self.settings.robots_error_ttl if kind == "deny" else self.settings.robots_ttl
            # One string "kind\ndetail" per origin.
            self.redis.set(key, f"{kind}\n{detail}".encode("utf-8", "replace"), ex=int(ttl))
        self._remember_robots(origin, kind, detail)
        return kind, detail

    def _remember_robots(self, origin: str, kind: str, detail: str) -> None:
        # A minute in the process saves a Redis read (and a parse) per article; a change is
        # seen by every worker within that minute.
        if len(self._local_robots) >= LOCAL_ROBOTS_MAX:
            self._local_robots.clear()
        rules = Protego.parse(detail) if kind == "rules" else None
        self._local_robots[origin] = (time.monotonic() + LOCAL_ROBOTS_TTL, kind, detail, rules)

    def _fetch_robots(self, origin: str, fetcher: Fetcher) -> tuple[str, str]:
        # RFC 9309: 4xx means no rules; a server error or no answer means "assume full
        # disallow" (cached briefly, so a passing outage costs minutes, not a day).
        result = fetcher.fetch(f"{origin}/robots.txt", expect="text", max_bytes=500_000)
        metrics.PAGES_FETCHED.labels("robots", result.status).inc()
        metrics.FETCH_SECONDS.labels("robots").observe(result.elapsed_ms / 1000)
        if result.ok:
            return "rules", result.body.decode("utf-8", "replace")
        if result.http_status is not None and 400 <= result.http_status < 500:
            return "allow", ""
        if result.status in ("blocked_address", "invalid_url", "unsupported_content"):
            # The article fetch fails for the same reason and says so itself; a robots.txt
            # served as HTML is a site's mistake, not a rule.
            return "allow", ""
        return "deny", f"robots.txt unreadable ({result.status}: {result.error}); assuming disallow"

    # -- pacing ------------------------------------------------------------------------

    def acquire(
        self,
        origin: str,
        policy: HostPolicy,
        crawl_delay: float | None = None,
        has_turn: bool = False,
    ) -> str:
        """Take a request slot for origin or raise HostBusy with the wait (one round trip:
        the back-off of a failing host is applied in the same script). `has_turn`: the
        request comes back at a turn reserved for it (tickets), so it goes before requests
        that have none; without one it queues behind the reserved turns."""
        gap = max(policy.min_delay, crawl_delay or 0.0)
        token = uuid.uuid4().hex
        lease_ms = int((self.settings.total_timeout + 30) * 1000)
        got, wait_ms, pacing, failures = self._acquire(
            keys=[
                f"{PREFIX}host:{origin}:next",
                f"{PREFIX}host:{origin}:inflight",
                f"{PREFIX}host:{origin}:failures",
                f"{PREFIX}host:{origin}:tail",
            ],
            args=[
                int(gap * 1000),
                policy.max_inflight,
                lease_ms,
                token,
                int(self.settings.host_delay * 1000),
                int(self.settings.host_backoff_max * 1000),
                1 if has_turn else 0,
            ],
        )
        if int(failures):
            self._failing.add(origin)
        else:
            self._failing.discard(origin)
        if int(got) == 1:
            return token
        raise HostBusy(origin, int(wait_ms) / 1000, pacing=bool(int(pacing)))

    def tickets(
        self, origin: str, policy: HostPolicy, count: int, crawl_delay: float | None = None
    ) -> list[float]:
        """Reserve `count` future turns of the host for requests that will come back then
        (a task's countdown); the seconds until each. The turns are not a lease: the
        request still takes its slot when it comes, so the host's gap holds whatever
        happens meanwhile."""
        # The acquire that found the host busy has just read its failure count: a host that
        # was not failing then needs no second read for its back-off.
        backoff = self._backoff(origin) if origin in self._failing else 0.0
        gap = max(policy.min_delay, crawl_delay or 0.0, backoff)
        # Turns a little more than a gap apart: a request that starts late (its worker was
        # busy) pushes the host's next turn back by as much, and the request after it, on
        # time for its own turn, would find the host not ready and go round again.
        spacing = int((gap + min(gap * TURN_SLACK, 1.0)) * 1000)
        first = int(
            self._tickets(
                keys=[f"{PREFIX}host:{origin}:next", f"{PREFIX}host:{origin}:tail"],
                args=[spacing, count],
            )
        )
        return [(first + i * spacing) / 1000 for i in range(count)]

    def release(self, origin: str, token: str) -> None:
        self.redis.zrem(f"{PREFIX}host:{origin}:inflight", token)

    @contextmanager
    def slot(
        self,
        url: str,
        policy: HostPolicy,
        crawl_delay: float | None = None,
        max_wait: float | None = None,
        has_turn: bool = False,
    ) -> Iterator[None]:
        """Hold a request slot for url's host; waits up to max_wait seconds in place.

        When the host is not ready, HostBusy says when to come back: at a turn reserved for
        this request (not at the host's next turn, where all that wait for it would meet).
        A request that comes back at its turn says so with `has_turn`: it goes first.
        """
        origin = origin_of(url)
        limit = self.settings.max_inline_wait if max_wait is None else max_wait
        deadline = time.monotonic() + limit
        while True:
            try:
                token = self.acquire(origin, policy, crawl_delay, has_turn)
                break
            except HostBusy as busy:
                if time.monotonic() + busy.wait <= deadline:
                    time.sleep(busy.wait)
                    continue
                if busy.pacing:
                    # Come back at a turn of one's own, not at the next one with the herd.
                    busy.wait = max(busy.wait, self.tickets(origin, policy, 1, crawl_delay)[0])
                raise
        try:
            yield
        finally:
            self.release(origin, token)

    def pause(self, origin: str, seconds: float) -> float:
        """Keep the whole fleet off origin for at least `seconds`."""
        return (
            float(self._pause(keys=[f"{PREFIX}host:{origin}:next"], args=[int(seconds * 1000)]))
            / 1000
        )

    def _backoff(self, origin: str) -> float:
        failures = int(self.redis.get(f"{PREFIX}host:{origin}:failures") or 0)
        if failures < 2:
            return 0.0
        return float(
            min(self.settings.host_backoff_max, self.settings.host_delay * 2 ** min(failures, 20))
        )

    def record(self, url: str, result: FetchResult) -> str | None:
        """Learn from a response: Retry-After on 429/503 pauses the host, repeated failures
        back it off exponentially, a success resets. Returns a note for the fetches row."""
        origin = origin_of(url)
        key = f"{PREFIX}host:{origin}:failures"
        note = None
        if result.http_status in (429, 503):
            delay = parse_retry_after(result.retry_after)
            delay = min(
                delay if delay is not None else self.settings.host_delay * 30,
                self.settings.host_backoff_max,
            )
            self.pause(origin, delay)
            note = f"host paused for {delay:g}s" + (
                f" (Retry-After: {result.retry_after})" if result.retry_after else ""
            )
        if result.retryable:
            failures = self.redis.incr(key)
            self.redis.expire(key, int(self.settings.host_backoff_max) + 600)
            self._failing.add(origin)
            if failures >= 2 and note is None:
                note = (
                    f"{failures} failures in a row: host backed off to {self._backoff(origin):g}s"
                )
        elif (
            result.http_status is not None
            and result.http_status < 500
            and (origin in self._failing)
        ):
            # Only a host that was failing has a count to reset (acquire saw it).
            self.redis.delete(key)
            self._failing.discard(origin)
        return note


def policy_for(
    settings: Settings,
    min_delay: float | None,
    max_inflight: int | None,
) -> HostPolicy:
    """The global defaults, overridden by a source's own settings where it has them."""
    return HostPolicy(
        min_delay=settings.host_delay if min_delay is None else min_delay,
        max_inflight=settings.host_concurrency if max_inflight is None else max_inflight,
    )
