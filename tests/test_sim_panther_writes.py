"""The Panther simulator's writes: PATCH /alerts, comments, the calling token, denied routes."""

from __future__ import annotations

import aiohttp

from bridge.sim import serve_app
from bridge.sim.panther import PantherSimulator

KEY = {"X-API-Key": "t"}


class TestWrites:
    """What the two-way sync writes lands as Panther records it."""

    async def test_patch_comments_token(self) -> None:
        sim = PantherSimulator(token="t")
        a, b = (x["id"] for x in sim.generate(2))
        async with serve_app(sim.app) as url, aiohttp.ClientSession(base_url=url) as http:
            async with http.patch("/alerts", json={"ids": [a], "status": "RESOLVED"},
                                  headers=KEY) as r:
                assert r.status == 204 and r.content_type == "application/json"
            assert sim.alerts[a]["status"] == "RESOLVED"
            async with http.get("/api-tokens/self", headers=KEY) as r:
                token = await r.json()
            assert sim.alerts[a]["updatedBy"] == {"id": token["id"], "type": "api-token"}
            for i in range(3):
                async with http.post("/alert-comments", headers=KEY,
                                     json={"alertId": b, "body": f"n{i}"}) as r:
                    assert r.status == 200
                    assert (await r.json())["createdBy"]["id"] == token["id"]
            async with http.post("/alert-comments", json={"alertId": "zz", "body": "x"},
                                 headers=KEY) as r:
                assert r.status == 404
            async with http.get("/alert-comments", params={"alert-id": b, "limit": "2"},
                                headers=KEY) as r:
                first = await r.json()
            async with http.get("/alert-comments", headers=KEY,
                                params={"alert-id": b, "limit": "2", "cursor": first["next"]}
                                ) as r:
                second = await r.json()
            assert [c["body"] for c in first["results"] + second["results"]] == ["n0", "n1", "n2"]
            assert second["next"] is None
            async with http.get("/alert-comments", params={"alert-id": b, "limit": "51"},
                                headers=KEY) as r:
                assert r.status == 400
            sim.writes.deny("PATCH /alerts")
            async with http.patch("/alerts", json={"ids": [b], "status": "RESOLVED"},
                                  headers=KEY) as r:
                assert r.status == 403
            assert sim.alerts[b]["status"] == "OPEN"
