"""The workers' kombu transport: kombu's Redis transport, one client per connection pool."""

from __future__ import annotations

import os

import pytest
import redis
from kombu import Connection, Exchange, Queue
from pydantic import ValidationError

from tests.conftest import REDIS_URL
from workers import broker
from workers.app import app
from workers.settings import Settings


def test_the_app_publishes_through_the_transport() -> None:
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, broker.Transport)


def test_transport_only_for_plain_redis_urls() -> None:
    """rediss:// keeps kombu's own transport and with it its TLS defaults."""
    assert broker.transport_for("redis://localhost:6379/3") == "workers.broker:Transport"
    for url in ("rediss://cache.example:6380/0", "sentinel://localhost:26379"):
        assert broker.transport_for(url) is None
    tls = Connection("rediss://cache.example:6380/0", transport=broker.transport_for("rediss://x"))
    assert tls.ssl
    plain = Connection(REDIS_URL, transport=broker.transport_for(REDIS_URL))
    assert plain.transport_cls == "workers.broker:Transport"


@pytest.mark.parametrize("url", ["unix:///run/redis.sock", "http://localhost:6379"])
def test_settings_take_only_urls_celerys_broker_reads(url: str) -> None:
    with pytest.raises(ValidationError, match="redis://"):
        Settings(redis_url=url)


def test_one_client_per_pool_and_a_new_one_with_a_new_pool(redis_db: redis.Redis) -> None:
    with Connection(REDIS_URL, transport=broker.Transport) as conn:
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        assert first.connection_pool is channel.pool
        # After a fork kombu drops its pools (and makes new ones on the next command).
        channel._after_fork()
        second = channel._create_client()
        assert second is not first and second.connection_pool is channel.pool
        # The asynchronous client (BRPOP) is kombu's own, as before.
        assert channel._create_client(asynchronous=True) is not second


def test_messages_go_and_come_back_through_the_shared_client(redis_db: redis.Redis) -> None:
    """Publish, consume, acknowledge and reject-requeue: kombu's paths that built a client."""
    queue = Queue(f"t-broker-{os.getpid()}", Exchange(f"t-broker-{os.getpid()}"), "k")
    with Connection(REDIS_URL, transport=broker.Transport) as conn:
        producer = conn.Producer()
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="k", declare=[queue])
        bound = queue(conn.default_channel)
        first = bound.get(no_ack=False)
        assert first is not None and first.payload == {"n": 0}
        first.requeue()
        seen = []
        for _ in range(3):
            message = bound.get(no_ack=False)
            assert message is not None
            seen.append(message.payload["n"])
            message.ack()
        assert sorted(seen) == [0, 1, 2]
        assert bound.get() is None
        assert redis_db.hlen(broker.UNACKED) == 0


@pytest.mark.parametrize("transport", ["kombu.transport.redis:Transport", broker.Transport])
def test_a_channel_closing_after_its_transport_was_detached_requeues(
    redis_db: redis.Redis, transport: object
) -> None:
    """The state a worker died in after a Redis restart (CI, 2026-12-07: "Unrecoverable
    error: AttributeError: 'NoneType' object has no attribute 'hostname'"): Celery's consumer
    had collected its connection, which detaches the transport from it (transport.client =
    None) and drops the channel's pools, and then closed it; the channel, requeueing a
    message it held, asked the detached transport for Redis' address. Kombu's own channel
    raises there; ours puts the message back."""
    name = f"t-detached-{os.getpid()}"
    queue = Queue(name, Exchange(name), "k")
    conn = Connection(REDIS_URL, transport=transport)
    channel = conn.default_channel
    conn.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key="k", declare=[queue])
    held = queue(channel).get(no_ack=False)
    assert held is not None
    channel._disconnect_pools()
    conn.transport.client = None  # what kombu's Connection._do_close_transport does
    if transport is broker.Transport:
        channel.close()
        assert redis_db.llen(name) == 1, "the message it held is back in its queue"
        assert channel._pool is None, "the pool made to requeue it is dropped again"
    else:
        # Kombu's bug, pinned: when this fails, kombu fixed it and the override can go.
        with pytest.raises(AttributeError, match="hostname"):
            channel.close()
