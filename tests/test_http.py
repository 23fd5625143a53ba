"""Tests of bridge.http: Retry-After parsing, and one request timed, counted and classified."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
import pytest
from aioresponses import aioresponses

from bridge import errors
from bridge.http import MAX_ERROR_BODY, HttpTarget, parse_retry_after
from bridge.metrics import Metrics

BASE = "https://api.acme.runpanther.net"
TOKEN = "pan-secret-token-0123456789"


@pytest.fixture
def panther(session: aiohttp.ClientSession, metrics: Metrics) -> HttpTarget:
    return HttpTarget(
        session,
        target="panther",
        base_url=BASE + "/",
        headers={"X-API-Key": TOKEN},
        timeout=5,
        metrics=metrics,
    )


def count(metrics: Metrics, target: str, endpoint: str, code: str) -> float | None:
    return metrics.registry.get_sample_value(
        "bridge_http_requests_total", {"target": target, "endpoint": endpoint, "code": code}
    )


class TestParseRetryAfter:
    """Retry-After is delta-seconds or an HTTP-date; anything else is ignored."""

    @pytest.mark.parametrize(
        ("value", "expected"), [("120", 120.0), ("0", 0.0), (" 7 ", 7.0), ("1.5", 1.5)]
    )
    def test_delta_seconds(self, value: str, expected: float) -> None:
        """A number of seconds is taken as is."""
        assert parse_retry_after(value) == expected

    def test_negative_delta_is_zero(self) -> None:
        """A negative delay means retry now."""
        assert parse_retry_after("-5") == 0.0

    def test_http_date_in_the_future(self) -> None:
        """An HTTP-date becomes the seconds from `now` until it."""
        now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
        assert parse_retry_after("Wed, 01 Jan 2025 12:01:30 GMT", now=now) == 90.0

    def test_http_date_in_the_past_is_zero(self) -> None:
        """A date already past means retry now."""
        now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
        assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0

    def test_http_date_relative_to_the_clock(self) -> None:
        """Without `now` the current time is the reference."""
        later = datetime.now(UTC).timestamp() + 60
        value = format_datetime(datetime.fromtimestamp(later, UTC), usegmt=True)
        result = parse_retry_after(value)
        assert result is not None and 55 <= result <= 60

    @pytest.mark.parametrize("value", [None, "", "   ", "soon", "inf", "nan", "12abc", "Mon, 99"])
    def test_garbage_is_none(self, value: str | None) -> None:
        """Unreadable values leave the decision to the caller's own backoff."""
        assert parse_retry_after(value) is None


