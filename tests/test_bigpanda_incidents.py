"""Tests of bridge.bigpanda.incidents against mocked BigPanda responses (BIGPANDA.md)."""

from __future__ import annotations

import re

import aiohttp
import pytest
from aioresponses_compat import MockHttp

from bridge.bigpanda.incidents import BigPandaIncidents
from bridge.errors import AuthError, RateLimitedError
from bridge.metrics import Metrics

API = "https://api.bigpanda.io"
KEY = "user-api-key-0123456789"
SEARCH = re.compile(r"^https://api\.bigpanda\.io/resources/v2\.0/environments/env1/incidents\?.*$")


@pytest.fixture
def client(session: aiohttp.ClientSession, metrics: Metrics) -> BigPandaIncidents:
    return BigPandaIncidents(session, api_url=API, api_key=KEY, environment_id="env1", rate=0,
                             metrics=metrics)


class TestSearch:
    """The Incidents V2 search: last-change order, expand=alerts with pages of 10 at most."""

    async def test_params(self, mock: MockHttp, client: BigPandaIncidents) -> None:
        mock.get(SEARCH, payload={"total": 1, "items": [{"id": "i1"}]})
        total, items = await client.search(since=100, page_size=50)
        assert (total, items) == (1, [{"id": "i1"}])
        (call,) = [c for cs in mock.requests.values() for c in cs]
        params = dict(call.kwargs["params"])
        assert params == {"sort_by": "last_change", "page": "1", "page_size": "10",
                          "from": "100", "expand": "alerts"}
        assert call.kwargs["headers"]["Authorization"] == f"Bearer {KEY}"

    async def test_429_is_retried_after_retry_after(
        self, mock: MockHttp, client: BigPandaIncidents, metrics: Metrics
    ) -> None:
        mock.get(SEARCH, status=429, headers={"Retry-After": "0"})
        mock.get(SEARCH, payload={"total": 0, "items": []})
        assert await client.search() == (0, [])
        assert metrics.registry.get_sample_value(
            "bridge_retries_total", {"target": "bigpanda", "reason": "rate_limited"}) == 1
        assert metrics.registry.get_sample_value(
            "bridge_http_requests_total",
            {"target": "bigpanda", "endpoint": "/resources/v2.0/environments/{env}/incidents",
             "code": "429"}) == 1

    async def test_429_gives_up(self, mock: MockHttp, session: aiohttp.ClientSession) -> None:
        client = BigPandaIncidents(session, api_url=API, api_key=KEY, environment_id="env1",
                                   rate=0, max_429_retries=1)
        for _ in range(2):
            mock.get(SEARCH, status=429, headers={"Retry-After": "0"})
        with pytest.raises(RateLimitedError):
            await client.search()

    async def test_401_names_the_key(self, mock: MockHttp, client: BigPandaIncidents) -> None:
        mock.get(SEARCH, status=401, payload={"error": "unauthorized"})
        with pytest.raises(AuthError) as caught:
            await client.search()
        assert "sync_back.api_key" in str(caught.value) and KEY not in str(caught.value)


class TestIncidentCalls:
    """Activities, resolve (409 when already resolved) and comment."""

    async def test_resolve_409(self, mock: MockHttp, client: BigPandaIncidents) -> None:
        url = f"{API}/resources/v2.0/environments/env1/incidents/i1/resolve"
        mock.post(url, status=202, payload={"status": 202, "data": {}})
        mock.post(url, status=409, payload={"error": "already resolved"})
        assert await client.resolve("i1", "done") is True
        assert await client.resolve("i1", "done") is False

    async def test_activities(self, mock: MockHttp, client: BigPandaIncidents) -> None:
        mock.get(re.compile(r".*/resources/v2\.0/incidents/i1/activities\?.*"),
                 payload={"items": [{"id": "a2"}, {"id": "a1"}]})
        assert [a["id"] for a in await client.activities("i1")] == ["a2", "a1"]
