"""The BigPanda simulator's incident side: correlation, search, activities, resolve, comment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bridge.sim import serve_app
from bridge.sim.bigpanda import ALERTS_PATH, BigPandaSimulator
from bridge.sim.bigpanda_incidents import DEFAULT_USER_API_KEY, IncidentStore

TOKEN = "org-token"
USER = {"Authorization": f"Bearer {DEFAULT_USER_API_KEY}"}


@pytest.fixture
async def sim() -> AsyncIterator[tuple[BigPandaSimulator, str, aiohttp.ClientSession]]:
    bp = BigPandaSimulator(token=TOKEN, incidents=IncidentStore(rate_limit=None))
    async with serve_app(bp.app) as url, aiohttp.ClientSession(base_url=url) as http:
        yield bp, url, http


async def post(http: aiohttp.ClientSession, *alerts: dict) -> None:
    body = {"app_key": "k", "alerts": [{"timestamp": 1_700_000_000 + i, **a}
                                       for i, a in enumerate(alerts)]}
    async with http.post(ALERTS_PATH, json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status in (201, 204)


def alert(n: int, host: str, status: str = "critical") -> dict:
    return {"status": status, "host": host, "check": f"c{n}", "incident_identifier": f"id-{n}",
            "panther_alert_id": f"p{n}"}


class TestCorrelation:
    """Alerts group by primary property while the incident is open; all ok resolves it."""

    async def test_grouping_and_resolution_by_alerts(self, sim) -> None:
        bp, _, http = sim
        await post(http, alert(1, "h1"), alert(2, "h1"), alert(3, "h2"))
        store = bp.incidents
        assert store.incident_of("id-1").id == store.incident_of("id-2").id
        assert store.incident_of("id-3").id != store.incident_of("id-1").id
        await post(http, {**alert(1, "h1", "ok"), "timestamp": 1_700_000_100})
        incident = store.incident_of("id-1")
        assert incident.active
        await post(http, {**alert(2, "h1", "ok"), "timestamp": 1_700_000_101})
        assert not incident.active
        assert [a["type"] for a in incident.activities] == ["incident_resolved_by_alerts"]
        # A new critical for the same host opens a new incident.
        await post(http, {**alert(2, "h1"), "timestamp": 1_700_000_102})
        assert store.incident_of("id-2").id != incident.id


class TestApi:
    """Incidents V2 with the User API key; the documented codes."""

    async def test_auth_and_search(self, sim) -> None:
        bp, _, http = sim
        await post(http, alert(1, "h1"), alert(2, "h2"))
        env = bp.incidents.environment_id
        path = f"/resources/v2.0/environments/{env}/incidents"
        async with http.get(path, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 401
        async with http.get(path, params={"expand": "alerts", "page_size": "11"},
                            headers=USER) as r:
            assert r.status == 400
        async with http.get(path, params={"expand": "alerts", "page_size": "1"},
                            headers=USER) as r:
            body = await r.json()
        assert body["total"] == 2 and len(body["items"]) == 1
        tags = body["items"][0]["alerts"][0]["tags"]
        assert {"name": "panther_alert_id", "value": "p2"} in tags
        async with http.get(path, params={"query": 'status = "ok"'}, headers=USER) as r:
            assert (await r.json())["total"] == 0
        async with http.get(path, params={"query": "severity > 3"}, headers=USER) as r:
            assert r.status == 400

    async def test_resolve_comment_activities(self, sim) -> None:
        bp, _, http = sim
        await post(http, alert(1, "h1"))
        incident = bp.incidents.incident_of("id-1")
        base = f"/resources/v2.0/environments/{bp.incidents.environment_id}/incidents/{incident.id}"
        async with http.post(base + "/comments", json={"comment": "hi"}, headers=USER) as r:
            assert r.status == 204
        async with http.post(base + "/resolve", json={"comments": "done"}, headers=USER) as r:
            assert r.status == 202
        async with http.post(base + "/resolve", json={}, headers=USER) as r:
            assert r.status == 409
        bp.incidents.comment_incident(incident.id, "noc-jane", "later")
        url = f"/resources/v2.0/incidents/{incident.id}/activities"
        async with http.get(url, headers=USER) as r:
            items = (await r.json())["items"]
        assert [a["type"] for a in items] == [
            "incident_commented", "incident_resolved_api", "incident_commented"]
        assert items[0]["created_by"] == "noc-jane"
        async with http.get(url, params={"types": "incident_resolved_api"}, headers=USER) as r:
            assert [a["params"] for a in (await r.json())["items"]] == [{"comment": "done"}]

    async def test_rate_limit(self) -> None:
        bp = BigPandaSimulator(token=TOKEN, incidents=IncidentStore(rate_limit=2))
        async with serve_app(bp.app) as url, aiohttp.ClientSession(base_url=url) as http:
            codes = []
            for _ in range(3):
                async with http.get("/resources/v2.0/environments", headers=USER) as r:
                    codes.append(r.status)
                    retry_after = r.headers.get("Retry-After")
        assert codes == [200, 200, 429] and retry_after == "1"