class TestRequest:
    """A request returns status, headers and body, and is counted under its endpoint template."""

    async def test_returns_status_headers_body(
        self, mock: aioresponses, panther: HttpTarget
    ) -> None:
        """A 2xx comes back whole."""
        mock.get(f"{BASE}/alerts", status=200, body=b'{"results": []}', headers={"X-Thing": "1"})
        resp = await panther.request("GET", "/alerts", endpoint="/alerts")
        assert resp.status == 200
        assert resp.body == b'{"results": []}'
        assert resp.headers["X-Thing"] == "1"

    async def test_sends_auth_headers_and_params(
        self, mock: aioresponses, panther: HttpTarget
    ) -> None:
        """The target's headers and the caller's params go out with the request."""
        mock.get(re.compile(r"^https://api\.acme\.runpanther\.net/alerts\?.*$"), status=200)
        await panther.request("GET", "/alerts", endpoint="/alerts", params=[("a", "1"), ("a", "2")])
        [call] = [c for calls in mock.requests.values() for c in calls]
        assert call.kwargs["headers"]["X-API-Key"] == TOKEN
        assert call.kwargs["params"] == [("a", "1"), ("a", "2")]

    async def test_absolute_url_kept(self, mock: aioresponses, panther: HttpTarget) -> None:
        """An absolute URL (a job Location) is requested as given."""
        mock.get("https://elsewhere.example/jobs/1", status=200)
        resp = await panther.request("GET", "https://elsewhere.example/jobs/1", endpoint="job")
        assert resp.status == 200

    async def test_base_url_path_prefix_kept(
        self, mock: aioresponses, session: aiohttp.ClientSession
    ) -> None:
        """A base URL with a path prefix (a proxy) keeps it."""
        target = HttpTarget(
            session, target="panther", base_url="https://proxy.example/panther/", headers={},
            timeout=5,
        )
        mock.get("https://proxy.example/panther/alerts", status=200)
        assert (await target.request("GET", "/alerts", endpoint="/alerts")).status == 200

    async def test_accepted_status_returned(self, mock: aioresponses, panther: HttpTarget) -> None:
        """Statuses the caller accepts (404 = unknown) are returned, not raised."""
        mock.get(f"{BASE}/alerts/x", status=404, body=b'{"message": "not found"}')
        resp = await panther.request("GET", "/alerts/x", endpoint="/alerts/{id}", accept=(404,))
        assert resp.status == 404

    async def test_metrics_use_endpoint_template(
        self, mock: aioresponses, panther: HttpTarget, metrics: Metrics
    ) -> None:
        """Counter and histogram carry the template, never the raw path with its id."""
        mock.get(f"{BASE}/alerts/abc123", status=200, body=b"{}")
        await panther.request("GET", "/alerts/abc123", endpoint="/alerts/{id}")
        assert count(metrics, "panther", "/alerts/{id}", "200") == 1
        assert count(metrics, "panther", "/alerts/abc123", "200") is None
        assert (
            metrics.registry.get_sample_value(
                "bridge_http_request_duration_seconds_count",
                {"target": "panther", "endpoint": "/alerts/{id}"},
            )
            == 1
        )

    async def test_error_status_counted(
        self, mock: aioresponses, panther: HttpTarget, metrics: Metrics
    ) -> None:
        """A failed status is counted under its code."""
        mock.get(f"{BASE}/alerts", status=500)
        with pytest.raises(errors.RetriableApiError):
            await panther.request("GET", "/alerts", endpoint="/alerts")
        assert count(metrics, "panther", "/alerts", "500") == 1

    async def test_no_response_counted_as_zero(
        self, mock: aioresponses, panther: HttpTarget, metrics: Metrics
    ) -> None:
        """No response at all is code 0."""
        mock.get(f"{BASE}/alerts", exception=TimeoutError())
        with pytest.raises(errors.TransportError):
            await panther.request("GET", "/alerts", endpoint="/alerts")
        assert count(metrics, "panther", "/alerts", "0") == 1

    async def test_without_metrics(
        self, mock: aioresponses, session: aiohttp.ClientSession
    ) -> None:
        """Metrics are optional."""
        target = HttpTarget(session, target="bigpanda", base_url=BASE, headers={}, timeout=5)
        mock.get(f"{BASE}/x", status=204)
        assert (await target.request("GET", "/x", endpoint="/x")).status == 204


class TestTransportErrors:
    """No usable response becomes a retriable TransportError naming where, never the token."""

    @pytest.mark.parametrize(
        ("exc", "name"),
        [
            (TimeoutError(), "TimeoutError"),
            (aiohttp.ClientConnectionError("Connection refused"), "ClientConnectionError"),
            (aiohttp.ServerDisconnectedError(), "ServerDisconnectedError"),
            (aiohttp.ClientPayloadError("Response payload is not completed"), "ClientPayloadError"),
            (ConnectionResetError(104, "Connection reset by peer"), "ConnectionResetError"),
        ],
    )
    async def test_becomes_transport_error(
        self, mock: aioresponses, panther: HttpTarget, exc: BaseException, name: str
    ) -> None:
        """Each failure is a TransportError `panther GET /alerts failed: <Class>: ...`."""
        mock.get(f"{BASE}/alerts", exception=exc)
        with pytest.raises(errors.TransportError) as info:
            await panther.request("GET", "/alerts", endpoint="/alerts")
        assert info.value.retriable
        assert info.value.status == 0
        assert info.value.target == "panther"
        assert str(info.value).startswith(f"panther GET /alerts failed: {name}")
        assert TOKEN not in str(info.value)

    async def test_timeout_message_says_how_long(
        self, mock: aioresponses, panther: HttpTarget
    ) -> None:
        """An empty TimeoutError still says what happened."""
        mock.get(f"{BASE}/alerts", exception=TimeoutError())
        with pytest.raises(
            errors.TransportError, match=r"TimeoutError: no complete response within 5 s"
        ):
            await panther.request("GET", "/alerts", endpoint="/alerts")

    async def test_token_in_exception_text_redacted(
        self, mock: aioresponses, panther: HttpTarget
    ) -> None:
        """Even an exception that quotes the header does not leak the token."""
        mock.get(f"{BASE}/alerts", exception=aiohttp.ClientError(f"bad header X-API-Key: {TOKEN}"))
        with pytest.raises(errors.TransportError) as info:
            await panther.request("GET", "/alerts", endpoint="/alerts")
        assert TOKEN not in str(info.value)
        assert "***" in str(info.value)


