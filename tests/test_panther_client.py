"""Tests of bridge.panther.client against mocked Panther responses (shared/api/PANTHER.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import aiohttp
import orjson
import pytest
from aioresponses_compat import MockHttp

from bridge import errors
from bridge.budget import RequestBudget
from bridge.metrics import Metrics
from bridge.panther.client import MAX_PAGE_RESULTS, NO_PROGRESS_PAGES, PantherClient
from bridge.panther.models import AlertPage

API = "https://api.acme.runpanther.net"
TOKEN = "pan-secret-token-0123456789"
ALERTS = re.compile(r"^https://api\.acme\.runpanther\.net/alerts(\?.*)?$")


@pytest.fixture
def client(session: aiohttp.ClientSession, metrics: Metrics) -> PantherClient:
    return PantherClient(session, api_url=API + "/", api_token=TOKEN, metrics=metrics)


def alert(alert_id: str) -> dict[str, Any]:
    return {"id": alert_id, "type": "RULE", "status": "OPEN", "createdAt": "2025-01-01T00:00:00Z"}


def page(ids: list[str], next_cursor: Any = None, *, with_next: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"results": [alert(i) for i in ids]}
    if with_next:
        body["next"] = next_cursor
    return body


def calls(mock: MockHttp) -> list[tuple[str, str, Any]]:
    """Every recorded request as (method, URL, call), in order of first occurrence of its URL."""
    return [(m, str(url), c) for (m, url), cs in mock.requests.items() for c in cs]


def sent_params(mock: MockHttp) -> list[list[tuple[str, str]]]:
    return [list(c.kwargs["params"]) for _, _, c in calls(mock)]


async def collect(client: PantherClient, **filters: Any) -> list[AlertPage]:
    return [p async for p in client.iter_alert_pages(**filters)]


class TestListAlerts:
    """One page of GET /alerts: filters become Panther's query parameters."""

    async def test_returns_raw_page(self, mock: MockHttp, client: PantherClient) -> None:
        """Results stay raw dicts; `next` is the cursor."""
        mock.get(ALERTS, payload=page(["a1", "a2"], "c1"))
        result = await client.list_alerts()
        assert isinstance(result, AlertPage)
        assert [r["id"] for r in result.results] == ["a1", "a2"]
        assert result.results[0] == alert("a1")
        assert result.next == "c1"

    async def test_default_params(self, mock: MockHttp, client: PantherClient) -> None:
        """Type ALERT, ascending, a page of 50, no cursor and no window unless asked."""
        mock.get(ALERTS, payload=page([]))
        await client.list_alerts()
        assert sent_params(mock) == [[("type", "ALERT"), ("sort-dir", "asc"), ("limit", "50")]]

    async def test_array_params_repeat_without_brackets(
        self, mock: MockHttp, client: PantherClient
    ) -> None:
        """status/severity/detection-id/log-type repeat the bare key; times are RFC3339 UTC."""
        mock.get(ALERTS, payload=page([]))
        await client.list_alerts(
            created_after=datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
            created_before=datetime(2025, 1, 2, 6, 0, 0, tzinfo=timezone(timedelta(hours=2))),
            alert_type="SYSTEM_ERROR",
            statuses=["OPEN", "TRIAGED"],
            severities=["HIGH", "CRITICAL"],
            detection_ids=["AWS.Root.Login"],
            log_types=["AWS.CloudTrail", "Okta.SystemLog"],
            sort_dir="desc",
            cursor="ab+c/d==",
            limit=10,
        )
        [params] = sent_params(mock)
        assert params == [
            ("type", "SYSTEM_ERROR"),
            ("sort-dir", "desc"),
            ("created-after", "2025-01-02T03:04:05.123456Z"),
            ("created-before", "2025-01-02T04:00:00.000000Z"),
            ("status", "OPEN"),
            ("status", "TRIAGED"),
            ("severity", "HIGH"),
            ("severity", "CRITICAL"),
            ("detection-id", "AWS.Root.Login"),
            ("log-type", "AWS.CloudTrail"),
            ("log-type", "Okta.SystemLog"),
            ("limit", "10"),
            ("cursor", "ab+c/d=="),
        ]
        [(_, url, _)] = calls(mock)
        assert "status=OPEN" in url and "status=TRIAGED" in url
        assert "status%5B%5D" not in url and "status[]" not in url
        assert "created-after=2025-01-02T03:04:05.123456Z" in url
        assert "cursor=ab%2Bc/d%3D%3D" in url  # base64 cursors survive the query string

    @pytest.mark.parametrize(("limit", "page_size", "sent"), [(200, 50, "50"), (None, 80, "50"),
                                                              (None, 20, "20"), (7, 80, "7")])
    async def test_limit_capped_at_50(
        self,
        mock: MockHttp,
        session: aiohttp.ClientSession,
        limit: int | None,
        page_size: int,
        sent: str,
    ) -> None:
        """Panther's maximum page is 50, whatever is asked."""
        client = PantherClient(session, api_url=API, api_token=TOKEN, page_size=page_size)
        mock.get(ALERTS, payload=page([]))
        await client.list_alerts(limit=limit)
        assert ("limit", sent) in sent_params(mock)[0]

    async def test_api_key_header(self, mock: MockHttp, client: PantherClient) -> None:
        """The token goes in X-API-Key, not Authorization."""
        mock.get(ALERTS, payload=page([]))
        await client.list_alerts()
        [(_, _, call)] = calls(mock)
        assert call.kwargs["headers"]["X-API-Key"] == TOKEN
        assert "Authorization" not in call.kwargs["headers"]

    async def test_metrics(self, mock: MockHttp, client: PantherClient, metrics: Metrics) -> None:
        """Requests are counted under target panther, endpoint /alerts."""
        mock.get(ALERTS, payload=page([]))
        mock.get(ALERTS, status=500)
        await client.list_alerts()
        with pytest.raises(errors.RetriableApiError):
            await client.list_alerts()
        for code in ("200", "500"):
            labels = {"target": "panther", "endpoint": "/alerts", "code": code}
            assert metrics.registry.get_sample_value("bridge_http_requests_total", labels) == 1


