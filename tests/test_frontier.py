"""The frontier's plan for a crawl's URLs, and its lists in the real Redis. (The chains it
makes, URL after URL, run in the end-to-end and fault tests: tests/test_faults.py crawls 30
URLs a host, and loses Redis' data in the middle.)"""

from __future__ import annotations

import redis

from workers import frontier


def test_plan_sends_each_hosts_first_urls_and_holds_back_the_rest_interleaved() -> None:
    urls = [(i, f"http://a.example/{i}") for i in range(25)]
    urls += [(100 + i, f"http://b.example/{i}") for i in range(12)]
    now, later = frontier.plan(urls)
    assert [u for u, _ in now] == [*range(10), *range(100, 110)]
    assert [p for _, p in now] == [*range(10), *range(10)]
    # rank 10 of each host, then rank 11, …: the hosts still take turns
    assert later == [10, 110, 11, 111, *range(12, 25)]
    assert frontier.plan([]) == ([], [])


def test_hold_back_next_and_drop(redis_db: redis.Redis) -> None:
    frontier.hold_back(redis_db, 7, [3, 1, 2], ttl=60)
    assert frontier.waiting(redis_db, 7) == 3
    assert 0 < int(redis_db.ttl(f"{frontier.PREFIX}frontier:7")) <= 60  # type: ignore[arg-type]
    assert frontier.next_urls(redis_db, 7) == [3]
    # a redelivered crawl task plans again: its list replaces the one left
    frontier.hold_back(redis_db, 7, [5, 6], ttl=60)
    assert [frontier.next_urls(redis_db, 7) for _ in range(3)] == [[5], [6], []]
    frontier.hold_back(redis_db, 8, [9], ttl=60)
    frontier.hold_back(redis_db, 8, [], ttl=60)  # nothing held back this time
    assert frontier.next_urls(redis_db, 8) == []
    frontier.hold_back(redis_db, 9, [1, 2, 3], ttl=60)
    frontier.hold_back(redis_db, 11, [4], ttl=60)
    # housekeeping counts what waits in the lists as held, not lost
    assert frontier.listed(redis_db) == {1, 2, 3, 4}
    # and gives an idle crawl new chains from its list
    assert frontier.next_urls(redis_db, 9, 2) == [1, 2]
    assert frontier.next_urls(redis_db, 12, 2) == []
    frontier.drop(redis_db, [9, 10])
    frontier.drop(redis_db, [])
    assert frontier.waiting(redis_db, 9) == 0
