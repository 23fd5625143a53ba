"""Tests of bridge.bigpanda.client against mocked BigPanda responses (shared/api/BIGPANDA.md)."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from aioresponses_compat import MockHttp

from bridge import errors
from bridge.bigpanda.client import Accepted, BigPandaClient, JobState
from bridge.metrics import Metrics

API = "https://api.bigpanda.io"
ALERTS = f"{API}/data/v2/alerts"
TOKEN = "bp-org-token-abcdef0123456789"
BATCH = orjson.dumps(
    {
        "app_key": "app-123",
        "alerts": [
            {"status": "critical", "host": "web-1", "check": "Root login", "timestamp": 1700000000}
        ],
    }
)


@pytest.fixture
def client(session: aiohttp.ClientSession, metrics: Metrics) -> BigPandaClient:
    return BigPandaClient(session, api_url=API + "/", api_token=TOKEN, metrics=metrics)


def only_call(mock: MockHttp) -> tuple[str, str, Any]:
    [(method, url)] = list(mock.requests)
    [call] = mock.requests[(method, url)]
    return method, str(url), call


def count(metrics: Metrics, endpoint: str, code: str) -> float | None:
    labels = {"target": "bigpanda", "endpoint": endpoint, "code": code}
    return metrics.registry.get_sample_value("bridge_http_requests_total", labels)


class TestPostAlerts:
    """Any 2xx is success; a 202 names the job to follow."""

    async def test_201(self, mock: MockHttp, client: BigPandaClient) -> None:
        """201 is accepted, no job."""
        mock.post(ALERTS, status=201, body=b"whatever, undocumented")
        assert await client.post_alerts(BATCH) == Accepted(status=201, job_url=None)

    async def test_204_duplicate_is_success(self, mock: MockHttp, client: BigPandaClient) -> None:
        """204 (an exact duplicate) is success too."""
        mock.post(ALERTS, status=204)
        assert await client.post_alerts(BATCH) == Accepted(status=204, job_url=None)

    async def test_200_with_json(self, mock: MockHttp, client: BigPandaClient) -> None:
        """A 2xx other than 201/204/202-with-job counts when its body is JSON."""
        mock.post(ALERTS, status=200, payload={"status": "ok"})
        assert (await client.post_alerts(BATCH)).status == 200

    async def test_201_body_is_never_read(self, mock: MockHttp, client: BigPandaClient) -> None:
        """201 is documented: accepted whatever its (undocumented) body."""
        mock.post(ALERTS, status=201, body="<html>created</html>", content_type="text/html")
        assert await client.post_alerts(BATCH) == Accepted(status=201)

    async def test_202_relative_location(self, mock: MockHttp, client: BigPandaClient) -> None:
        """A relative Location is resolved against api_url."""
        mock.post(ALERTS, status=202, headers={"Location": "/resources/v1.0/jobs/j-1"})
        assert await client.post_alerts(BATCH) == Accepted(
            status=202, job_url=f"{API}/resources/v1.0/jobs/j-1"
        )

    async def test_202_absolute_location(self, mock: MockHttp, client: BigPandaClient) -> None:
        """An absolute Location is kept as is."""
        job = "https://jobs.bigpanda.io/resources/v2.1/alert-enrichments-jobs/j-2"
        mock.post(ALERTS, status=202, headers={"Location": job})
        assert await client.post_alerts(BATCH) == Accepted(status=202, job_url=job)

    async def test_202_without_location(self, mock: MockHttp, client: BigPandaClient) -> None:
        """A 202 without Location has no job to follow."""
        mock.post(ALERTS, status=202, payload={"status": 202, "data": {}})
        assert await client.post_alerts(BATCH) == Accepted(status=202, job_url=None)

    async def test_request_exact(self, mock: MockHttp, client: BigPandaClient) -> None:
        """POST to /data/v2/alerts, Bearer token, JSON content type, body byte-identical."""
        mock.post(ALERTS, status=201)
        await client.post_alerts(BATCH)
        method, url, call = only_call(mock)
        assert (method, url) == ("POST", ALERTS)
        assert call.kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert call.kwargs["headers"]["Content-Type"] == "application/json"
        assert call.kwargs["data"] == BATCH
        assert type(call.kwargs["data"]) is bytes

    async def test_metrics(
        self, mock: MockHttp, client: BigPandaClient, metrics: Metrics
    ) -> None:
        """Counted under target bigpanda, endpoint /data/v2/alerts, with the status code."""
        mock.post(ALERTS, status=201)
        mock.post(ALERTS, status=204)
        await client.post_alerts(BATCH)
        await client.post_alerts(BATCH)
        assert count(metrics, "/data/v2/alerts", "201") == 1
        assert count(metrics, "/data/v2/alerts", "204") == 1


class TestPostFaults:
    """Errors come back typed, with the retriable flag, and never with the token."""

    async def raises(self, client: BigPandaClient, kind: type[errors.ApiError]) -> errors.ApiError:
        with pytest.raises(kind) as info:
            await client.post_alerts(BATCH)
        assert TOKEN not in str(info.value) and TOKEN not in info.value.body
        assert info.value.target == "bigpanda"
        return info.value

    @pytest.mark.parametrize(
        ("status", "body", "content_type"),
        [
            (200, "<html><body>Welcome to nginx!</body></html>", "text/html"),
            (200, "", "text/plain"),
            (202, "<html>queued</html>", "text/html"),
            (206, "not json", "text/plain"),
        ],
    )
    async def test_2xx_without_json_is_not_delivered(
        self, mock: MockHttp, client: BigPandaClient, status: int, body: str, content_type: str
    ) -> None:
        """A 2xx that is not BigPanda's (an HTML page, nothing) is retried, naming api_url."""
        mock.post(ALERTS, status=status, body=body, content_type=content_type)
        exc = await self.raises(client, errors.BadResponseError)
        assert exc.retriable and exc.status == status and exc.reason == "bad_response"
        assert "check bigpanda.api_url" in str(exc)
        assert f"answered HTTP {status}" in str(exc)
        if body:
            assert body[:20] in str(exc)

    @pytest.mark.parametrize("status", [404, 405])
    async def test_no_such_endpoint_is_retried(
        self, mock: MockHttp, client: BigPandaClient, status: int
    ) -> None:
        """404/405 on the Alerts API: the endpoint is not there, the events are not at fault."""
        mock.post(ALERTS, status=status, body="<html>Not Found</html>", content_type="text/html")
        exc = await self.raises(client, errors.BadResponseError)
        assert exc.retriable
        assert f"HTTP {status} (no such endpoint at {API})" in str(exc)
        assert "check bigpanda.api_url" in str(exc)

    async def test_html_page_quoting_the_token_is_redacted(
        self, mock: MockHttp, client: BigPandaClient
    ) -> None:
        """A proxy page that echoes our headers must not put the token in the message."""
        mock.post(ALERTS, status=200, body=f"<p>Bearer {TOKEN}</p>", content_type="text/html")
        await self.raises(client, errors.BadResponseError)

    async def test_400(self, mock: MockHttp, client: BigPandaClient) -> None:
        """400 is permanent and keeps BigPanda's explanation."""
        mock.post(ALERTS, status=400, payload={"status": "failure", "message": "status missing"})
        exc = await self.raises(client, errors.PermanentApiError)
        assert not exc.retriable and "status missing" in str(exc)

    @pytest.mark.parametrize("status", [401, 403])
    async def test_auth(self, mock: MockHttp, client: BigPandaClient, status: int) -> None:
        """401/403 say to check the token and the app key."""
        mock.post(ALERTS, status=status, payload={"message": "Unauthorized"})
        exc = await self.raises(client, errors.AuthError)
        assert "check bigpanda.api_token (an org Bearer token) and bigpanda.app_key" in str(exc)

    async def test_429(self, mock: MockHttp, client: BigPandaClient) -> None:
        """429 honours a Retry-After if BigPanda sends one."""
        mock.post(ALERTS, status=429, headers={"Retry-After": "3"})
        exc = await self.raises(client, errors.RateLimitedError)
        assert exc.retriable and exc.retry_after == 3.0

    async def test_500(self, mock: MockHttp, client: BigPandaClient) -> None:
        """500 is retried later."""
        mock.post(ALERTS, status=500)
        assert (await self.raises(client, errors.RetriableApiError)).retriable

    async def test_timeout(
        self, mock: MockHttp, client: BigPandaClient, metrics: Metrics
    ) -> None:
        """A timeout is a TransportError counted with code 0."""
        mock.post(ALERTS, exception=TimeoutError())
        exc = await self.raises(client, errors.TransportError)
        assert str(exc).startswith("bigpanda POST /data/v2/alerts failed: TimeoutError")
        assert count(metrics, "/data/v2/alerts", "0") == 1

    async def test_connection_error(self, mock: MockHttp, client: BigPandaClient) -> None:
        """A refused connection is a TransportError."""
        mock.post(ALERTS, exception=aiohttp.ClientConnectionError("Connection refused"))
        assert (await self.raises(client, errors.TransportError)).retriable