class TestPagination:
    """iter_alert_pages follows `next` until it is missing, null or empty, never in a loop."""

    async def test_three_pages(self, mock: MockHttp, client: PantherClient) -> None:
        """Each `next` is sent back as `cursor`, filters stay on every page."""
        mock.get(ALERTS, payload=page(["a1", "a2"], "c1"))
        mock.get(ALERTS, payload=page(["a3"], "c2"))
        mock.get(ALERTS, payload=page(["a4"], None))
        pages = await collect(client, statuses=["OPEN"])
        assert [[r["id"] for r in p.results] for p in pages] == [["a1", "a2"], ["a3"], ["a4"]]
        params = sent_params(mock)
        assert len(params) == 3
        assert [dict(p).get("cursor") for p in params] == [None, "c1", "c2"]
        assert all(("status", "OPEN") in p for p in params)

    @pytest.mark.parametrize(
        "last", [page(["b"], None), page(["b"], ""), page(["b"], with_next=False)],
        ids=["null", "empty", "missing"],
    )
    async def test_end_of_listing(
        self, mock: MockHttp, client: PantherClient, last: dict[str, Any]
    ) -> None:
        """A null, empty or missing `next` ends the listing."""
        mock.get(ALERTS, payload=page(["a"], "c1"))
        mock.get(ALERTS, payload=last)
        pages = await collect(client)
        assert len(pages) == 2 and pages[1].next is None
        assert len(calls(mock)) == 2

    async def test_repeated_cursor_stops(self, mock: MockHttp, client: PantherClient) -> None:
        """A cursor handed out twice raises BadResponseError naming it, after the pages before."""
        mock.get(ALERTS, payload=page(["a"], "c1"))
        mock.get(ALERTS, payload=page(["b"], "c2"))
        mock.get(ALERTS, payload=page(["c"], "c1"), repeat=True)
        pages: list[AlertPage] = []
        with pytest.raises(errors.BadResponseError, match="'c1'") as info:
            async for p in client.iter_alert_pages():
                pages.append(p)
        assert len(pages) == 3
        assert len(calls(mock)) == 3
        assert TOKEN not in str(info.value)

    async def test_cursor_equal_to_itself(self, mock: MockHttp, client: PantherClient) -> None:
        """A page pointing at itself stops at once."""
        mock.get(ALERTS, payload=page(["a"], "c1"))
        mock.get(ALERTS, payload=page(["a"], "c1"), repeat=True)
        with pytest.raises(errors.BadResponseError, match="a second time"):
            await collect(client)
        assert len(calls(mock)) == 2


