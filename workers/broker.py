"""What the broker holds: queue depths, and which ids still have a message somewhere.

Kombu's Redis transport keeps each queue as a list named after it and every message a
worker has taken but not acknowledged in the hash ``unacked`` (with its delivery time in the
sorted set ``unacked_index``); a worker that dies with messages taken leaves them there until
the visibility timeout (an hour) puts them back. Housekeeping asks this module before it
sends work again, so a message that is merely waiting in a long queue is never doubled,
while one that was lost (Redis restarted, its worker killed) comes back within the lease.

It also holds the transport the workers use: kombu's, with one Redis client per connection
pool instead of a new one for every publish, delivery and acknowledgement (`Transport`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import redis
from kombu.transport import redis as kombu_redis

UNACKED, UNACKED_INDEX = "unacked", "unacked_index"
# Kombu keeps priority p of a queue in the list "<queue>\x06\x16<p>" (p > 0), "<queue>" for 0.
_SEP = "\x06\x16"
PRIORITY_STEPS = range(10)


def queue_lists(queue: str) -> list[str]:
    """The Redis lists holding a queue's messages, one per priority."""
    return [queue if p == 0 else f"{queue}{_SEP}{p}" for p in PRIORITY_STEPS]


_ARGS = re.compile(r"^\((\d+),?")
_BATCH = 1000


def queue_depths(client: redis.Redis, queues: Iterable[str]) -> dict[str, int]:
    names = list(queues)
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            for key in queue_lists(name):
                pipe.llen(key)
        pipe.hlen(UNACKED)
        lengths = pipe.execute()
    steps = len(PRIORITY_STEPS)
    depths = {
        name: sum(int(n) for n in lengths[i * steps : (i + 1) * steps])
        for i, name in enumerate(names)
    }
    depths[UNACKED] = int(lengths[-1])
    return depths


def _first_arg(message: Any, task: str) -> int | None:
    """The first positional argument of a task message of `task` (raw or decoded), if any."""
    try:
        decoded = json.loads(message) if isinstance(message, str | bytes) else message
        headers = decoded["headers"]
    except (ValueError, KeyError, TypeError):
        return None
    if headers.get("task") != task:
        return None
    match = _ARGS.match(str(headers.get("argsrepr", "")))
    return int(match[1]) if match else None


def held_ids(client: redis.Redis, queue: str, task: str, unacked_within: float) -> set[int]:
    """First arguments (url or crawl ids) of `task` messages still waiting in `queue`, or
    taken by a worker less than `unacked_within` seconds ago (older ones were taken by a
    worker that is gone: the lease is longer than any task runs or waits)."""
    held: set[int] = set()
    for key in queue_lists(queue):
        start = 0
        while True:
            batch = client.lrange(key, start, start + _BATCH - 1)
            for raw in batch:
                found = _first_arg(raw, task)
                if found is not None:
                    held.add(found)
            if len(batch) < _BATCH:
                break
            start += _BATCH
    recent: list[bytes] = list(
        client.zrangebyscore(UNACKED_INDEX, time.time() - unacked_within, "+inf")  # type: ignore[arg-type]
    )
    for offset in range(0, len(recent), _BATCH):
        tags = recent[offset : offset + _BATCH]
        for entry in client.hmget(UNACKED, tags):
            if entry is None:
                continue
            try:
                message = json.loads(entry)[0]
            except (ValueError, IndexError, TypeError):
                continue
            found = _first_arg(message, task)
            if found is not None:
                held.add(found)
    return held


class Channel(kombu_redis.Channel):
    """Kombu's Redis channel, building its synchronous client once per connection pool.

    Kombu builds a new `redis.Redis` for each message it publishes, delivers and
    acknowledges: about 160 µs of CPU each (the client's table of response callbacks), three
    times per stored URL, more than the Redis commands themselves. A client holds nothing but
    its pool (redis-py's clients are thread-safe, taking a connection per command), so one
    serves every call; a new pool (kombu makes one after a fork or a disconnect) gets a new
    client.
    """

    _shared: tuple[redis.ConnectionPool, redis.Redis] | None = None
    _params: dict[bool, dict[str, Any]] | None = None

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """Kombu's, remembered: a channel closing after its connection dropped can find
        the transport already detached from its connection (Celery's consumer collects
        the connection, then closes it), and kombu then reads the Redis address from
        None while requeueing the channel's unacknowledged messages. The AttributeError
        is no connection error, so it escapes Celery's reconnect and stops the worker
        ("Unrecoverable error"); with the address remembered, the messages go back. (Only
        for redis://, the one scheme this transport serves: see transport_for.)"""
        if self._params is None:
            self._params = {}
        if self.connection.client is None and asynchronous in self._params:
            return dict(self._params[asynchronous])
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        self._params[asynchronous] = dict(params)
        return params

    def close(self) -> None:
        try:
            super().close()  # type: ignore[no-untyped-call]
        finally:
            # kombu drops its pools before requeueing unacknowledged messages, which may
            # need a new one: drop that too.
            self._disconnect_pools()  # type: ignore[no-untyped-call]
            self._shared = None

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-any-return,no-untyped-call]
        pool = self.pool
        if self._shared is None or self._shared[0] is not pool:
            self._shared = (pool, super()._create_client())  # type: ignore[no-untyped-call]
        return self._shared[1]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the Channel above (Celery's `broker_transport`)."""

    Channel = Channel


def transport_for(url: str) -> str | None:
    """Celery's `broker_transport` for a Redis URL: the Transport above for redis://, else
    kombu's choice (None). Given a transport, kombu no longer reads the URL's scheme, and its
    TLS defaults for rediss:// and Sentinel's channel are keyed on that scheme."""
    return f"{__name__}:Transport" if urlsplit(url).scheme == "redis" else None