class TestGetJob:
    """A job's status is read from `status` or `data.status`, lowercased."""

    async def test_relative_url(
        self, mock: MockHttp, client: BigPandaClient, metrics: Metrics
    ) -> None:
        """A relative job URL is resolved against api_url; Bearer auth; endpoint label `job`."""
        mock.get(f"{API}/resources/v1.0/enrichment-jobs/j1", payload={"status": "DONE"})
        state = await client.get_job("/resources/v1.0/enrichment-jobs/j1")
        assert state == JobState(status="done", body={"status": "DONE"})
        _, _, call = only_call(mock)
        assert call.kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert count(metrics, "job", "200") == 1

    async def test_absolute_url(self, mock: MockHttp, client: BigPandaClient) -> None:
        """An absolute job URL is requested as is."""
        job = "https://jobs.example/resources/v2.1/alert-enrichments-jobs/j2"
        body = {"status": "started", "start_time": 1700000000}
        mock.get(job, payload=body)
        assert await client.get_job(job) == JobState(status="started", body=body)

    async def test_status_under_data(self, mock: MockHttp, client: BigPandaClient) -> None:
        """`{"data": {"status": ...}}` is accepted too."""
        body = {"data": {"status": "Failed", "error": "bad payload"}}
        mock.get(f"{API}/jobs/j3", payload=body)
        assert await client.get_job(f"{API}/jobs/j3") == JobState(status="failed", body=body)

    @pytest.mark.parametrize("body", [{}, {"status": 202, "data": {}}, {"data": "x"}])
    async def test_no_status(
        self, mock: MockHttp, client: BigPandaClient, body: dict[str, Any]
    ) -> None:
        """No textual status is the empty string, not an error."""
        mock.get(f"{API}/jobs/j4", payload=body)
        assert (await client.get_job(f"{API}/jobs/j4")).status == ""

    async def test_html_200(self, mock: MockHttp, client: BigPandaClient) -> None:
        """A non-JSON 200 is a bad response naming the job endpoint."""
        mock.get(f"{API}/jobs/j5", body="<html>oops</html>", content_type="text/html")
        with pytest.raises(errors.BadResponseError) as info:
            await client.get_job(f"{API}/jobs/j5")
        assert str(info.value) == (
            "bigpanda GET job returned a body that is not JSON (text/html): '<html>oops</html>'"
        )
        assert TOKEN not in str(info.value)

    async def test_not_an_object(self, mock: MockHttp, client: BigPandaClient) -> None:
        """A JSON list is a bad response."""
        mock.get(f"{API}/jobs/j6", payload=["done"])
        with pytest.raises(errors.BadResponseError, match="not an object"):
            await client.get_job(f"{API}/jobs/j6")

    async def test_error_status(self, mock: MockHttp, client: BigPandaClient) -> None:
        """A failing job poll raises the typed error."""
        mock.get(f"{API}/jobs/j7", status=503)
        with pytest.raises(errors.RetriableApiError) as info:
            await client.get_job(f"{API}/jobs/j7")
        assert str(info.value).startswith("bigpanda GET job answered HTTP 503")