class TestHostileListings:
    """A listing that goes nowhere is ended; a page far beyond `limit` is refused unprocessed;
    every request draws from the tenant's budget."""

    @pytest.mark.parametrize(
        ("first", "later"),
        [
            # Fresh cursors with nothing new behind them.
            pytest.param(["a"], [], id="cursor_that_leads_nowhere"),
            # The same alerts again and again count as no progress too.
            pytest.param(["a", "b"], ["a", "b"], id="repeating_alerts_count_as_no_progress"),
        ],
    )
    async def test_no_progress_ends_the_listing(
        self, mock: MockHttp, client: PantherClient, first: list[str], later: list[str]
    ) -> None:
        """NO_PROGRESS_PAGES more pages after the last one with something new, then stop."""
        mock.get(ALERTS, payload=page(first, "c0"))
        for i in range(1, 20):
            mock.get(ALERTS, payload=page(later, f"c{i}"))
        with pytest.raises(errors.BadResponseError, match="leads nowhere"):
            await collect(client)
        assert len(calls(mock)) == 1 + NO_PROGRESS_PAGES

    async def test_oversized_page_is_handed_on_in_slices(
        self, mock: MockHttp, client: PantherClient
    ) -> None:
        ids = [f"{i:032x}" for i in range(2 * MAX_PAGE_RESULTS + 7)]
        mock.get(ALERTS, payload=page(ids, "c1"))
        mock.get(ALERTS, payload=page(["last"], None))
        pages = [p async for p in client.iter_alert_pages()]
        assert [len(p.results) for p in pages] == [MAX_PAGE_RESULTS, MAX_PAGE_RESULTS, 7, 1]
        assert [p.next for p in pages] == [None, None, "c1", None]
        assert [r["id"] for p in pages for r in p.results] == [*ids, "last"]

    async def test_requests_draw_from_the_budget(
        self, mock: MockHttp, session: aiohttp.ClientSession
    ) -> None:
        budget = RequestBudget(0.0, 1)
        client = PantherClient(session, api_url=API, api_token=TOKEN, budget=budget)
        mock.get(ALERTS, payload=page(["a"], "c1"))
        mock.get(ALERTS, payload=page(["b"], None))
        await collect(client)
        assert budget.granted == 2