class TestStatusErrors:
    """Non-2xx statuses become the typed error of `error_for_status`, with body and Retry-After."""

    async def test_429_retry_after_seconds(self, mock: aioresponses, panther: HttpTarget) -> None:
        """429 is RateLimitedError carrying the server's delay."""
        mock.get(f"{BASE}/alerts", status=429, headers={"Retry-After": "30"})
        with pytest.raises(errors.RateLimitedError) as info:
            await panther.request("GET", "/alerts", endpoint="/alerts")
        assert info.value.retriable and info.value.retry_after == 30.0

    async def test_500_retriable_501_permanent(
        self, mock: aioresponses, panther: HttpTarget
    ) -> None:
        """5xx is retriable except 501."""
        mock.get(f"{BASE}/alerts", status=500)
        mock.get(f"{BASE}/alerts", status=501)
        with pytest.raises(errors.RetriableApiError):
            await panther.request("GET", "/alerts", endpoint="/alerts")
        with pytest.raises(errors.PermanentApiError) as info:
            await panther.request("GET", "/alerts", endpoint="/alerts")
        assert not info.value.retriable and info.value.status == 501

    async def test_body_kept_shortened(self, mock: aioresponses, panther: HttpTarget) -> None:
        """The body is kept on the error, cut to about 1000 characters."""
        mock.get(f"{BASE}/alerts", status=400, body="x" * 5000)
        with pytest.raises(errors.PermanentApiError) as info:
            await panther.request("GET", "/alerts", endpoint="/alerts")
        assert len(info.value.body) == MAX_ERROR_BODY

    async def test_body_echoing_token_redacted(
        self, mock: aioresponses, panther: HttpTarget
    ) -> None:
        """A server that echoes our token does not get it into logs."""
        mock.get(f"{BASE}/alerts", status=400, body=f'{{"message": "bad key {TOKEN}"}}')
        with pytest.raises(errors.PermanentApiError) as info:
            await panther.request("GET", "/alerts", endpoint="/alerts")
        assert TOKEN not in str(info.value) and TOKEN not in info.value.body

    @pytest.mark.parametrize("status", [401, 403])
    async def test_auth_error_says_what_to_fix(
        self, mock: aioresponses, panther: HttpTarget, status: int
    ) -> None:
        """401/403 name the setting and the permission the token needs."""
        mock.get(f"{BASE}/alerts", status=status, body=b'{"message": "Forbidden"}')
        with pytest.raises(errors.AuthError) as info:
            await panther.request("GET", "/alerts", endpoint="/alerts")
        message = str(info.value)
        assert f"HTTP {status}" in message
        assert "check panther.api_token" in message and "'Read Alerts'" in message
        assert not info.value.retriable and TOKEN not in message

    async def test_bigpanda_auth_hint(
        self, mock: aioresponses, session: aiohttp.ClientSession
    ) -> None:
        """BigPanda's hint names its token and app key."""
        target = HttpTarget(
            session, target="bigpanda", base_url=BASE, headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )
        mock.post(f"{BASE}/data/v2/alerts", status=401)
        with pytest.raises(errors.AuthError) as info:
            await target.request("POST", "/data/v2/alerts", endpoint="/data/v2/alerts")
        assert "check bigpanda.api_token (an org Bearer token) and bigpanda.app_key" in str(
            info.value
        )
        assert TOKEN not in str(info.value)


class TestDecodeJson:
    """Bodies that are not the JSON the API documents are BadResponseError with a clear message."""

    async def test_html_is_bad_response(self, mock: aioresponses, panther: HttpTarget) -> None:
        """A proxy's HTML page is named with its content type and quoted briefly."""
        mock.get(
            f"{BASE}/alerts", status=200, body="<html>" + "x" * 1000, content_type="text/html"
        )
        resp = await panther.request("GET", "/alerts", endpoint="/alerts")
        with pytest.raises(errors.BadResponseError) as info:
            panther.decode_json(resp, "GET /alerts")
        message = str(info.value)
        assert message.startswith(
            "panther GET /alerts returned a body that is not JSON (text/html): '<html>"
        )
        assert len(message) < 300 and info.value.retriable

    async def test_array_is_not_an_object(self, mock: aioresponses, panther: HttpTarget) -> None:
        """An object was promised: a list is refused."""
        mock.get(f"{BASE}/alerts", status=200, body=b"[1, 2]")
        resp = await panther.request("GET", "/alerts", endpoint="/alerts")
        with pytest.raises(errors.BadResponseError, match="not an object"):
            panther.decode_json_object(resp, "GET /alerts")
