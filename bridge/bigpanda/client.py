"""Posts alert batches to BigPanda's Alerts API and reads the jobs it may answer with.

Success is what BigPanda documents (shared/api/BIGPANDA.md): 201 accepted, 204 an exact
duplicate (still success: BigPanda already has it), and 202 "accepted, outcome pending" with a
`Location` to poll; the 201 body is undocumented, so it is never read. Any other 2xx counts only
with a JSON body: a 200 with an HTML page is a proxy, a captive portal or a wrong
`bigpanda.api_url` answering, not BigPanda, and counting it as delivered would lose the batch. It
is retried (`BadResponseError`) with a message naming `bigpanda.api_url`. So is a 404 or 405 on
the Alerts API: the endpoint is not there, which says nothing about the events sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp
import orjson

from bridge.errors import BadResponseError
from bridge.http import MAX_ERROR_BODY, MAX_QUOTED_BODY, HttpTarget, Response, shorten
from bridge.metrics import Metrics

ALERTS_PATH = "/data/v2/alerts"
# The answers BigPanda documents for the Alerts API, accepted whatever their body.
DOCUMENTED_SUCCESS = frozenset({201, 204})
# Answers that mean "no Alerts API here", never "these events are bad".
NO_SUCH_ENDPOINT = (404, 405)
API_URL_HINT = (
    "check bigpanda.api_url (BigPanda's API: https://api.bigpanda.io, EU"
    " https://eu-api.bigpanda.io) and any proxy on the way; the events stay queued and are retried"
)


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
            accept=NO_SUCH_ENDPOINT,
        )
        if resp.status in DOCUMENTED_SUCCESS:
            return Accepted(status=resp.status)
        location = resp.headers.get("Location") if resp.status == 202 else None
        if location:
            return Accepted(status=resp.status, job_url=self.resolve(location))
        if 200 <= resp.status < 300 and _is_json(resp.body):
            return Accepted(status=resp.status)
        raise self._not_bigpanda(resp)

    def _not_bigpanda(self, resp: Response) -> BadResponseError:
        """The error for an answer that cannot have come from BigPanda's Alerts API."""
        kind = resp.headers.get("Content-Type", "no content type").split(";")[0].strip()
        text = self._http.redact(resp.body.decode("utf-8", errors="replace"))
        shown = shorten(" ".join(text.split()), MAX_QUOTED_BODY)
        if resp.status in NO_SUCH_ENDPOINT:
            what = f"answered HTTP {resp.status} (no such endpoint at {self.api_url})"
        else:
            what = (
                f"answered HTTP {resp.status} with a {kind} body, not BigPanda's JSON:"
                " not delivered"
            )
        return BadResponseError(
            f"bigpanda POST {ALERTS_PATH} {what}; {API_URL_HINT}; the body: {shown!r}",
            target="bigpanda",
            status=resp.status,
            body=shorten(text, MAX_ERROR_BODY),
        )

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


def _is_json(body: bytes) -> bool:
    if not body.strip():
        return False
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True
