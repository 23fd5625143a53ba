"""BigPanda's incident side, in memory: correlation of accepted alerts and the two-way sync APIs.

What shared/api/BIGPANDA.md ("APIs of the two-way sync", "Deduplication and correlation") says,
reproduced for the bridge's tests and demo:
- one BigPanda alert per `incident_identifier` (else primary + secondary values);
- a new alert joins the open (active) incident of the same primary property value (`host` for the
  bridge's alerts) while it holds fewer than 300 alerts, else starts a new incident; a non-ok event
  on an alert of a resolved incident starts a new incident (the old one stays resolved);
- an `ok` for every alert of an incident resolves it, with an `incident_resolved_by_alerts`
  activity (no `created_by`: nobody did it by hand).

Served with the User API key as `Bearer` (401 otherwise), about 5 requests/s per key (429 above,
`rate_limit=None` turns it off):
- `GET /resources/v2.0/environments`;
- `GET /resources/v2.0/environments/{env}/incidents` (`query`, `page` from 1, `page_size` default 25
  (at most 10 with `expand=alerts`, else 400), `sort_by=last_change` (newest change first, the
  default), epoch-second `from` / `to` on the last change, `{"total", "items"}`, at most 10,000);
- `GET .../environments/{env}/incidents/{id}` (`expand=alerts`);
- `GET /resources/v2.0/incidents/{id}/activities` (`types`, `page`, `per_page` default 20, newest
  first);
- `POST .../environments/{env}/incidents/{id}/resolve` (202, 409 when already resolved) and
  `.../comments` (204).

The BPQL subset `query` understands: `status = "critical"` / `status IN ["critical", "warning"]`,
`active = true|false`, `id = "..."`, terms joined by `AND`. Anything else is a 400 naming it.
"Last change" is the incident's `updated_at`: any alert event, resolution or comment moves it.
Expanded alerts carry `tags` as a list of `{name, value}`.

Test hooks act as people: `resolve_incident(id, user=..., comment=...)` (activity
`incident_resolved_ui_manually`, `created_by` the user), `comment_incident(id, user, comment)`;
the resolve endpoint records `incident_resolved_api` by the key's user (`api_user`).
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

DEFAULT_USER_API_KEY = "sim-bigpanda-user-api-key"
DEFAULT_ENVIRONMENT = "sim-env"
RESOURCES = "/resources/v2.0"
MAX_INCIDENT_ALERTS = 300
MAX_EXPANDED_PAGE = 10
MAX_RESULTS = 10_000
_SEVERITY_RANK = {"critical": 3, "warning": 2, "unknown": 1, "acknowledged": 2}
# Keys of a posted alert that are not tags (mirrors bridge.sim.bigpanda.RESERVED).
_NOT_TAGS = frozenset(
    {"status", "timestamp", "description", "incident_identifier", "primary_property",
     "secondary_property"}
)
_PRIMARY = ("host", "service", "application", "device")
_SECONDARY = ("check", "sensor")


@dataclass
class SimAlert:
    id: str
    incident_key: str
    status: str
    primary: str
    secondary: str
    tags: dict[str, Any]
    description: str
    start: int
    changed_at: int
    updated_at: int
    last_event_at: int
    incident_id: str = ""

    @property
    def active(self) -> bool:
        return self.status != "ok"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "start": self.start,
            "end": None if self.active else self.changed_at,
            "changed_at": self.changed_at,
            "updated_at": self.updated_at,
            "last_event_at": self.last_event_at,
            "active": self.active,
            "primary_property": self.primary,
            "secondary_property": self.secondary,
            "source_system": "api",
            "incident_key": self.incident_key,
            "description": self.description,
            "tags": [{"name": k, "value": v} for k, v in self.tags.items()],
        }


@dataclass
class SimIncident:
    id: str
    primary_value: str
    start: int
    updated_at: int
    changed_at: int
    alert_ids: list[str] = field(default_factory=list)
    status: str = "critical"
    active: bool = True
    end: int | None = None
    activities: list[dict[str, Any]] = field(default_factory=list)  # oldest first


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class IncidentStore:
    """Incidents built from the alerts the Alerts API simulator accepts, and their HTTP routes."""

    def __init__(
        self,
        *,
        user_api_key: str = DEFAULT_USER_API_KEY,
        environment_id: str = DEFAULT_ENVIRONMENT,
        api_user: str = "user-api-key-owner",
        rate_limit: float | None = 5.0,
    ) -> None:
        self.user_api_key = user_api_key
        self.environment_id = environment_id
        self.api_user = api_user
        self.rate_limit = rate_limit
        self.alerts: dict[str, SimAlert] = {}  # incident key -> alert
        self._by_id: dict[str, SimAlert] = {}
        self.incidents: dict[str, SimIncident] = {}
        self.throttled = 0
        self._open_by_primary: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._calls: deque[float] = deque()

    # -- correlation (called for every alert the Alerts API accepted) ----------------------

    def on_alert(self, alert: dict[str, Any], received: float | None = None) -> None:
        now = int(received if received is not None else time.time())
        status = str(alert.get("status", "unknown"))
        primary = _first(alert, alert.get("primary_property"), _PRIMARY)
        secondary = _first(alert, alert.get("secondary_property"), _SECONDARY)
        key = alert.get("incident_identifier") or f"{primary}_{secondary}"
        tags = {k: v for k, v in alert.items() if k not in _NOT_TAGS}
        existing = self.alerts.get(key)
        if existing is None:
            if status == "ok":
                return  # an ok for an alert BigPanda never saw opens nothing
            existing = SimAlert(
                id=uuid.uuid4().hex, incident_key=key, status=status, primary=primary,
                secondary=secondary, tags=tags, description=str(alert.get("description", "")),
                start=now, changed_at=now, updated_at=now, last_event_at=now,
            )
            self.alerts[key] = existing
            self._by_id[existing.id] = existing
            self._join(existing, now)
            return
        changed = existing.status != status
        existing.tags.update(tags)
        existing.updated_at = existing.last_event_at = now
        if not changed:
            self._touch(self.incidents[existing.incident_id], now)
            return
        existing.status = status
        existing.changed_at = now
        incident = self.incidents[existing.incident_id]
        if not incident.active and status != "ok":
            incident.alert_ids.remove(existing.id)
            self._join(existing, now)
            return
        self._refresh(incident, now)

    def _join(self, alert: SimAlert, now: int) -> None:
        incident_id = self._open_by_primary.get(alert.primary)
        incident = self.incidents.get(incident_id) if incident_id else None
        if incident is None or not incident.active or len(incident.alert_ids) >= (
            MAX_INCIDENT_ALERTS
        ):
            incident = SimIncident(
                id=f"inc-{next(self._ids):05d}", primary_value=alert.primary, start=now,
                updated_at=now, changed_at=now,
            )
            self.incidents[incident.id] = incident
            self._open_by_primary[alert.primary] = incident.id
        incident.alert_ids.append(alert.id)
        alert.incident_id = incident.id
        self._refresh(incident, now)

    def _refresh(self, incident: SimIncident, now: int) -> None:
        members = self._members(incident)
        live = [a for a in members if a.active]
        if live:
            incident.status = max((a.status for a in live), key=lambda s: _SEVERITY_RANK.get(s, 0))
            if incident.status == "acknowledged":
                incident.status = "warning"  # BIGPANDA.md: incidents have no acknowledged
            incident.active, incident.end = True, None
        elif incident.active:
            self._resolve(incident, now, "incident_resolved_by_alerts", None, None)
        incident.changed_at = now
        self._touch(incident, now)

    def _resolve(
        self, incident: SimIncident, now: int, kind: str, user: str | None, comment: str | None
    ) -> None:
        incident.active, incident.status, incident.end = False, "ok", now
        if kind != "incident_resolved_by_alerts":
            for alert in self._members(incident):
                alert.status, alert.changed_at = "ok", now
        if self._open_by_primary.get(incident.primary_value) == incident.id:
            del self._open_by_primary[incident.primary_value]
        params: dict[str, Any] = {}
        if comment:
            params["comment"] = comment
        self._activity(incident, kind, user, params, now)

    def _activity(
        self, incident: SimIncident, kind: str, user: str | None, params: dict[str, Any], now: int
    ) -> dict[str, Any]:
        item = {
            "id": uuid.uuid4().hex,
            "type": kind,
            "timestamp": now,
            "created_by": user,
            "params": params,
        }
        incident.activities.append(item)
        self._touch(incident, now)
        return item

    @staticmethod
    def _touch(incident: SimIncident, now: int) -> None:
        incident.updated_at = max(incident.updated_at, now)

    def _members(self, incident: SimIncident) -> list[SimAlert]:
        return [self._by_id[i] for i in incident.alert_ids]

    # -- people (tests, demo) --------------------------------------------------------------

    def incident_of(self, incident_identifier: str) -> SimIncident:
        """The incident the alert with this `incident_identifier` is in now."""
        return self.incidents[self.alerts[incident_identifier].incident_id]

    def resolve_incident(
        self, incident_id: str, *, user: str, comment: str | None = None,
        kind: str = "incident_resolved_ui_manually",
    ) -> dict[str, Any]:
        """Resolve as a person in the UI (or `kind="incident_resolved_api"`); 409-like error if
        already resolved. Returns the activity."""
        incident = self.incidents[incident_id]
        if not incident.active:
            raise ValueError(f"incident {incident_id} is already resolved")
        self._resolve(incident, int(time.time()), kind, user, comment)
        return incident.activities[-1]

    def comment_incident(self, incident_id: str, user: str, comment: str) -> dict[str, Any]:
        incident = self.incidents[incident_id]
        return self._activity(
            incident, "incident_commented", user, {"comment": comment}, int(time.time())
        )

    def add_activity(
        self, incident_id: str, kind: str, *, user: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Any activity, spelled as given (the documented variants included)."""
        return self._activity(self.incidents[incident_id], kind, user, params, int(time.time()))

    # -- HTTP --------------------------------------------------------------------------------

    def install(self, router: web.UrlDispatcher) -> None:
        env = RESOURCES + "/environments"
        router.add_get(env, self._wrap(self._environments))
        router.add_get(env + "/{env}/incidents", self._wrap(self._search))
        router.add_get(env + "/{env}/incidents/{id}", self._wrap(self._get))
        router.add_post(env + "/{env}/incidents/{id}/resolve", self._wrap(self._api_resolve))
        router.add_post(env + "/{env}/incidents/{id}/comments", self._wrap(self._api_comment))
        router.add_get(RESOURCES + "/incidents/{id}/activities", self._wrap(self._activities))

    def _wrap(self, handler: Any) -> Any:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                self._authorize(request)
                self._throttle()
                return await handler(request)
            except _Refused as exc:
                response = _json(exc.status, {"status": "failure", "error": exc.message})
                response.headers.update(exc.headers)
                return response

        return run

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or header[7:] != self.user_api_key:
            raise _Refused(401, "Authorization: a valid User API key is required (Bearer)")

    def _throttle(self) -> None:
        if self.rate_limit is None:
            return
        now = time.monotonic()
        while self._calls and now - self._calls[0] >= 1.0:
            self._calls.popleft()
        if len(self._calls) >= self.rate_limit:
            self.throttled += 1
            raise _Refused(429, "too many requests", {"Retry-After": "1"})
        self._calls.append(now)

    def _env(self, request: web.Request) -> None:
        if request.match_info["env"] != self.environment_id:
            raise _Refused(404, f"environment {request.match_info['env']!r} not found")

    def _incident(self, request: web.Request) -> SimIncident:
        incident = self.incidents.get(request.match_info["id"])
        if incident is None:
            raise _Refused(404, f"incident {request.match_info['id']!r} not found")
        return incident

    async def _environments(self, request: web.Request) -> web.Response:
        return _json(200, [{"id": self.environment_id, "name": "All incidents", "filter": ""}])

    async def _search(self, request: web.Request) -> web.Response:
        self._env(request)
        q = request.query
        expand = q.get("expand") == "alerts"
        page = _int(q, "page", 1, low=1)
        size = _int(q, "page_size", 25, low=1, high=100)
        if expand and size > MAX_EXPANDED_PAGE:
            raise _Refused(400, f"page_size: at most {MAX_EXPANDED_PAGE} with expand=alerts")
        sort_by = q.get("sort_by", "last_change")
        if sort_by != "last_change":
            raise _Refused(400, f"sort_by: unsupported value {sort_by!r} (last_change)")
        since, until = _int(q, "from", None), _int(q, "to", None)
        match = _parse_query(q.get("query", ""))
        found = [
            i for i in self.incidents.values()
            if (since is None or i.updated_at >= since)
            and (until is None or i.updated_at <= until)
            and match(i)
        ]
        found.sort(key=lambda i: (i.updated_at, i.id), reverse=True)
        found = found[:MAX_RESULTS]
        items = found[(page - 1) * size : page * size]
        return _json(200, {"total": len(found), "items": [self._body(i, expand) for i in items]})

    async def _get(self, request: web.Request) -> web.Response:
        self._env(request)
        incident = self._incident(request)
        return _json(200, self._body(incident, request.query.get("expand") == "alerts"))

    async def _activities(self, request: web.Request) -> web.Response:
        incident = self._incident(request)
        q = request.query
        page = _int(q, "page", 1, low=1)
        per_page = _int(q, "per_page", 20, low=1, high=100)
        types = {t for t in q.get("types", "").split(",") if t}
        items = [a for a in reversed(incident.activities) if not types or a["type"] in types]
        return _json(200, {"items": items[(page - 1) * per_page : page * per_page]})

    async def _api_resolve(self, request: web.Request) -> web.Response:
        self._env(request)
        incident = self._incident(request)
        if not incident.active:
            raise _Refused(409, f"incident {incident.id} is already resolved")
        body = await _body(request)
        self._resolve(
            incident, int(time.time()), "incident_resolved_api", self.api_user,
            str(body.get("comments") or "") or None,
        )
        return _json(202, {"status": 202, "data": {}})

    async def _api_comment(self, request: web.Request) -> web.Response:
        self._env(request)
        incident = self._incident(request)
        body = await _body(request)
        comment = body.get("comment")
        if not isinstance(comment, str) or not comment:
            raise _Refused(400, "comment: required, a non-empty string")
        self._activity(
            incident, "incident_commented", self.api_user, {"comment": comment}, int(time.time())
        )
        return web.Response(status=204)

    def _body(self, incident: SimIncident, expand: bool) -> dict[str, Any]:
        members = self._members(incident)
        return {
            "id": incident.id,
            "status": incident.status,
            "active": incident.active,
            "severity": incident.status,
            "flapping": False,
            "snooze": None,
            "start": incident.start,
            "changed_at": incident.changed_at,
            "updated_at": incident.updated_at,
            "end": incident.end,
            "alerts": [a.as_json() for a in members] if expand
            else [{"alert_id": a.id} for a in members],
        }


