"""Scheduling: when a source is crawled next. Pure functions; the clock is a parameter.

The schedule lives in Postgres (`sources.next_crawl_at`); after each read of a source the
crawl sets it from `next_interval`:

- **Adaptive** (Miniflux's entry-frequency rule): a source that published `n` new articles
  in the last week is polled every ``7 days / n``, clamped to [min, max] (defaults 5 min and
  6 h); a source with nothing new in a week is polled at the maximum.
- **Hints** from the source itself (RSS ``<ttl>``, ``Cache-Control: max-age``,
  ``Retry-After``) are a lower bound: the feed asked not to be asked sooner. Still capped at
  the maximum, so a feed claiming a ttl of a month is read every 6 h.
- **Failures** back off exponentially from the adaptive interval, doubling per consecutive
  failure, up to the maximum; after `unhealthy_after` failures in a row the source is
  unhealthy and only retried every `unhealthy_interval`. One success restores all.
- **Jitter** (±10 %) spreads sources that would otherwise fire in the same tick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

WEEK = timedelta(days=7)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*\"?(\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Bounds:
    """Interval bounds for one source (global settings, or the source's own).

    >>> Bounds(timedelta(minutes=5), timedelta(hours=6)).maximum
    datetime.timedelta(seconds=21600)
    """

    minimum: timedelta
    maximum: timedelta
    unhealthy_after: int = 5
    unhealthy_interval: timedelta = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Decision:
    interval: timedelta
    healthy: bool
    reason: str


def adaptive_interval(new_last_week: int, bounds: Bounds) -> timedelta:
    """7 days / new articles in the last week, clamped; no news means the maximum.

    >>> adaptive_interval(0, Bounds(timedelta(minutes=5), timedelta(hours=6)))
    datetime.timedelta(seconds=21600)
    >>> adaptive_interval(168, Bounds(timedelta(minutes=5), timedelta(hours=6)))
    datetime.timedelta(seconds=3600)
    """
    if new_last_week <= 0:
        return bounds.maximum
    return clamp(WEEK / new_last_week, bounds)


def clamp(interval: timedelta, bounds: Bounds) -> timedelta:
    return max(bounds.minimum, min(bounds.maximum, interval))


def next_interval(
    *,
    new_last_week: int,
    consecutive_failures: int,
    bounds: Bounds,
    hint: timedelta | None = None,
    jitter: float = 0.5,
) -> Decision:
    """The interval until the next scheduled crawl.

    `jitter` in [0, 1) maps to a factor 0.9 … 1.1 (0.5: none), so callers pass a random
    number and tests a fixed one.
    """
    base = adaptive_interval(new_last_week, bounds)
    reason = f"{new_last_week} new in 7 days"
    if consecutive_failures >= bounds.unhealthy_after:
        return Decision(
            bounds.unhealthy_interval,
            healthy=False,
            reason=f"unhealthy after {consecutive_failures} failures in a row",
        )
    if consecutive_failures > 0:
        base = min(bounds.maximum, base * 2**consecutive_failures)
        reason = f"backing off after {consecutive_failures} failure(s)"
    if hint is not None and hint > base:
        base = min(bounds.maximum, hint)
        reason += f"; the source asked for {int(hint.total_seconds())}s"
    factor = 0.9 + 0.2 * min(max(jitter, 0.0), 0.999)
    interval = clamp(base * factor, Bounds(bounds.minimum, bounds.maximum))
    return Decision(interval, healthy=True, reason=reason)


def cache_max_age(cache_control: str | None) -> timedelta | None:
    """``Cache-Control: max-age`` (or s-maxage) as a timedelta.

    >>> cache_max_age("public, max-age=600")
    datetime.timedelta(seconds=600)
    """
    if not cache_control or "no-cache" in cache_control.lower():
        return None
    match = _MAX_AGE.search(cache_control)
    return timedelta(seconds=int(match.group(1))) if match else None


def source_hint(
    ttl_seconds: int | None, cache_control: str | None, retry_after: float | None
) -> timedelta | None:
    """The longest of the source's own hints, or None when it gave none."""
    hints = [
        timedelta(seconds=ttl_seconds) if ttl_seconds else None,
        cache_max_age(cache_control),
        timedelta(seconds=retry_after) if retry_after else None,
    ]
    present = [h for h in hints if h is not None]
    return max(present) if present else None


def parse_duration(text: str) -> timedelta:
    """ "90s", "5m", "6h", "1d" or plain seconds → timedelta.

    >>> [d.total_seconds() for d in map(parse_duration, ["5m", "1.5h", "30"])]
    [300.0, 5400.0, 30.0]
    """
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 5m, 6h, 1d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])
