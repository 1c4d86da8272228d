"""The frontier: which of a crawl's URLs go to the queue now, and which wait their turn.

A crawl lists its URLs in a burst, mostly of one host, and a host takes one request per gap
(workers/politeness.py). Queued all at once, the workers would reach a host's URLs one
after the other, find the host not ready, and send each back as a countdown task held by
the worker: with 50 URLs a host that costs more than the pages themselves (README,
"Performance"). So:

- the first PRIORITIES URLs of each host in the crawl go to the queue at once, with their
  rank as priority (every host's first URL, then every host's second, …);
- the rest wait in Redis, in the same interleaved order, in one list per crawl, and each URL
  of the crawl that is done sends the next one: it reaches the back of the queue, and by the
  time the workers get to it the host's turn has come.

The list is a shortcut, not the record: the URLs are pending in PostgreSQL all along. Its
URLs count as held for housekeeping (waiting, not lost), as messages in a queue do. A list
lost with Redis leaves its URLs unheld: past the crawl's lease housekeeping sends them. A
crawl idle past its lease whose list is there (its chains stopped with their workers, or
only slow) gets new chains from it (tasks.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from workers.politeness import PREFIX, origin_of

# Priorities of the article queue (the Redis transport's priority_steps): rank r within its
# host goes with priority r, so hosts interleave; also how many URLs of a host go at once.
PRIORITIES = 10
# A crawl's list outlives any crawl; past it, the lease sends what was left.
TTL = 86_400.0


def _key(crawl_id: int) -> str:
    return f"{PREFIX}frontier:{crawl_id}"


def plan(urls: Iterable[tuple[int, str]]) -> tuple[list[tuple[int, int]], list[int]]:
    """(url id, priority) of the URLs to queue now, and the ids of the rest, in the order
    they should follow (by rank within their host, then as listed).

    >>> plan([(1, "http://a/x"), (2, "http://a/y"), (3, "http://b/x")])
    ([(1, 0), (2, 1), (3, 0)], [])
    >>> now, later = plan([(i, f"http://{'ab'[i % 2]}/{i}") for i in range(24)])
    >>> len(now), later
    (20, [20, 21, 22, 23])
    """
    ranks: dict[str, int] = {}
    now: list[tuple[int, int]] = []
    later: list[tuple[int, int, int]] = []
    for position, (url_id, url) in enumerate(urls):
        origin = origin_of(url)
        rank = ranks.get(origin, 0)
        ranks[origin] = rank + 1
        if rank < PRIORITIES:
            now.append((url_id, rank))
        else:
            later.append((rank, position, url_id))
    later.sort()
    return now, [url_id for _, _, url_id in later]


def hold_back(client: redis.Redis, crawl_id: int, url_ids: list[int], ttl: float) -> None:
    """Keep the crawl's later URLs for next(), replacing what a redelivered crawl task left."""
    key = _key(crawl_id)
    with client.pipeline() as pipe:
        pipe.delete(key)
        if url_ids:
            pipe.rpush(key, *url_ids)
            pipe.expire(key, max(int(ttl), 1))
        pipe.execute()


def next_urls(client: redis.Redis, crawl_id: int, count: int = 1) -> list[int]:
    """Up to `count` of the crawl's next waiting URLs, taken off its list."""
    raw = client.lpop(_key(crawl_id), count)
    return [int(r) for r in raw or []]


def listed(client: redis.Redis) -> set[int]:
    """Every URL waiting in a frontier list: not lost, only waiting its turn."""
    found: set[int] = set()
    for key in client.scan_iter(match=f"{PREFIX}frontier:*", count=1000):
        found.update(int(r) for r in client.lrange(key, 0, -1))
    return found


def drop(client: redis.Redis, crawl_ids: Iterable[int]) -> None:
    """Forget the waiting lists of these crawls (abandoned: the next crawl of their source
    takes their URLs over)."""
    keys = [_key(c) for c in crawl_ids]
    if keys:
        client.delete(*keys)


def waiting(client: redis.Redis, crawl_id: int) -> int:
    """How many of the crawl's URLs wait in its list."""
    return int(client.llen(_key(crawl_id)))
