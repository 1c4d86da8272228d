"""The worker's command line: the pool layout chosen by measurement is the default."""

from __future__ import annotations

import os

from workers.cli import default_concurrency, worker_command
from workers.settings import Settings


def _concurrency(command: list[str]) -> list[str]:
    return [command[i + 1] for i, a in enumerate(command) if a == "--concurrency"]


def test_default_is_one_process_more_than_cores() -> None:
    assert default_concurrency() == len(os.sched_getaffinity(0)) + 1
    assert _concurrency(worker_command(Settings(), [])) == [str(default_concurrency())]


def test_setting_and_argument_override_the_default() -> None:
    assert _concurrency(worker_command(Settings(worker_concurrency=5), [])) == ["5"]
    # an explicit argument is the only one given (Celery would take the last)
    assert _concurrency(worker_command(Settings(), ["--concurrency", "7"])) == ["7"]
    assert worker_command(Settings(), ["-c", "7"]).count("--concurrency") == 0
