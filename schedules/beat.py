"""The beat schedule: a metronome, nothing else.

Beat only fires the dispatcher (and housekeeping); which source is due lives in Postgres
(`sources.next_crawl_at`), so two beats or a restart never crawl a source twice at once.
"""

from __future__ import annotations

from typing import Any

from workers.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "dispatch-due-sources": {
            "task": "workers.dispatch_due_sources",
            "schedule": settings.dispatch_every,
            # A tick that waited longer than one period is stale: the next one does its work.
            "options": {"expires": settings.dispatch_every},
        },
        # Sends lost work again (crawl and URL leases) and prunes old fetches rows.
        "housekeeping": {
            "task": "workers.housekeeping",
            "schedule": settings.housekeeping_every,
            "options": {"expires": settings.housekeeping_every},
        },
    }
