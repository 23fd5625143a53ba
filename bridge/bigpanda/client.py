"""Posts alert batches to BigPanda's Alerts API and reads the jobs it may answer with.

Success is any 2xx (shared/api/BIGPANDA.md): 201 accepted, 204 an exact duplicate (still success:
BigPanda already has it), and 202 "accepted, outcome pending" with a `Location` to poll. The 201
body is undocumented, so it is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp

from bridge.http import HttpTarget
from bridge.metrics import Metrics

ALERTS_PATH = "/data/v2/alerts"


@dataclass(frozen=True)
class Accepted:
    """BigPanda took the batch: `job_url` is set only for a 202 whose `Location` names a job."""

    status: int
    job_url: str | None = None


@dataclass(frozen=True)
class JobState:
    """One poll of an asynchronous job: `status` lowercased (`pending`, `started`, `done`,
    `failed`; "" when the body has none) and the whole body for logs."""

    status: str
    body: dict[str, Any]


class BigPandaClient:
    """BigPanda's Alerts API with an org Bearer token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        api_token: str,
        timeout: float = 15.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        # The `Bearer ` prefix is mandatory; integrations that left it out got 401s (BIGPANDA.md).
        self._http = HttpTarget(
            session,
            target="bigpanda",
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {api_token}"},
            timeout=timeout,
            metrics=metrics,
        )

    async def post_alerts(self, body: bytes) -> Accepted:
        """POST one serialized batch `{"app_key": ..., "alerts": [...]}` as is.

        The bytes are sent untouched so that a retry is byte-identical and BigPanda's
        deduplication (same timestamp, same identity → 204) recognises it.
        """
        resp = await self._http.request(
            "POST",
            ALERTS_PATH,
            endpoint=ALERTS_PATH,
            data=body,
            headers={"Content-Type": "application/json"},
        )
        job_url = None
        if resp.status == 202:
            location = resp.headers.get("Location")
            job_url = self.resolve(location) if location else None
        return Accepted(status=resp.status, job_url=job_url)

    async def get_job(self, job_url: str) -> JobState:
        """GET a job resource (absolute URL, or relative to `api_url`) and read its `status`.

        Job bodies are `{"status": "done", ...}`; some BigPanda APIs wrap them in `{"data": {...}}`,
        so a status under `data` is accepted too.
        """
        resp = await self._http.request("GET", self.resolve(job_url), endpoint="job")
        body = self._http.decode_json_object(resp, "GET job")
        status = body.get("status")
        if not isinstance(status, str):
            data = body.get("data")
            status = data.get("status") if isinstance(data, dict) else None
        # A numeric status (`{"status": 202, "data": {}}`) is an HTTP echo, not a job state.
        return JobState(status=status.strip().lower() if isinstance(status, str) else "", body=body)

    def resolve(self, location: str) -> str:
        """An absolute URL for a `Location` value, relative ones resolved against `api_url`."""
        return urljoin(self.api_url + "/", location.strip())
