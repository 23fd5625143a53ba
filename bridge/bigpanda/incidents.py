"""BigPanda's incident APIs with a User API key: what the two-way sync reads (BIGPANDA.md).

BigPanda limits these APIs to about 5 requests/s per key, so every request takes a token from a
bucket first (`rate` per second, burst of the same size), and a 429 pauses the whole client (the
server's `Retry-After` if it sent one, else a doubling backoff) before the request is tried again,
up to `max_429_retries` times; then the `RateLimitedError` goes to the caller, which retries later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from bridge.errors import RateLimitedError
from bridge.http import HttpTarget
from bridge.metrics import Metrics

RESOURCES = "/resources/v2.0"
# BIGPANDA.md: "With expand=alerts, page_size must be <= 10".
MAX_EXPANDED_PAGE = 10
AUTH_HINT = (
    "check sync_back.api_key: it must be a BigPanda User API key (Settings > API Keys), "
    "not the org token of the Alerts API"
)


class TokenBucket:
    """At most `rate` acquisitions per second on average, bursts up to `rate`."""

    def __init__(self, rate: float, *, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = rate
        self._at = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


class BigPandaIncidents:
    """Environments, Incidents V2 search, one incident, its activities, resolve and comment."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        api_key: str,
        environment_id: str,
        timeout: float = 15.0,
        rate: float = 5.0,
        max_429_retries: int = 3,
        metrics: Metrics | None = None,
    ) -> None:
        self._http = HttpTarget(
            session,
            target="bigpanda",
            base_url=api_url,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout,
            metrics=metrics,
            auth_hint=AUTH_HINT,
        )
        self.environment_id = environment_id
        self._bucket = TokenBucket(rate)
        self._max_429 = max_429_retries
        self._metrics = metrics
        self.requests = 0

    async def _call(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        params: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        accept: Sequence[int] = (),
    ) -> Any:
        attempt = 0
        while True:
            await self._bucket.acquire()
            self.requests += 1
            try:
                return await self._http.request(
                    method, path, endpoint=endpoint, params=list(params), data=body,
                    headers={"Content-Type": "application/json"} if body is not None else None,
                    accept=accept,
                )
            except RateLimitedError as exc:
                if attempt >= self._max_429:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else 0.5 * 2**attempt
                if self._metrics is not None:
                    self._metrics.retries.labels(target="bigpanda", reason="rate_limited").inc()
                attempt += 1
                await asyncio.sleep(min(wait, 30.0))

    def _env_path(self) -> str:
        return f"{RESOURCES}/environments/{quote(self.environment_id, safe='')}"

    async def environments(self) -> list[dict[str, Any]]:
        endpoint = f"{RESOURCES}/environments"
        resp = await self._call("GET", endpoint, endpoint=endpoint)
        value = self._http.decode_json(resp, f"GET {endpoint}")
        if isinstance(value, dict):  # some answers wrap lists in {"items": [...]}
            value = value.get("items", [])
        if not isinstance(value, list):
            raise self._http.bad_response("returned no list of environments", endpoint, resp)
        return [e for e in value if isinstance(e, dict)]

    async def search(
        self,
        *,
        query: str = "",
        since: int | None = None,
        until: int | None = None,
        page: int = 1,
        page_size: int = MAX_EXPANDED_PAGE,
        expand_alerts: bool = True,
    ) -> tuple[int, list[dict[str, Any]]]:
        """One page of the Incidents V2 search, newest change first: (total, incidents)."""
        if expand_alerts:
            page_size = min(page_size, MAX_EXPANDED_PAGE)
        params = [("sort_by", "last_change"), ("page", str(page)), ("page_size", str(page_size))]
        if query:
            params.append(("query", query))
        if since is not None:
            params.append(("from", str(int(since))))
        if until is not None:
            params.append(("to", str(int(until))))
        if expand_alerts:
            params.append(("expand", "alerts"))
        endpoint = f"{RESOURCES}/environments/{{env}}/incidents"
        resp = await self._call("GET", self._env_path() + "/incidents", endpoint=endpoint,
                                params=params)
        body = self._http.decode_json_object(resp, f"GET {endpoint}")
        items = body.get("items")
        if not isinstance(items, list):
            raise self._http.bad_response("returned no 'items' list", f"GET {endpoint}", resp)
        total = body.get("total")
        return (total if isinstance(total, int) else len(items),
                [i for i in items if isinstance(i, dict)])

    async def get_incident(self, incident_id: str, *, expand_alerts: bool = True
                           ) -> dict[str, Any] | None:
        endpoint = f"{RESOURCES}/environments/{{env}}/incidents/{{id}}"
        resp = await self._call(
            "GET", f"{self._env_path()}/incidents/{quote(incident_id, safe='')}",
            endpoint=endpoint, params=[("expand", "alerts")] if expand_alerts else (),
            accept=(404,),
        )
        if resp.status == 404:
            return None
        return self._http.decode_json_object(resp, f"GET {endpoint}")

    async def activities(
        self, incident_id: str, *, page: int = 1, per_page: int = 50,
        types: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """One page of an incident's activities, newest first."""
        endpoint = f"{RESOURCES}/incidents/{{id}}/activities"
        params = [("page", str(page)), ("per_page", str(per_page))]
        if types:
            params.append(("types", ",".join(types)))
        resp = await self._call(
            "GET", f"{RESOURCES}/incidents/{quote(incident_id, safe='')}/activities",
            endpoint=endpoint, params=params,
        )
        body = self._http.decode_json_object(resp, f"GET {endpoint}")
        items = body.get("items")
        if not isinstance(items, list):
            raise self._http.bad_response("returned no 'items' list", f"GET {endpoint}", resp)
        return [i for i in items if isinstance(i, dict)]

    async def resolve(self, incident_id: str, comment: str = "") -> bool:
        """Resolve an incident (202); False when it was already resolved (409)."""
        endpoint = f"{RESOURCES}/environments/{{env}}/incidents/{{id}}/resolve"
        resp = await self._call(
            "POST", f"{self._env_path()}/incidents/{quote(incident_id, safe='')}/resolve",
            endpoint=endpoint, body=orjson.dumps({"comments": comment}), accept=(409,),
        )
        return resp.status != 409

    async def comment(self, incident_id: str, comment: str) -> None:
        endpoint = f"{RESOURCES}/environments/{{env}}/incidents/{{id}}/comments"
        await self._call(
            "POST", f"{self._env_path()}/incidents/{quote(incident_id, safe='')}/comments",
            endpoint=endpoint, body=orjson.dumps({"comment": comment}),
        )