class TestFaults:
    """Each fault becomes the right exception type and retriable flag, without the token."""

    async def raises(self, client: PantherClient, kind: type[errors.ApiError]) -> errors.ApiError:
        with pytest.raises(kind) as info:
            await client.list_alerts()
        assert TOKEN not in str(info.value)
        assert TOKEN not in info.value.body
        return info.value

    async def test_429_retry_after_seconds(self, mock: MockHttp, client: PantherClient) -> None:
        """429 with Retry-After seconds: rate limited, retriable, with the delay."""
        mock.get(ALERTS, status=429, headers={"Retry-After": "12"})
        exc = await self.raises(client, errors.RateLimitedError)
        assert exc.retriable and exc.retry_after == 12.0 and exc.status == 429

    async def test_429_retry_after_http_date(self, mock: MockHttp, client: PantherClient) -> None:
        """429 with Retry-After as an HTTP-date: the seconds until then."""
        when = datetime.now(UTC) + timedelta(seconds=120)
        mock.get(ALERTS, status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})
        exc = await self.raises(client, errors.RateLimitedError)
        assert exc.retry_after is not None and 110 <= exc.retry_after <= 120

    @pytest.mark.parametrize("status", [500, 504])
    async def test_server_errors_retriable(
        self, mock: MockHttp, client: PantherClient, status: int
    ) -> None:
        """500 and 504 are retried later."""
        mock.get(ALERTS, status=status, payload={"message": "internal error"})
        exc = await self.raises(client, errors.RetriableApiError)
        assert exc.retriable and exc.status == status and exc.retry_after is None

    async def test_502_html(self, mock: MockHttp, client: PantherClient) -> None:
        """A proxy's 502 HTML page is retriable and its text is kept short."""
        html = "<html><body><h1>502 Bad Gateway</h1>" + "<p>x</p>" * 500 + "</body></html>"
        mock.get(ALERTS, status=502, body=html, content_type="text/html")
        exc = await self.raises(client, errors.RetriableApiError)
        assert exc.retriable and exc.status == 502
        assert exc.body.startswith("<html>") and len(exc.body) <= 1000

    async def test_501_permanent(self, mock: MockHttp, client: PantherClient) -> None:
        """501 will not change on retry."""
        mock.get(ALERTS, status=501)
        exc = await self.raises(client, errors.PermanentApiError)
        assert not exc.retriable

    async def test_400_message_in_error(self, mock: MockHttp, client: PantherClient) -> None:
        """Panther's `{"message": ...}` explains a 400: it is in the error."""
        mock.get(ALERTS, status=400, payload={"message": "invalid value for sort-dir"})
        exc = await self.raises(client, errors.PermanentApiError)
        assert not exc.retriable
        assert "invalid value for sort-dir" in str(exc)
        assert str(exc).startswith("panther GET /alerts answered HTTP 400")

    @pytest.mark.parametrize("status", [401, 403])
    async def test_auth(self, mock: MockHttp, client: PantherClient, status: int) -> None:
        """401/403 are AuthError saying which permission the token needs."""
        mock.get(ALERTS, status=status, payload={"message": "Unauthorized"})
        exc = await self.raises(client, errors.AuthError)
        assert not exc.retriable
        assert "check panther.api_token" in str(exc)
        assert "'Read Alerts' permission" in str(exc)

    async def test_html_200(self, mock: MockHttp, client: PantherClient) -> None:
        """A 200 HTML page (a login portal, a proxy) is a bad response, quoted briefly."""
        mock.get(ALERTS, status=200, body="<html>" + "x" * 5000, content_type="text/html")
        exc = await self.raises(client, errors.BadResponseError)
        assert exc.retriable
        assert str(exc).startswith(
            "panther GET /alerts returned a body that is not JSON (text/html): '<html>xxx"
        )
        assert len(str(exc)) < 300

    async def test_invalid_json(self, mock: MockHttp, client: PantherClient) -> None:
        """Truncated JSON is a bad response."""
        mock.get(ALERTS, status=200, body=b'{"results": [{"id": ')
        exc = await self.raises(client, errors.BadResponseError)
        assert "not JSON (application/json)" in str(exc)

    @pytest.mark.parametrize(
        ("body", "problem"),
        [
            ({"results": {"id": "a"}}, "no 'results' list (a dict)"),
            ({"results": "nope"}, "no 'results' list (a str)"),
            ({"data": []}, "no 'results' list (missing)"),
            ({"results": None}, "no 'results' list (missing)"),
            ([alert("a")], "JSON that is not an object (list)"),
            ({"results": [alert("a"), "b"]}, "result #1 that is not an object (str)"),
            ({"results": [], "next": 5}, "a 'next' cursor that is not a string (int)"),
        ],
    )
    async def test_bad_envelope(
        self, mock: MockHttp, client: PantherClient, body: Any, problem: str
    ) -> None:
        """The envelope must be an object whose `results` is a list of objects."""
        mock.get(ALERTS, status=200, body=orjson.dumps(body))
        exc = await self.raises(client, errors.BadResponseError)
        assert str(exc) == f"panther GET /alerts returned {problem}"

    async def test_timeout(self, mock: MockHttp, client: PantherClient) -> None:
        """A timeout is a retriable TransportError."""
        mock.get(ALERTS, exception=TimeoutError())
        exc = await self.raises(client, errors.TransportError)
        assert exc.retriable
        assert str(exc).startswith("panther GET /alerts failed: TimeoutError")

    async def test_connection_error(self, mock: MockHttp, client: PantherClient) -> None:
        """A refused connection is a retriable TransportError."""
        mock.get(ALERTS, exception=aiohttp.ClientConnectionError("Connection refused"))
        exc = await self.raises(client, errors.TransportError)
        assert exc.retriable and "ClientConnectionError: Connection refused" in str(exc)

    async def test_server_disconnected(self, mock: MockHttp, client: PantherClient) -> None:
        """A dropped connection is a retriable TransportError."""
        mock.get(ALERTS, exception=aiohttp.ServerDisconnectedError())
        exc = await self.raises(client, errors.TransportError)
        assert str(exc).startswith("panther GET /alerts failed: ServerDisconnectedError")

    async def test_fault_counted_with_code_zero(
        self, mock: MockHttp, client: PantherClient, metrics: Metrics
    ) -> None:
        """No response is counted with code 0."""
        mock.get(ALERTS, exception=TimeoutError())
        with pytest.raises(errors.TransportError):
            await client.list_alerts()
        labels = {"target": "panther", "endpoint": "/alerts", "code": "0"}
        assert metrics.registry.get_sample_value("bridge_http_requests_total", labels) == 1


