"""Keeping an eye on the processes: heartbeats, the metrics endpoint, health checks, and the
shutdown grace period.

- Every worker's main process writes a heartbeat to Redis (``newsagg:heartbeat:worker:<node>``)
  from Celery's own event-loop timer, so a worker whose loop is stuck stops beating; beat
  writes ``newsagg:heartbeat:beat:<host>`` from its scheduler tick. Each key expires after
  three periods: a missing key is a dead or stuck process. `newsagg health` and
  `newsagg status` read them.
- The same timer watches the worker's consumer (StallWatch): one that takes nothing while its
  queues hold messages and a process is free has gone catatonic, as kombu's Redis transport
  has done after some broker reconnects (celery#8030, kombu#2492, kombu#2629: alive,
  beating, answering pings, never asking Redis for another message). It raises
  ConsumerStalled in the event loop, which Celery handles as a lost broker connection: a new
  connection and transport, and consumption again.
- The same timer folds the metrics files of dead pool children (metrics.compact) and the
  main process serves /metrics (metrics.serve).
- SIGTERM starts Celery's warm shutdown, which waits for running tasks without a bound; after
  settings.shutdown_grace the worker sends itself SIGQUIT, Celery's cold shutdown, which
  hands unfinished tasks back to the broker (they are unacknowledged: late acks), so a
  container stops within its grace period and nothing is lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis
from celery import bootsteps, signals
from celery.beat import PersistentScheduler
from celery.worker import state as worker_state

from workers import broker, metrics
from workers.settings import Settings, get_settings

log = logging.getLogger("newsagg.monitor")
PREFIX = "newsagg:heartbeat:"
# A heartbeat key lives this many periods: one missed beat is not yet a dead process.
TTL_PERIODS = 3


def heartbeat_key(kind: str, name: str) -> str:
    return f"{PREFIX}{kind}:{name}"


def write_heartbeat(
    client: redis.Redis, kind: str, name: str, every: float, **details: Any
) -> None:
    """Record that this process is alive now, with what an operator wants to see."""
    payload = {"name": name, "host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}
    payload.update(details)
    client.set(heartbeat_key(kind, name), json.dumps(payload), ex=max(1, int(every * TTL_PERIODS)))


def read_heartbeats(client: redis.Redis, kind: str) -> list[dict[str, Any]]:
    """The live heartbeats of one kind ("worker" or "beat"), with their age in seconds."""
    beats = []
    keys = sorted(client.scan_iter(match=heartbeat_key(kind, "*"), count=100))
    for raw in client.mget(keys) if keys else []:
        if raw is None:
            continue  # expired between scan and get
        beat = json.loads(raw)
        beat["age"] = max(0.0, time.time() - float(beat["at"]))
        beats.append(beat)
    return beats


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_database(settings: Settings, timeout: float = 5.0) -> Check:
    from workers import store

    try:
        with psycopg.connect(
            settings.database_url, connect_timeout=max(1, int(timeout)), autocommit=True
        ) as conn:
            store.check_schema(conn)
        return Check("database", True, "reachable, schema present")
    except psycopg.Error as exc:
        return Check("database", False, str(exc).strip().splitlines()[0][:300])


def check_redis(client: redis.Redis) -> Check:
    try:
        client.ping()
        return Check("redis", True, "reachable")
    except redis.RedisError as exc:
        return Check("redis", False, str(exc)[:300])


def check_heartbeat(client: redis.Redis, kind: str, host: str | None = None) -> Check:
    """A fresh heartbeat of this kind (on `host` when given: a container checking itself)."""
    try:
        beats = read_heartbeats(client, kind)
    except redis.RedisError as exc:
        return Check(kind, False, f"cannot read heartbeats: {exc}"[:300])
    if host is not None:
        beats = [b for b in beats if b.get("host") == host]
    if not beats:
        where = f" on {host}" if host else ""
        return Check(kind, False, f"no {kind} heartbeat{where} (dead, stuck or not started)")
    freshest = min(beats, key=lambda b: b["age"])
    names = ", ".join(sorted(str(b["name"]) for b in beats))
    return Check(kind, True, f"{len(beats)} alive ({names}); last beat {freshest['age']:.0f}s ago")


# -- the worker's main process -------------------------------------------------------------


class ConsumerStalled(redis.ConnectionError):
    """The worker's consumer took nothing for too long while work waited for it. A
    connection error, so that Celery's event loop lets it through and the consumer
    reconnects as after a broker outage."""


@dataclass
class StallWatch:
    """Tells a consumer that has stopped taking messages from one that has nothing to take
    or no room for more: stalled means that for `after` seconds, at every look, its queues
    held messages, it had a free process, and it took none."""

    after: float
    _since: float | None = field(default=None, init=False)
    _taken: int | None = field(default=None, init=False)
    _connection: object = field(default=None, init=False)

    def stalled(
        self, now: float, waiting: int, free: int, taken: int, connection: object = None
    ) -> bool:
        """One look: `waiting` messages in its queues, `free` processes, `taken` messages
        received since it started, `connection` which consumer connection this is (a new one
        starts the watch again: the time spent reconnecting is no stall). True once per
        stall (the watch starts again after)."""
        if waiting <= 0 or free <= 0 or taken != self._taken or connection != self._connection:
            self._since = None
            self._taken = taken
            self._connection = connection
            return False
        if self._since is None:
            self._since = now
            return False
        if now - self._since < self.after:
            return False
        self._since = None
        return True


# Messages the consumer has received (the task_received signal fires in the main process).
_received = [0]


def _count_received(**_: Any) -> None:
    _received[0] += 1


signals.task_received.connect(_count_received)


class WorkerMonitor(bootsteps.StartStopStep):  # type: ignore[misc]
    """Heartbeat, metrics compaction and the /metrics endpoint, in the worker's main process."""

    requires = {"celery.worker.components:Timer", "celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.settings = get_settings()
        self.tref: Any = None
        self.client: redis.Redis | None = None
        self.started_at = time.time()
        self.watch = StallWatch(self.settings.stall_after)
        self.stalls = 0

    def start(self, parent: Any) -> None:
        from workers.app import QUEUES

        self.client = redis.Redis.from_url(
            self.settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        metrics.serve(self.settings.metrics_port, QUEUES, self.settings.metrics_addr)
        self.beat(parent)
        self.tref = parent.timer.call_repeatedly(
            self.settings.heartbeat_every, self.beat, (parent,), priority=10
        )

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if self.client is not None:
            with contextlib.suppress(redis.RedisError):
                self.client.delete(heartbeat_key("worker", parent.hostname))
            self.client.close()
            self.client = None

    def beat(self, parent: Any) -> None:
        children = _pool_pids(parent)
        try:
            # Without the list of living children nothing is folded: a living child's file
            # must never be.
            if children is not None:
                metrics.compact([os.getpid(), *children])
        except Exception:  # metrics must never take the worker down
            log.exception("cannot compact the metrics files")
        if self.client is None:
            return
        try:
            write_heartbeat(
                self.client,
                "worker",
                parent.hostname,
                self.settings.heartbeat_every,
                processes=len(children or ()),
                concurrency=parent.concurrency,
                active=len(worker_state.active_requests),
                tasks=worker_state.all_total_count[0],
                started=self.started_at,
                stalls=self.stalls,
            )
        except redis.RedisError as exc:
            log.warning("cannot write the worker heartbeat: %s", exc)
        self.check_consumer(parent)

    def check_consumer(self, parent: Any) -> None:
        """Raise ConsumerStalled (see StallWatch) into the event loop running this timer."""
        consumer = getattr(parent.consumer, "task_consumer", None)
        if consumer is None or self.client is None or getattr(parent, "hub", None) is None:
            return  # connecting, or no event loop to raise into (eventlet, gevent)
        if worker_state.should_stop or worker_state.should_terminate:
            return  # shutting down: taking nothing is what it should do
        queues = [queue.name for queue in consumer.queues]
        try:
            depths = broker.queue_depths(self.client, queues)
            # Kombu's own test of the prefetch window (pool_shrink and autoscale narrow it
            # below the process count): a consumer that may take nothing is not stalled.
            can_take = consumer.channel.qos.can_consume()
        except redis.RedisError:
            return  # the broker is down: the consumer notices that itself
        except AttributeError:
            return  # its channel is closing
        waiting = sum(depths[name] for name in queues)
        # Requests held, running or waiting for a process (not those with an ETA, which
        # Celery counts apart): a pool with none free takes nothing, rightly.
        free = parent.concurrency - len(worker_state.reserved_requests) if can_take else 0
        connection = getattr(parent.consumer, "restart_count", None)
        if not self.watch.stalled(time.monotonic(), waiting, free, _received[0], connection):
            return
        self.stalls += 1
        log.error(
            "consumer stalled: %d messages waiting in %s and %d free processes, none taken "
            "for %.0fs; reconnecting to the broker",
            waiting,
            ",".join(queues),
            free,
            self.watch.after,
        )
        raise ConsumerStalled(f"took no message for {self.watch.after:.0f}s with {waiting} waiting")


def _pool_pids(parent: Any) -> list[int] | None:
    try:
        return [int(p) for p in parent.pool.info["processes"]]
    except Exception:
        return None


def arm_shutdown_grace(grace: float) -> None:
    """After `grace` seconds of warm shutdown, turn it cold (hand tasks back, exit)."""

    def escalate() -> None:
        time.sleep(grace)
        log.warning("tasks still running after %ss of shutdown: handing them back", grace)
        os.kill(os.getpid(), signal.SIGQUIT)

    threading.Thread(target=escalate, name="shutdown-grace", daemon=True).start()


# -- beat -------------------------------------------------------------------------------


class HeartbeatScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's file-backed scheduler, writing beat's heartbeat from its own tick: a beat
    whose loop stops stops beating."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = get_settings()
        self._client = redis.Redis.from_url(
            self._settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        self._next_beat = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval = float(super().tick(*args, **kwargs))
        now = time.monotonic()
        if now >= self._next_beat:
            self._next_beat = now + self._settings.heartbeat_every
            try:
                write_heartbeat(
                    self._client, "beat", socket.gethostname(), self._settings.heartbeat_every
                )
            except redis.RedisError as exc:
                log.warning("cannot write the beat heartbeat: %s", exc)
        return min(interval, self._settings.heartbeat_every)
