"""Tests of bridge.panther.writes against mocked Panther responses (PANTHER.md "Writes")."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from aioresponses_compat import MockHttp

from bridge.errors import PermanentApiError
from bridge.metrics import Metrics
from bridge.panther.client import PantherClient
from bridge.panther.writes import PantherWrites, PermissionMissingError

API = "https://api.acme.runpanther.net"
TOKEN = "pan-secret-token-0123456789"


@pytest.fixture
def writes(session: aiohttp.ClientSession, metrics: Metrics) -> PantherWrites:
    return PantherWrites(PantherClient(session, api_url=API, api_token=TOKEN, metrics=metrics))


def bodies(mock: MockHttp, method: str, path: str) -> list[dict]:
    return [orjson.loads(c.kwargs["data"]) for (m, url), cs in mock.requests.items()
            for c in cs if m == method and url.path == path]


class TestUpdateAlerts:
    """PATCH /alerts in chunks of at most 25 ids; a 204 with or without a JSON content type."""

    async def test_chunks_of_25(self, mock: MockHttp, writes: PantherWrites) -> None:
        for _ in range(2):
            mock.patch(f"{API}/alerts", status=204, content_type="application/json")
        ids = [f"a{i:02d}" for i in range(30)]
        assert await writes.update_alerts(ids, "RESOLVED") == 2
        sent = bodies(mock, "PATCH", "/alerts")
        assert [len(b["ids"]) for b in sent] == [25, 5]
        assert [i for b in sent for i in b["ids"]] == ids
        assert {b["status"] for b in sent} == {"RESOLVED"}

    async def test_204_without_content_type(self, mock: MockHttp, writes: PantherWrites) -> None:
        mock.patch(f"{API}/alerts", status=204, body=b"", content_type="")
        assert await writes.update_alerts(["a1"], "CLOSED") == 1

    @pytest.mark.parametrize("status", [401, 403])
    async def test_refusal_names_the_permission(
        self, mock: MockHttp, writes: PantherWrites, status: int
    ) -> None:
        mock.patch(f"{API}/alerts", status=status, payload={"message": "forbidden"})
        with pytest.raises(PermissionMissingError) as caught:
            await writes.update_alerts(["a1"], "RESOLVED")
        assert "Manage Alerts" in str(caught.value) and "alert-modify" in str(caught.value)
        assert TOKEN not in str(caught.value)


class TestComments:
    """POST /alert-comments returns the comment; 404 for an unknown alert is permanent."""

    async def test_add_comment(self, mock: MockHttp, writes: PantherWrites) -> None:
        mock.post(f"{API}/alert-comments", payload={"id": "c1", "alertId": "a1", "body": "hi"})
        comment = await writes.add_comment("a1", "hi")
        assert comment["id"] == "c1"
        assert bodies(mock, "POST", "/alert-comments") == [
            {"alertId": "a1", "body": "hi", "format": "PLAIN_TEXT"}
        ]

    async def test_unknown_alert(self, mock: MockHttp, writes: PantherWrites) -> None:
        mock.post(f"{API}/alert-comments", status=404, payload={"message": "alert not found"})
        with pytest.raises(PermanentApiError) as caught:
            await writes.add_comment("nope", "hi")
        assert not caught.value.retriable

    async def test_token_self(self, mock: MockHttp, writes: PantherWrites) -> None:
        mock.get(f"{API}/api-tokens/self", payload={"id": "tok-1", "name": "bridge"})
        assert (await writes.token_self())["id"] == "tok-1"
