"""Logging: one format for Celery's own lines and ours, text for people or JSON for machines.

Everything goes through the standard library (Celery's handlers, at their real levels) and is
rendered by one structlog ProcessorFormatter: `NEWSAGG_LOG_FORMAT=json` gives one JSON object
per line, anything else readable text. Context bound with structlog.contextvars (the task
id and name at task start, the source, crawl id, URL id and URL around a page) is added to
every line logged meanwhile, Celery's and libraries' lines included.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from structlog.typing import Processor


def _processors(fmt: str) -> tuple[list[Processor], Processor]:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, pad_event_to=0, exception_formatter=structlog.dev.plain_traceback
        )
    return shared, renderer


def formatter(fmt: str) -> logging.Formatter:
    shared, renderer = _processors(fmt)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def configure_logging(level: str, fmt: str, loggers: list[logging.Logger] | None = None) -> None:
    """Route structlog through the standard library and give every handler of `loggers`
    (default: the root logger) the one formatter."""
    shared, _renderer = _processors(fmt)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.getLogger("newsagg").setLevel(level.upper())
    # Warnings (Celery's about running as root, libraries' deprecations) become log lines.
    logging.captureWarnings(True)
    # One line per HTTP request drowns the log; fetches rows record every request anyway.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # trafilatura logs every page it discards at WARNING; the fetches row says why already.
    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    # Celery's two lines per task (received, succeeded) cost more than the task's bookkeeping;
    # newsagg writes one line per URL with its outcome instead. Failures still show.
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    form = formatter(fmt)
    for logger in loggers or [logging.getLogger()]:
        for handler in logger.handlers:
            handler.setFormatter(form)


def json_safe_say(msg: str, f: TextIO = sys.__stderr__) -> None:  # type: ignore[assignment]
    """Celery's shutdown messages, printed from its signal handlers, as JSON lines too.

    Like Celery's own safe_say it writes straight to the stream: no logging lock is taken
    inside a signal handler.
    """
    line = {
        "event": msg.strip(),
        "level": "warning",
        "logger": "celery.apps.worker",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    print(json.dumps(line), file=f, flush=True)


def prepare(fmt: str) -> None:
    """Before Celery sets its logging up: in JSON mode, what it prints on its own (shutdown
    messages, warnings raised before its handlers exist) comes out as JSON lines too."""
    if fmt != "json":
        return
    import celery.apps.worker

    celery.apps.worker.safe_say = json_safe_say
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        root.addHandler(handler)
        configure_logging("INFO", fmt)


def bind_task(task_id: str | None, task: str | None) -> None:
    """Start a task's log context (nothing of the previous task's survives)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task)


def end_task(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
