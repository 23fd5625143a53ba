"""Writes to Panther for the two-way sync: alert status, alert comments, the calling token.

PANTHER.md ("Writes"): `PATCH /alerts` takes `{"ids": [...], "status": ...}` and answers 204 with
no body; Panther Labs' own client sends at most 25 ids per call, and so does this one. Panther's
204 may carry `Content-Type: application/json` (its client decodes it) or nothing: both are fine,
the body is never read. A 401/403 here means the token lacks the alert-modify permission ("Manage
Alerts" in the console): the error says so, since the same token reads alerts happily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from bridge.errors import AuthError
from bridge.panther.client import PantherClient

MAX_IDS_PER_PATCH = 25
WRITE_PERMISSION_HINT = (
    "the Panther token lacks the 'Manage Alerts' (alert-modify) permission that the two-way sync "
    "needs: grant it to panther.api_token's API token in Panther (Settings > API Tokens)"
)


class PermissionMissingError(AuthError):
    """Panther refused a write (401/403): the token cannot modify alerts."""


class PantherWrites:
    """`PATCH /alerts`, `POST /alert-comments`, `GET /alert-comments`, `GET /api-tokens/self`."""

    def __init__(self, reader: PantherClient) -> None:
        # Writes go to the reader's tenant with its token, session and timeout: one Panther
        # connection to configure. Only a refusal reads differently: it names the permission.
        self._http = reader.http.with_auth_hint(WRITE_PERMISSION_HINT)

    async def _write(self, method: str, path: str, *, endpoint: str, body: object) -> Any:
        try:
            return await self._http.request(
                method, path, endpoint=endpoint, data=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
            )
        except AuthError as exc:
            raise PermissionMissingError(
                f"panther {method} {endpoint} answered HTTP {exc.status}: {WRITE_PERMISSION_HINT}",
                target="panther", status=exc.status, body=exc.body,
            ) from None

    async def update_alerts(self, ids: Sequence[str], status: str) -> int:
        """Set `status` on every alert of `ids`, 25 per request; returns the requests made."""
        calls = 0
        for start in range(0, len(ids), MAX_IDS_PER_PATCH):
            chunk = list(ids[start : start + MAX_IDS_PER_PATCH])
            await self._write("PATCH", "/alerts", endpoint="/alerts",
                              body={"ids": chunk, "status": status})
            calls += 1
        return calls

    async def add_comment(self, alert_id: str, body: str, *, fmt: str = "PLAIN_TEXT"
                          ) -> dict[str, Any]:
        """One comment on one alert; returns the comment Panther stored."""
        resp = await self._write(
            "POST", "/alert-comments", endpoint="/alert-comments",
            body={"alertId": alert_id, "body": body, "format": fmt},
        )
        if not resp.body.strip():
            return {}
        return self._http.decode_json_object(resp, "POST /alert-comments")

    async def list_comments(self, alert_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """Every comment of one alert (`limit` <= 50 per page, following `next`)."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            params = [("alert-id", alert_id), ("limit", str(max(1, min(limit, 50))))]
            if cursor:
                params.append(("cursor", cursor))
            resp = await self._http.request(
                "GET", "/alert-comments", endpoint="/alert-comments", params=params
            )
            body = self._http.decode_json_object(resp, "GET /alert-comments")
            results = body.get("results")
            if not isinstance(results, list):
                raise self._http.bad_response("returned no 'results' list",
                                              "GET /alert-comments", resp)
            out.extend(r for r in results if isinstance(r, dict))
            cursor = body.get("next") or None
            if cursor is None or cursor in seen:
                return out
            seen.add(cursor)

    async def token_self(self) -> dict[str, Any]:
        """`GET /api-tokens/self`: the calling token (never DELETE it: that deletes the token)."""
        resp = await self._http.request("GET", "/api-tokens/self", endpoint="/api-tokens/self")
        return self._http.decode_json_object(resp, "GET /api-tokens/self")
