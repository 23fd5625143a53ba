"""Reads alerts and detections from Panther's REST API (shared/api/PANTHER.md).

Pages come back raw (`AlertPage.results` are dicts): validating alerts is the caller's business, so
one malformed alert can be set aside without losing its page. What this module guarantees is the
envelope: a JSON object whose `results` is a list of objects, or a `BadResponseError`.

It also guards Panther against the bridge and the bridge against a broken Panther: every request
draws from the tenant's `RequestBudget`, a listing whose pages stop bringing alerts it has not
listed yet is ended (`NO_PROGRESS_PAGES`), and a page far beyond `limit` is handed on in slices
of `MAX_PAGE_RESULTS`, so intake never works on more alerts at once than that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, TypedDict, Unpack
from urllib.parse import quote

import aiohttp
import structlog

from bridge.budget import RequestBudget
from bridge.errors import BadResponseError, PermanentApiError
from bridge.http import HttpTarget, Response, shorten
from bridge.metrics import Metrics
from bridge.panther.models import AlertPage
from bridge.timeutil import format_rfc3339

log = structlog.get_logger("bridge.panther")

# `GET /alerts` refuses more than 50 per page (PANTHER.md: "limit (default 25, maximum 50)").
MAX_ALERTS_PAGE = 50
API_URL_HINT = (
    "check panther.api_url (it should be the API host with no path, "
    "e.g. https://api.acme.runpanther.net)"
)
# A page with more alerts than this (whatever `limit` asked) is handed on in slices of this many:
# normalizing it whole would hold that many events and lookups at once. Ten times Panther's maximum.
MAX_PAGE_RESULTS = 500
# A listing whose pages bring no alert it has not listed already, this many times in a row, is
# ended: a `next` cursor that is new each time but leads nowhere must not be followed forever.
NO_PROGRESS_PAGES = 3
OBJECT_KINDS = frozenset({"rules", "scheduled-rules", "policies", "simple-rules", "queries"})


class AlertQuery(TypedDict, total=False):
    """The filters of `GET /alerts` (PANTHER.md), as keyword arguments of the listing methods;
    an absent one is not sent, but `alert_type` defaults to `ALERT` and `sort_dir` to `asc`."""

    created_after: datetime | None
    created_before: datetime | None
    alert_type: str
    statuses: Sequence[str]
    severities: Sequence[str]
    detection_ids: Sequence[str]
    log_types: Sequence[str]
    sort_dir: str


class PantherClient:
    """Panther's REST API with an `X-API-Key` token; every method is one request or one listing."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        api_token: str,
        timeout: float = 10.0,
        page_size: int = 50,
        metrics: Metrics | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        # Public: the writes of the two-way sync go through the same target (bridge.panther.writes).
        self.http = HttpTarget(
            session, target="panther", base_url=api_url, timeout=timeout, metrics=metrics,
            headers={"X-API-Key": api_token, "Accept": "application/json"},
        )
        self.page_size = page_size
        self.budget = budget

    async def _request(self, method: str, path: str, **kwargs: Any) -> Response:
        """One request, once the tenant's budget grants it."""
        if self.budget is not None:
            await self.budget.acquire()
        return await self.http.request(method, path, **kwargs)

    async def list_alerts(
        self, *, cursor: str | None = None, limit: int | None = None, **query: Unpack[AlertQuery]
    ) -> AlertPage:
        """One page of `GET /alerts`; pass `page.next` back as `cursor` for the following one."""
        if unknown := query.keys() - AlertQuery.__optional_keys__:
            raise TypeError(f"unknown GET /alerts filters: {sorted(unknown)}")
        params: list[tuple[str, str]] = [
            ("type", query.get("alert_type", "ALERT")), ("sort-dir", query.get("sort_dir", "asc"))
        ]
        # Panther's default window is the last 30 days: always say what we mean when we know it.
        if (created_after := query.get("created_after")) is not None:
            params.append(("created-after", format_rfc3339(created_after)))
        if (created_before := query.get("created_before")) is not None:
            params.append(("created-before", format_rfc3339(created_before)))
        # Array parameters repeat the bare key (`status=OPEN&status=TRIAGED`), no `[]` on the wire.
        for key, values in (
            ("status", query.get("statuses", ())),
            ("severity", query.get("severities", ())),
            ("detection-id", query.get("detection_ids", ())),
            ("log-type", query.get("log_types", ())),
        ):
            params.extend((key, value) for value in values)
        page_limit = max(1, min(limit or self.page_size, MAX_ALERTS_PAGE))
        params.append(("limit", str(page_limit)))
        if cursor:
            params.append(("cursor", cursor))
        resp = await self._request(
            "GET", "/alerts", endpoint="/alerts", params=params, accept=(404,)
        )
        if resp.status == 404:
            raise self._listing_not_found(resp, "GET /alerts")
        results, next_cursor = self._page(resp, "GET /alerts")
        return AlertPage(results=results, next=next_cursor)

    async def iter_alert_pages(
        self, *, limit: int | None = None, **query: Unpack[AlertQuery]
    ) -> AsyncIterator[AlertPage]:
        """Every page of `GET /alerts` for these filters, following `next` until it ends.

        A cursor Panther already handed out, or `NO_PROGRESS_PAGES` pages in a row that list no
        alert this listing had not listed yet, end it with BadResponseError rather than looping
        forever; the pages before have been yielded.
        """
        seen: set[str] = set()
        listed: set[str] = set()
        stalled = 0
        cursor: str | None = None
        while True:
            page = await self.list_alerts(cursor=cursor, limit=limit, **query)
            if len(page.results) > MAX_PAGE_RESULTS:
                # Panther (or a proxy) ignored `limit`: hand the page on in slices, dropping
                # each from memory once taken, so intake never works on more than a slice.
                log.warning(
                    "panther.oversized_page", alerts=len(page.results), limit=limit or
                    self.page_size, slice=MAX_PAGE_RESULTS,
                )
                results = page.results
                while len(results) > MAX_PAGE_RESULTS:
                    head = results[:MAX_PAGE_RESULTS]
                    del results[:MAX_PAGE_RESULTS]
                    yield AlertPage(results=head, next=None)
            yield page
            cursor = self._next_cursor(page.next, seen, "GET /alerts")
            if cursor is None:
                return
            before = len(listed)
            listed.update(i for r in page.results if (i := r.get("id")).__class__ is str)
            stalled = stalled + 1 if len(listed) == before else 0
            if stalled >= NO_PROGRESS_PAGES:
                raise BadResponseError(
                    f"panther GET /alerts returned {stalled} pages in a row with a 'next' cursor "
                    "but no alert not listed already: stopped the listing instead of following "
                    "a cursor that leads nowhere",
                    target="panther",
                    status=200,
                )

    async def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        """`GET /alerts/{id}`: the raw alert, or None when Panther does not know it (404)."""
        resp = await self._request(
            "GET", f"/alerts/{quote(alert_id, safe='')}", endpoint="/alerts/{id}", accept=(404,)
        )
        if resp.status == 404:
            return None
        return self.http.decode_json_object(resp, "GET /alerts/{id}")

    async def iter_objects(self, kind: str, *, limit: int = 100) -> AsyncIterator[dict[str, Any]]:
        """Every object of `GET /<kind>` (rules, policies, saved queries...), page after page."""
        path = _object_path(kind)
        what = f"GET {path}"
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            params = [("limit", str(max(1, limit)))]
            if cursor:
                params.append(("cursor", cursor))
            resp = await self._request(
                "GET", path, endpoint=path, params=params, accept=(404,)
            )
            if resp.status == 404:
                raise self._listing_not_found(resp, what)
            results, next_cursor = self._page(resp, what)
            for item in results:
                yield item
            cursor = self._next_cursor(next_cursor, seen, what)
            if cursor is None:
                return

    async def get_object(self, kind: str, object_id: str) -> dict[str, Any] | None:
        """`GET /<kind>/{id}`: one detection or saved query, or None when it is unknown (404)."""
        path = _object_path(kind)
        endpoint = f"{path}/{{id}}"
        resp = await self._request(
            "GET", f"{path}/{quote(object_id, safe='')}", endpoint=endpoint, accept=(404,)
        )
        if resp.status == 404:
            return None
        return self.http.decode_json_object(resp, f"GET {endpoint}")

    def _listing_not_found(self, resp: Response, what: str) -> PermanentApiError:
        """A listing always exists: a 404 means the base URL is wrong (often a `/v1` suffix)."""
        body = shorten(self.http.redact(resp.body.decode("utf-8", "replace")), 300)
        message = f"panther {what} answered HTTP 404: {body}".rstrip(": ")
        return PermanentApiError(
            f"{message}; {API_URL_HINT}", target="panther", status=404, body=body
        )

    def _page(self, resp: Response, what: str) -> tuple[list[dict[str, Any]], str | None]:
        """`results` and `next` of a `{results, next}` listing, checked; the dicts stay raw."""
        body = self.http.decode_json_object(resp, what)
        results = body.get("results")
        if not isinstance(results, list):
            found = "missing" if results is None else f"a {type(results).__name__}"
            raise self.http.bad_response(f"returned no 'results' list ({found})", what, resp)
        for index, item in enumerate(results):
            if not isinstance(item, dict):
                raise self.http.bad_response(
                    f"returned result #{index} that is not an object ({type(item).__name__})",
                    what,
                    resp,
                )
        next_cursor = body.get("next")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise self.http.bad_response(
                f"returned a 'next' cursor that is not a string ({type(next_cursor).__name__})",
                what,
                resp,
            )
        return results, next_cursor or None

    @staticmethod
    def _next_cursor(next_cursor: str | None, seen: set[str], what: str) -> str | None:
        """The cursor to request next, None at the end; a repeated cursor would loop forever."""
        if not next_cursor:  # PANTHER.md: a missing, null or empty `next` ends the listing
            return None
        if next_cursor in seen:
            raise BadResponseError(
                f"panther {what} returned cursor {shorten(next_cursor, 100)!r} a second time: "
                "stopped the listing instead of looping",
                target="panther",
                status=200,
            )
        seen.add(next_cursor)
        return next_cursor


def _object_path(kind: str) -> str:
    if kind not in OBJECT_KINDS:
        raise ValueError(f"unknown Panther object kind {kind!r}: one of {sorted(OBJECT_KINDS)}")
    return f"/{kind}"
