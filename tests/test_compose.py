"""docker-compose.yml and the Dockerfile, checked by parsing (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "init", "worker", "beat", "flower"}
    # Flower is optional: only with `--profile flower`
    assert services["flower"]["profiles"] == ["flower"]
    assert services["flower"]["entrypoint"][:3] == ["celery", "-A", "workers.app"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name in ("init", "worker", "beat"):
        assert services[name]["build"] == "."
        assert services[name]["image"] == "newsagg:latest"


def test_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    worker = services["worker"]["healthcheck"]["test"]
    assert worker[:3] == ["CMD", "newsagg", "health"] and "--local" in worker
    assert "worker" in worker[worker.index("--check") + 1].split(",")
    beat = services["beat"]["healthcheck"]["test"]
    assert "beat" in beat[beat.index("--check") + 1].split(",") and "--local" in beat


def test_metrics_and_shutdown_grace(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    env = compose["x-newsagg"]["environment"]
    assert worker["expose"] == [env["NEWSAGG_METRICS_PORT"]]
    assert any(p.endswith(":" + env["NEWSAGG_METRICS_PORT"]) for p in worker["ports"])
    # Docker waits longer than the worker's own grace period before it kills
    assert int(worker["stop_grace_period"].rstrip("s")) > int(env["NEWSAGG_SHUTDOWN_GRACE"])
    assert worker["stop_signal"] == "SIGTERM"


def test_schema_applied_and_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounts = services["postgres"]["volumes"]
    assert any(m.startswith("./schema.sql:/docker-entrypoint-initdb.d/") for m in mounts)
    assert (ROOT / "schema.sql").is_file()
    assert services["init"]["command"] == ["newsagg db init && newsagg sources load"]
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("worker", "beat"):
        deps = services[name]["depends_on"]
        assert deps["init"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"


def test_commands_are_cli_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["worker"]["command"][0] == "worker"
    assert services["beat"]["command"] == ["beat"]
    # Exactly one beat: never replicated.
    assert "deploy" not in services["beat"] or services["beat"]["deploy"].get("replicas", 1) == 1
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["newsagg"\]', dockerfile, re.M)
    assert "constraints.txt" in dockerfile


def test_environment_points_at_services(compose: dict[str, Any]) -> None:
    env = compose["services"]["worker"]["environment"]
    assert "@postgres:5432/newsagg" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert "noeviction" in compose["services"]["redis"]["command"]
