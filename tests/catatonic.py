"""`celery -A tests.catatonic worker`: the real worker, whose consumer goes catatonic after
the first message it receives, the way kombu's Redis transport has after some broker
reconnects (celery#8030, kombu#2492): the callback that asks Redis for the next message
(the transport's ``on_poll_start`` on the event loop's tick) is gone. The process lives,
beats and answers; it takes nothing more until its consumer reconnects, which builds a
new transport and registers a new callback. Only the first connection is broken.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps, signals

from workers.app import app

__all__ = ["app"]


class Catatonic(bootsteps.StartStopStep):  # type: ignore[misc]
    requires = {"celery.worker.components:Hub"}

    def start(self, worker: Any) -> None:
        hub = worker.hub
        broken = [False]

        def on_received(**_: Any) -> None:
            if broken[0]:
                return
            broken[0] = True
            for callback in list(hub.on_tick):
                name = getattr(callback, "__qualname__", "")
                if name == "Transport.register_with_event_loop.<locals>.on_poll_start":
                    hub.on_tick.discard(callback)

        signals.task_received.connect(on_received, weak=False)


app.steps["worker"].add(Catatonic)
