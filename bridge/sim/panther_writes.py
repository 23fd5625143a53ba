"""Panther's write side for the two-way sync: comments, the calling token, missing permissions.

From shared/api/PANTHER.md ("Writes") and Panther's OpenAPI:
- `POST /alert-comments` `{alertId, body, format: PLAIN_TEXT|HTML}` answers 200 with the comment
  `{id, alertId, body, format, createdAt, createdBy{id, type}}`; 404 when the alert is unknown.
- `GET /alert-comments?alert-id=...` lists an alert's comments, oldest first (`limit` default 25,
  at most 50; `cursor`/`next` like every Panther listing).
- `GET /api-tokens/self` returns the calling token `{id, name, permissions, ...}`; the token's id is
  what `updatedBy.id` says after its `PATCH /alerts` (recorded by `bridge.sim.panther`).
- `deny("PATCH /alerts")` makes that route answer 403 as a token without the permission gets.
`DELETE /api-tokens/self` (which deletes the token for real) is deliberately not served.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

DEFAULT_TOKEN_ID = "api-token-7f3c2a"
COMMENTS_LIMIT = (25, 50)
FORMATS = ("PLAIN_TEXT", "HTML")


class PantherWrites:
    """Comments and token identity of a `PantherSimulator` (which owns the alerts)."""

    def __init__(
        self, alerts: dict[str, Any], *, token_id: str = DEFAULT_TOKEN_ID,
        token_name: str = "bigpanda-bridge",
    ) -> None:
        self._alerts = alerts
        self.token_id = token_id
        self.token_name = token_name
        self.comments: dict[str, list[dict[str, Any]]] = {}  # alert id -> comments, oldest first
        self._denied: set[str] = set()
        self._ids = itertools.count(1)

    def install(self, router: web.UrlDispatcher) -> None:
        router.add_post("/alert-comments", self._post_comment)
        router.add_get("/alert-comments", self._list_comments)
        router.add_get("/api-tokens/self", self._token_self)

    # -- knobs for tests -------------------------------------------------------------------

    def deny(self, route: str) -> None:
        """`"PATCH /alerts"`, `"POST /alert-comments"`, ...: answer 403 from now on."""
        self._denied.add(route)

    def allow(self, route: str) -> None:
        self._denied.discard(route)

    def refusal(self, request: web.Request) -> web.Response | None:
        """The 403 for a denied route (called by the simulator after its auth check)."""
        if f"{request.method} {request.path}" not in self._denied:
            return None
        return web.json_response(
            {"message": "You do not have permission to perform this action"}, status=403
        )

    def comments_on(self, alert_id: str) -> list[str]:
        """The bodies of an alert's comments, oldest first."""
        return [c["body"] for c in self.comments.get(alert_id, [])]

    # -- HTTP ------------------------------------------------------------------------------

    async def _post_comment(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response({"message": "request body must be a JSON object"}, status=400)
        alert_id, text = body.get("alertId"), body.get("body")
        fmt = body.get("format", "PLAIN_TEXT")
        if not isinstance(alert_id, str) or not alert_id:
            return web.json_response({"message": "alertId is missing from request body"}, 400)
        if not isinstance(text, str) or not text:
            return web.json_response({"message": "body is missing from request body"}, status=400)
        if fmt not in FORMATS:
            return web.json_response({"message": f"invalid value for format: {fmt!r}"}, 400)
        if alert_id not in self._alerts:
            return web.json_response({"message": "alert not found"}, status=404)
        comment = {
            "id": f"comment-{next(self._ids)}",
            "alertId": alert_id,
            "body": text,
            "format": fmt,
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "createdBy": {"id": self.token_id, "type": "api-token"},
        }
        self.comments.setdefault(alert_id, []).append(comment)
        return web.json_response(comment)

    async def _list_comments(self, request: web.Request) -> web.Response:
        alert_id = request.query.get("alert-id")
        if not alert_id:
            return web.json_response({"message": "alert-id is required"}, status=400)
        try:
            limit = int(request.query.get("limit") or COMMENTS_LIMIT[0])
            start = int(request.query.get("cursor") or 0)
        except ValueError:
            return web.json_response({"message": "invalid limit or cursor"}, status=400)
        if not 1 <= limit <= COMMENTS_LIMIT[1]:
            return web.json_response(
                {"message": f"limit must be between 1 and {COMMENTS_LIMIT[1]}"}, status=400
            )
        items = self.comments.get(alert_id, [])
        page = items[start : start + limit]
        more = start + limit < len(items)
        return web.json_response(
            {"results": page, "next": str(start + limit) if more else None}
        )

    async def _token_self(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "id": self.token_id,
                "name": self.token_name,
                "permissions": ["AlertRead", "AlertModify"],
                "createdAt": "2026-01-05T09:12:44Z",
            }
        )
