"""Adaptive polling, back-off and hints (pure functions; the clock is a parameter)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from workers.schedule import Bounds, cache_max_age, next_interval, source_hint

BOUNDS = Bounds(
    timedelta(minutes=5),
    timedelta(hours=6),
    unhealthy_after=5,
    unhealthy_interval=timedelta(days=1),
)
MIN = timedelta(minutes=1)


def interval(new: int, failures: int = 0, hint: timedelta | None = None) -> timedelta:
    return next_interval(
        new_last_week=new, consecutive_failures=failures, bounds=BOUNDS, hint=hint
    ).interval


def test_busy_feed_polled_often_quiet_feed_rarely() -> None:
    assert interval(5000) == BOUNDS.minimum  # 7d/5000 ≈ 2 min → clamped to 5 min
    assert interval(168) == timedelta(hours=1)  # one article an hour
    assert interval(28) == BOUNDS.maximum  # 7d/28 = 6 h
    assert interval(3) == BOUNDS.maximum  # 7d/3 = 56 h → clamped
    assert interval(0) == BOUNDS.maximum  # nothing new in a week


def test_interval_moves_with_publishing_rate() -> None:
    rates = [0, 7, 28, 84, 168, 672, 2016]
    intervals = [interval(r) for r in rates]
    assert intervals == sorted(intervals, reverse=True)


def test_backoff_doubles_until_maximum_then_unhealthy() -> None:
    base = interval(168)
    assert interval(168, failures=1) == base * 2
    assert interval(168, failures=2) == base * 4
    assert interval(168, failures=4) == BOUNDS.maximum
    decision = next_interval(new_last_week=168, consecutive_failures=5, bounds=BOUNDS)
    assert not decision.healthy and decision.interval == timedelta(days=1)
    assert "unhealthy" in decision.reason


def test_recovery_restores_normal_interval() -> None:
    assert interval(168, failures=0) == timedelta(hours=1)
    assert next_interval(new_last_week=168, consecutive_failures=0, bounds=BOUNDS).healthy


def test_hints_are_a_lower_bound_capped_at_maximum() -> None:
    assert interval(5000, hint=timedelta(minutes=30)) == timedelta(minutes=30)
    assert interval(168, hint=timedelta(minutes=10)) == timedelta(hours=1)  # shorter: ignored
    assert interval(168, hint=timedelta(days=30)) == BOUNDS.maximum


def test_jitter_spreads_within_ten_percent() -> None:
    low = next_interval(new_last_week=168, consecutive_failures=0, bounds=BOUNDS, jitter=0.0)
    high = next_interval(new_last_week=168, consecutive_failures=0, bounds=BOUNDS, jitter=0.99)
    assert low.interval == timedelta(minutes=54)
    assert timedelta(minutes=65) < high.interval <= timedelta(minutes=66)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("max-age=600", 600),
        ("public, max-age=3600, must-revalidate", 3600),
        ("s-maxage=120", 120),
        ("no-cache, max-age=600", None),
        (None, None),
        ("private", None),
    ],
)
def test_cache_max_age(header: str | None, expected: int | None) -> None:
    result = cache_max_age(header)
    assert result == (timedelta(seconds=expected) if expected is not None else None)


def test_source_hint_takes_the_longest() -> None:
    assert source_hint(1800, "max-age=600", None) == timedelta(minutes=30)
    assert source_hint(None, "max-age=600", 3600.0) == timedelta(hours=1)
    assert source_hint(None, None, None) is None
