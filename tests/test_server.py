"""bridge.server: /metrics, /healthz and /readyz served from the live metrics and health record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from bridge.health import Health
from bridge.metrics import Metrics
from bridge.server import build_app
from bridge.sim import serve_app


@dataclass
class Served:
    health: Health
    metrics: Metrics
    session: aiohttp.ClientSession

    async def get(self, path: str) -> tuple[int, str, bytes]:
        async with self.session.get(path) as response:
            return response.status, response.headers["Content-Type"], await response.read()


@pytest.fixture
async def served(metrics: Metrics) -> AsyncIterator[Served]:
    health = Health(poll_interval=10.0)
    async with (
        serve_app(build_app(metrics, health)) as url,
        aiohttp.ClientSession(url) as session,
    ):
        yield Served(health, metrics, session)


class TestEndpoints:
    """Liveness is "the loop answers"; readiness is the health record; metrics are the registry."""

    async def test_healthz_answers_even_when_not_ready(self, served: Served) -> None:
        status, content_type, body = await served.get("/healthz")
        assert (status, orjson.loads(body)) == (200, {"status": "ok"})
        assert content_type.startswith("application/json")

    async def test_readyz_follows_the_health_record(self, served: Served) -> None:
        status, content_type, body = await served.get("/readyz")
        assert status == 503 and content_type.startswith("application/json")
        assert orjson.loads(body)["reasons"] == [
            "state database is not open", "no successful Panther poll yet",
        ]
        served.health.state_open = True
        served.health.poll_succeeded()
        status, _, body = await served.get("/readyz")
        details = orjson.loads(body)
        assert status == 200 and details["ready"] is True and details["reasons"] == []
        served.health.bigpanda_refused = "401"
        status, _, body = await served.get("/readyz")
        assert status == 503
        assert orjson.loads(body)["reasons"] == ["BigPanda refuses our credentials: 401"]

    async def test_metrics_is_the_live_registry(self, served: Served) -> None:
        served.metrics.events_received.labels(kind="alert").inc(3)
        status, content_type, body = await served.get("/metrics")
        assert status == 200 and content_type == CONTENT_TYPE_LATEST
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        assert samples[("bridge_events_received_total", (("kind", "alert"),))] == 3.0
        served.metrics.events_received.labels(kind="alert").inc()
        _, _, again = await served.get("/metrics")
        assert b'bridge_events_received_total{kind="alert"} 4.0' in again

    async def test_other_paths_and_methods_are_refused(self, served: Served) -> None:
        assert (await served.get("/"))[0] == 404
        async with served.session.post("/readyz") as response:
            assert response.status == 405