class TestGetAlert:
    """GET /alerts/{id}: the raw alert, None when unknown."""

    async def test_found(self, mock: MockHttp, client: PantherClient, metrics: Metrics) -> None:
        """The alert comes back as a dict; metrics use the template."""
        mock.get(f"{API}/alerts/a1", payload=alert("a1"))
        assert await client.get_alert("a1") == alert("a1")
        labels = {"target": "panther", "endpoint": "/alerts/{id}", "code": "200"}
        assert metrics.registry.get_sample_value("bridge_http_requests_total", labels) == 1

    async def test_404_is_none(self, mock: MockHttp, client: PantherClient) -> None:
        """An unknown alert is None, not an error."""
        mock.get(f"{API}/alerts/gone", status=404, payload={"message": "not found"})
        assert await client.get_alert("gone") is None

    async def test_id_quoted(self, mock: MockHttp, client: PantherClient) -> None:
        """An id with `/` or spaces cannot escape its path segment."""
        mock.get(re.compile(r".*"), payload=alert("a/b c"))
        await client.get_alert("a/b c")
        [(_, url, _)] = calls(mock)
        assert url == f"{API}/alerts/a%2Fb%20c"

    async def test_not_an_object(self, mock: MockHttp, client: PantherClient) -> None:
        """A body that is not an object is a bad response."""
        mock.get(f"{API}/alerts/a1", payload=["a1"])
        with pytest.raises(errors.BadResponseError, match=r"GET /alerts/\{id\} returned JSON"):
            await client.get_alert("a1")

    async def test_auth(self, mock: MockHttp, client: PantherClient) -> None:
        """403 is an AuthError, not None."""
        mock.get(f"{API}/alerts/a1", status=403)
        with pytest.raises(errors.AuthError):
            await client.get_alert("a1")


class TestObjects:
    """Detections and saved queries: listed page after page, read one by one."""

    async def test_iter_follows_next(self, mock: MockHttp, client: PantherClient) -> None:
        """Objects of every page are yielded; limit and cursor are sent."""
        rules = re.compile(r"^https://api\.acme\.runpanther\.net/rules(\?.*)?$")
        mock.get(rules, payload={"results": [{"id": "r1"}, {"id": "r2"}], "next": "n1"})
        mock.get(rules, payload={"results": [{"id": "r3"}], "next": ""})
        ids = [r["id"] async for r in client.iter_objects("rules", limit=2)]
        assert ids == ["r1", "r2", "r3"]
        assert sent_params(mock) == [[("limit", "2")], [("limit", "2"), ("cursor", "n1")]]

    async def test_iter_repeated_cursor(self, mock: MockHttp, client: PantherClient) -> None:
        """A repeated cursor stops the object listing too."""
        url = re.compile(r"^https://api\.acme\.runpanther\.net/policies(\?.*)?$")
        mock.get(url, payload={"results": [{"id": "p"}], "next": "x"}, repeat=True)
        with pytest.raises(errors.BadResponseError, match="GET /policies returned cursor 'x'"):
            [p async for p in client.iter_objects("policies")]

    async def test_iter_metrics_template(
        self, mock: MockHttp, client: PantherClient, metrics: Metrics
    ) -> None:
        """Listings are counted under `/<kind>`."""
        mock.get(re.compile(r".*/queries.*"), payload={"results": []})
        assert [q async for q in client.iter_objects("queries")] == []
        labels = {"target": "panther", "endpoint": "/queries", "code": "200"}
        assert metrics.registry.get_sample_value("bridge_http_requests_total", labels) == 1

    async def test_unknown_kind(self, client: PantherClient) -> None:
        """Only Panther's object kinds are accepted."""
        with pytest.raises(ValueError, match="unknown Panther object kind"):
            [o async for o in client.iter_objects("alerts")]
        with pytest.raises(ValueError):
            await client.get_object("users", "u1")

    async def test_get_object(
        self, mock: MockHttp, client: PantherClient, metrics: Metrics
    ) -> None:
        """One object by quoted id; counted under `/<kind>/{id}`."""
        mock.get(f"{API}/scheduled-rules/Okta.Brute%20Force", payload={"id": "Okta.Brute Force"})
        assert await client.get_object("scheduled-rules", "Okta.Brute Force") == {
            "id": "Okta.Brute Force"
        }
        labels = {"target": "panther", "endpoint": "/scheduled-rules/{id}", "code": "200"}
        assert metrics.registry.get_sample_value("bridge_http_requests_total", labels) == 1

    async def test_get_object_404(self, mock: MockHttp, client: PantherClient) -> None:
        """A deleted detection is None."""
        mock.get(f"{API}/simple-rules/x", status=404)
        assert await client.get_object("simple-rules", "x") is None