def _first(alert: dict[str, Any], named: object, keys: tuple[str, ...]) -> str:
    if isinstance(named, str) and named in alert:
        return str(alert[named])
    for key in keys:
        value = alert.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


_TERM = re.compile(
    r'^\s*(status|active|id)\s*(=|IN)\s*(.+?)\s*$', re.IGNORECASE
)


def _parse_query(query: str) -> Any:
    """The documented BPQL subset, as a predicate over incidents (400 for anything else)."""
    checks = []
    for term in re.split(r"\s+AND\s+", query.strip(), flags=re.IGNORECASE) if query.strip() else []:
        m = _TERM.match(term)
        if m is None:
            raise _Refused(400, f"query: unsupported BPQL term {term!r}")
        name, op, raw = m.group(1).lower(), m.group(2).upper(), m.group(3)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Refused(400, f"query: cannot read value {raw!r}") from None
        values = value if op == "IN" and isinstance(value, list) else [value]
        checks.append((name, values))

    def match(incident: SimIncident) -> bool:
        return all(getattr(incident, name) in values for name, values in checks)

    return match


def _int(q: Any, name: str, default: int | None, *, low: int = 0, high: int | None = None) -> Any:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Refused(400, f"{name}: must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise _Refused(400, f"{name}: out of range ({value})")
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Refused(400, "body: invalid JSON") from None
    return body if isinstance(body, dict) else {}


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
