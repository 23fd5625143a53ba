"""A Panther REST API simulator: what the bridge polls in the demo, integration tests, benchmarks.

Faithful to (shared/api/PANTHER.md, shared/api/panther-openapi.yaml):
- `X-API-Key` auth (401 `{"message": ...}` otherwise), JSON error bodies, no `/v1` prefix.
- `GET /alerts` with `type` (ALERT | DETECTION_ERROR | SYSTEM_ERROR), `created-after` (inclusive,
  default 30 days ago) / `created-before` (exclusive) as RFC3339 with any fraction and offset, a
  date, a month or Unix seconds, `sort-dir` (default desc), repeated `status`, `severity`,
  `sub-type`, `detection-id`, `log-type`, `resource-type`, `assignee`, plus `name-contains` and
  `event-count-min/-max`; `limit` default 25, maximum 50 (with the exact 400 body Panther sends);
  `{"results", "next"}` pages with an opaque cursor and `next: null` on the last page.
- `GET /alerts/{id}`, `PATCH /alerts` and `PATCH /alerts/{id}` (status / assignee).
- `GET /rules`, `/scheduled-rules`, `/policies`, `/simple-rules`, `/queries` (limit default 100)
  and `GET /<kind>/{id}`, over a small realistic catalog (`panther_catalog`) that holds the
  example objects of shared/api/examples/ verbatim.
- Alerts shaped like the examples: 32-hex ids, timestamps in Panther's mix of formats (Go's
  RFC3339Nano with trailing zeros trimmed, milliseconds, `+00:00`), nulls and missing optional
  fields, nested `context`, now and then fields outside the spec (`description`, `updatedAt`, ...).

Simplified, on purpose:
- Pagination is keyset-based on (createdAt, id): the cursor carries the last key served and the
  filters of the first request (later filter parameters are ignored), signed so that only issued
  cursors are accepted. Alerts inserted between pages neither shift nor repeat items; those created
  behind the cursor (late-indexed alerts) are seen by the next listing whose window covers them,
  which is the behaviour the bridge must cope with.
- `created-before` has no implicit "now" bound: real Panther has no alerts in the future, tests may.
- `log-source` is accepted and ignored. `GET /alerts/{id}/events` serves `eventCount` (at most
  200) deterministic raw events per alert, 25 (at most 50) a page.
- Detection listings filter by what the spec names for each: `name-contains` (display name or
  id), `state` (enabled/disabled), `severity`, `tag`, `log-type` (rules, simple rules),
  `resource-type` (policies), `scheduled-query` (scheduled rules); other spec filters are ignored.
- Simple-rule alerts carry `detection.type` RULE (DetectionInfo has no SIMPLE_RULE), so a client
  that looks the detection up must try `/simple-rules/{id}` after `/rules/{id}` answers 404.
- Faults (`script`) and refusals (`refuse`) are served after the auth check, to authenticated
  requests only. Besides statuses and broken bodies, a hostile source: `endless` (an empty page
  whose `next` is a fresh cursor that leads nowhere) and `oversized` (a page of 10,000 alerts
  whatever `limit` says); `endless_cursor` / `oversized_pages` make every listing do so.
- Late indexing (`late_fraction`, `late_by`, or `add_alert(late_by=S)`): an alert is listable
  (and found by `GET /alerts/{id}`) only S seconds after its createdAt, behind newer ones.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import calendar
import contextlib
import copy
import hashlib
import heapq
import hmac
import itertools
import json
import math
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import formatdate
from typing import Any

import orjson
from aiohttp import web

from bridge.sim import panther_catalog as catalog
from bridge.sim import serve_app
from bridge.sim.panther_writes import PantherWrites

__all__ = [
    "DEFAULT_TOKEN",
    "PantherSimulator",
    "RequestRecord",
    "format_instant",
    "parse_instant_ns",
    "serve",
]

JSON = dict[str, Any]
DEFAULT_TOKEN = "sim-panther-token"
NS = 1_000_000_000
STATUSES = ("OPEN", "TRIAGED", "RESOLVED", "CLOSED")
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO")
LIST_TYPES = ("ALERT", "DETECTION_ERROR", "SYSTEM_ERROR")
CATALOG_KINDS = tuple(catalog.OBJECTS)
# alert.detection.type per catalog kind; simple rules fire as rules (see module docstring).
DETECTION_TYPE_OF_KIND = {
    "rules": "RULE",
    "simple-rules": "RULE",
    "scheduled-rules": "SCHEDULED_RULE",
    "policies": "POLICY",
}
KINDS_OF_ALERT_TYPE = {
    "RULE": ("rules", "simple-rules"),
    "RULE_ERROR": ("rules", "simple-rules"),
    "SCHEDULED_RULE": ("scheduled-rules",),
    "SCHEDULED_RULE_ERROR": ("scheduled-rules",),
    "POLICY": ("policies",),
    "POLICY_ERROR": ("policies",),
}
ALERTS_LIMIT = (25, 50)  # (default, maximum): PANTHER.md
CATALOG_LIMIT = 100
DEFAULT_LOOKBACK_NS = 30 * 86_400 * NS
CURSOR_SIG_BYTES = 12

# Go's RFC3339Nano most of the time, like the example alerts; the rest shows up in real payloads.
_CREATED_STYLES = (("nano", 75), ("milli", 12), ("offset", 10), ("seconds", 3))
_STYLE_UNIT_NS = {"nano": 1, "offset": 1, "milli": 1_000_000, "seconds": NS}


# --- timestamps -----------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})?"
)
_DATE = re.compile(r"(\d{4})-(\d{2})(?:-(\d{2}))?")
_UNIX = re.compile(r"\d+(?:\.\d+)?")


def parse_instant_ns(text: str) -> int | None:
    """Epoch nanoseconds of what Panther accepts in `created-after`: RFC3339, date, month, Unix s.

    Nanoseconds, not a float or a datetime: `createdAt` carries up to 9 fraction digits and the
    listing must order and filter by exactly the instant the text says.
    """
    text = text.strip()
    if _UNIX.fullmatch(text):
        whole, _, fraction = text.partition(".")
        return int(whole) * NS + int((fraction + "0" * 9)[:9])
    if match := _RFC3339.fullmatch(text):
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        try:
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        except ValueError:
            return None
        seconds = calendar.timegm(moment.timetuple())
        if offset and offset not in "Zz":
            sign = -1 if offset[0] == "-" else 1
            seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[-2:]) * 60)
        return seconds * NS + int(((fraction or "") + "0" * 9)[:9])
    if match := _DATE.fullmatch(text):
        year, month, day = match.groups()
        try:
            moment = datetime(int(year), int(month), int(day or 1))
        except ValueError:
            return None
        return calendar.timegm(moment.timetuple()) * NS
    return None


def format_instant(ns: int, style: str = "nano") -> str:
    """RFC3339 text for epoch nanoseconds in one of the styles Panther emits.

    nano: Go's RFC3339Nano (`...27.418230551Z`, trailing zeros trimmed: `...11.5Z`, none: `...11Z`);
    milli: `...05.902Z`; offset: `+00:00` with as many digits as needed; seconds: `...04Z`.
    milli and seconds truncate: callers that need the exact instant pick a style that holds it.
    """
    seconds, fraction = divmod(ns, NS)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if style == "milli":
        return f"{base}.{fraction // 1_000_000:03d}Z"
    if style == "seconds":
        return f"{base}Z"
    digits = f"{fraction:09d}"
    if style == "offset":
        if fraction == 0:
            return f"{base}+00:00"
        return f"{base}.{digits[:6] if fraction % 1000 == 0 else digits}+00:00"
    return f"{base}.{digits.rstrip('0')}Z" if fraction else f"{base}Z"


def _to_ns(value: object) -> int:
    """Epoch ns of a datetime (naive = UTC), Unix seconds (int/float) or timestamp text."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return calendar.timegm(moment.utctimetuple()) * NS + moment.microsecond * 1000
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Via Decimal(str()) so 1700000000.5 is exactly .5 s, not the nearest double's digits.
        return int(Decimal(str(value)) * NS)
    if isinstance(value, str) and (parsed := parse_instant_ns(value)) is not None:
        return parsed
    raise ValueError(f"not a timestamp: {value!r}")


def list_type_of(alert_type: str) -> str:
    """Which `GET /alerts?type=` listing an alert type belongs to."""
    if alert_type == "SYSTEM_ERROR":
        return "SYSTEM_ERROR"
    return "DETECTION_ERROR" if alert_type.endswith("_ERROR") else "ALERT"


# --- requests and faults --------------------------------------------------------------------


@dataclass
class RequestRecord:
    """One request as the simulator saw it.

    `status` is 0 until the response is decided, and 499 (nginx's "client closed request") for a
    connection dropped by a `reset` fault.
    """

    method: str
    path: str
    query: list[tuple[str, str]]
    status: int
    at: float


@dataclass(frozen=True)
class _Fault:
    kind: str  # status | html | badjson | notlist | slow | ok | reset | endless | oversized
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


# What an API gateway or Panther says for each status; bodies are always JSON `{"message": ...}`.
_FAULT_MESSAGES = {
    400: "bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "internal server error",
    502: "Internal server error",
    503: "Service Unavailable",
    504: "Endpoint request timed out",
}
_NAMED_FAULTS = ("html", "badjson", "notlist", "ok", "reset", "endless", "oversized")
# What an `oversized` fault serves: a page far beyond `limit`, as a misbehaving proxy or a
# Panther regression might.
OVERSIZED_PAGE = 10_000


def parse_script(spec: str) -> list[_Fault]:
    """Faults of a script like `503,429:Retry-After=2,html,slow:0.5,ok`; ValueError if malformed."""
    faults = []
    for raw in spec.split(","):
        token = raw.strip()
        if not token:
            continue
        head, _, arg = token.partition(":")
        if head in _NAMED_FAULTS and not arg:
            faults.append(_Fault(head))
        elif head == "slow":
            try:
                faults.append(_Fault("slow", delay=float(arg)))
            except ValueError:
                raise ValueError(f"fault {token!r}: slow needs seconds, e.g. slow:1.5") from None
        elif head.isdigit() and 400 <= int(head) <= 599:
            headers: tuple[tuple[str, str], ...] = ()
            if arg:
                name, eq, value = arg.partition("=")
                if not eq or not name:
                    raise ValueError(f"fault {token!r}: header must be Name=value")
                headers = ((name, value),)
            faults.append(_Fault("status", status=int(head), headers=headers))
        else:
            raise ValueError(
                f"unknown fault {token!r}: use a 4xx/5xx code (optionally :Header=value), "
                f"slow:S or one of {', '.join(_NAMED_FAULTS)}"
            )
    return faults


# --- listing queries and cursors ------------------------------------------------------------


class _BadRequest(Exception):
    """A 400 with this message."""


@dataclass(frozen=True)
class _AlertQuery:
    """The filters of one `GET /alerts` listing; the cursor carries them to later pages."""

    list_type: str
    after_ns: int
    before_ns: int | None = None
    desc: bool = True
    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    sub_types: tuple[str, ...] = ()
    detection_ids: tuple[str, ...] = ()
    log_types: tuple[str, ...] = ()
    resource_types: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    name_contains: str | None = None
    event_count_min: int | None = None
    event_count_max: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _AlertQuery:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @property
    def needs_filter(self) -> bool:
        """Whether anything beyond type, status and the time window must be checked per alert."""
        return bool(
            self.severities or self.sub_types or self.detection_ids or self.log_types
            or self.resource_types or self.assignees or self.name_contains
            or self.event_count_min is not None or self.event_count_max is not None
        )


@dataclass
class _Hidden:
    """What the simulator knows of an alert but does not serve, or must not trust its JSON for."""

    key: tuple[int, str]
    list_type: str
    status: str
    log_types: tuple[str, ...] = ()
    resource_types: tuple[str, ...] = ()
    listed: bool = True  # False while a late alert waits to become listable


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"message": message}),
        content_type="application/json",
        headers=headers,
    )


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def _limit(raw: str | None, default: int, maximum: int | None) -> int:
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise _BadRequest(f"invalid value for limit: {raw!r} is not an integer") from None
    if maximum is not None and limit > maximum:
        raise _BadRequest(f"limit must be less than or equal to {maximum}")
    if limit < 1:
        raise _BadRequest("limit must be greater than or equal to 1")
    return limit


def _values(params: Mapping[str, str], name: str, allowed: tuple[str, ...] | None = None) -> tuple:
    """A repeated array parameter (`status=OPEN&status=TRIAGED`), empty values dropped."""
    values = tuple(v for v in params.getall(name, []) if v)  # type: ignore[attr-defined]
    for value in values:
        if allowed is not None and value not in allowed:
            raise _BadRequest(
                f"invalid value for {name}: {value!r} must be one of {', '.join(allowed)}"
            )
    return values


def _instant_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if not raw:
        return None
    parsed = parse_instant_ns(raw)
    if parsed is None:
        raise _BadRequest(f"invalid value for {name}: {raw!r} is not a date or time")
    return parsed


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise _BadRequest(f"invalid value for {name}: {raw!r} is not an integer") from None


# --- the simulator --------------------------------------------------------------------------

_MISSING: Any = object()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PantherSimulator:
    """An in-memory Panther tenant served over HTTP; tests drive it through its methods."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        page_latency: float = 0.0,
        seed: int = 0,
        late_fraction: float = 0.0,
        late_by: float = 0.0,
    ) -> None:
        self.token = token
        self.page_latency = page_latency
        # Late indexing (shared/api/PANTHER.md): this fraction of the alerts made with a fresh
        # createdAt (`add_alert` without one, `produce`) appear in listings `late_by` seconds
        # after their createdAt, behind newer ones.
        if not 0.0 <= late_fraction <= 1.0:
            raise ValueError(f"late_fraction {late_fraction!r} must be between 0 and 1")
        if late_by < 0:
            raise ValueError(f"late_by {late_by!r} must not be negative")
        self.late_fraction = late_fraction
        self.late_by = late_by
        self.late_ids: set[str] = set()  # every alert that was (or still is) listed late
        self._late: list[tuple[int, str]] = []  # heap of (listable at ns, id) not listed yet
        # Hostile modes, for tests of a source that cannot be trusted: every `GET /alerts`
        # answers an empty page with a fresh cursor (`endless_cursor`), or ignores `limit`
        # and serves up to this many alerts per page (`oversized_pages`).
        self.endless_cursor = False
        self.oversized_pages = 0
        self._nonce = itertools.count(1)
        self.alerts: dict[str, JSON] = {}
        self.requests: list[RequestRecord] = []
        self.catalog: dict[str, dict[str, JSON]] = {
            kind: {d["id"]: d for d in copy.deepcopy(objects)}
            for kind, objects in catalog.OBJECTS.items()
        }
        self._rng = random.Random(seed)
        # Same seed, same key: a restarted simulator still accepts the cursors it issued before.
        self._cursor_key = hashlib.sha256(f"panther-sim-cursor-{seed}".encode()).digest()
        self._hidden: dict[str, _Hidden] = {}
        # (list type, status) -> sorted [(createdAt ns, id)]: a listing is a bisect plus a merge of
        # at most four lists, never a scan of every alert.
        self._index: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._scripts: list[tuple[str, deque[_Fault]]] = []
        # Comments, the calling token, denied write routes: bridge.sim.panther_writes.
        self.writes = PantherWrites(self.alerts)
        self._refusals: list[tuple[str, int]] = []
        # Seconds added to the Date header of every answer: a server whose clock disagrees.
        self.date_offset = 0.0
        self.app = self._build_app()

    # --- alerts ---------------------------------------------------------------------------

    def add_alert(self, **fields: Any) -> JSON:
        """Store one generated alert, `fields` overriding what was generated; returns it as served.

        `createdAt` may be a datetime, Unix seconds or RFC3339 text (kept verbatim); its instant is
        kept exactly, so a past one makes a late-indexed alert. `detection` may be a catalog id, a
        `{id, type}` dict or None. `log_types` / `resource_types` set the hidden attributes the
        `log-type` / `resource-type` filters match (default: the detection's).
        """
        late_by = fields.pop("late_by", None)
        created = fields.pop("createdAt", _MISSING)
        if created is _MISSING:
            created_ns, created_text = self._fresh_created(time.time_ns())
            if late_by is None and self.late_fraction > 0 and self._late_draw():
                late_by = self.late_by
        else:
            created_ns, created_text = self._given_created(created)
        listable = created_ns + round(late_by * NS) if late_by else None
        return self._insert(created_ns, created_text, fields, listable_ns=listable)

    def _late_draw(self) -> bool:
        return self._rng.random() < self.late_fraction

    def _index_late(self) -> None:
        """List the late alerts whose time has come (called before answering about alerts)."""
        now = time.time_ns()
        while self._late and self._late[0][0] <= now:
            _, alert_id = heapq.heappop(self._late)
            hidden = self._hidden[alert_id]
            hidden.listed = True
            bisect.insort(self._index.setdefault((hidden.list_type, hidden.status), []),
                          hidden.key)

    @property
    def unlisted(self) -> int:
        """Late alerts made but not listable yet."""
        self._index_late()
        return len(self._late)

    def generate(
        self, n: int, *, start: datetime | None = None, spacing: float = 1.0, **fields: Any
    ) -> list[JSON]:
        """`n` alerts created at start, start+spacing, ... (default start: now - n*spacing).

        With an explicit start the instants are exact; with the default one each gets a random
        sub-millisecond offset (never reordering them) so the usual nanosecond fractions appear.
        """
        step = round(spacing * NS)
        if start is not None:
            base = _to_ns(start)
            return [self.add_alert(createdAt=_NsInstant(base + i * step), **fields)
                    for i in range(n)]
        base = time.time_ns() - n * step
        jitter = min(step, 1_000_000)
        alerts = []
        for i in range(n):
            offset = self._rng.randrange(jitter) if jitter > 0 else 0
            created_ns, created_text = self._fresh_created(base + i * step + offset)
            alerts.append(self._insert(created_ns, created_text, dict(fields)))
        return alerts

    def set_status(self, alert_id: str, status: str, *, by: str | None = None) -> None:
        """Change an alert's status the way an analyst would: `updatedBy` names who did it."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} must be one of {', '.join(STATUSES)}")
        alert, hidden = self.alerts[alert_id], self._hidden[alert_id]
        if status != hidden.status:
            self._unindex(hidden)
            hidden.status = status
            if hidden.listed:
                bisect.insort(self._index.setdefault((hidden.list_type, status), []), hidden.key)
        alert["status"] = status
        alert["updatedBy"] = _actor(by)

    async def produce(self, rate: float, duration: float, **fields: Any) -> list[JSON]:
        """Create alerts at `rate` per second, createdAt = now, for `duration` seconds (may be inf).

        Paced against the start time rather than by sleeping 1/rate each time, so a slow event
        loop catches up instead of drifting.
        """
        if rate <= 0 or duration <= 0:
            return []
        loop = asyncio.get_running_loop()
        start = loop.time()
        total = math.inf if math.isinf(duration) else math.ceil(rate * duration - 1e-9)
        made: list[JSON] = []
        while len(made) < total:
            elapsed = loop.time() - start
            if elapsed >= duration:
                break
            due = min(total, math.floor(elapsed * rate) + 1)
            while len(made) < due:
                made.append(self.add_alert(**fields))
            await asyncio.sleep(max(0.0, start + len(made) / rate - loop.time()))
        return made

    # --- catalog --------------------------------------------------------------------------

    def add_detection(self, kind: str, obj: JSON) -> JSON:
        """Add (or replace) a rule, scheduled rule, policy, simple rule or saved query."""
        if kind not in CATALOG_KINDS:
            raise ValueError(f"kind {kind!r} must be one of {', '.join(CATALOG_KINDS)}")
        if not obj.get("id"):
            raise ValueError("a catalog object needs an id")
        stored = copy.deepcopy(obj)
        self.catalog[kind][stored["id"]] = stored
        return stored

    def remove_detection(self, kind: str, detection_id: str) -> None:
        """Remove a catalog object: alerts keep pointing at it, as after a real deletion."""
        del self.catalog[kind][detection_id]

    # --- faults ---------------------------------------------------------------------------

    def script(self, spec: str, *, path: str = "/alerts") -> None:
        """Queue faults, each consumed by the next request whose path starts with `path`."""
        faults = parse_script(spec)
        for prefix, queue in self._scripts:
            if prefix == path:
                queue.extend(faults)
                return
        self._scripts.append((path, deque(faults)))

    def refuse(self, path_prefix: str, *, status: int = 403) -> None:
        """Answer every authenticated request under `path_prefix` with `status`, until told
        otherwise: a token without the permission that route needs."""
        self._refusals.append((path_prefix, status))

    def _refusal(self, path: str) -> int | None:
        for prefix, status in self._refusals:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return status
        return None

    def _next_fault(self, path: str) -> _Fault | None:
        for prefix, queue in self._scripts:
            if queue and path.startswith(prefix):
                return queue.popleft()
        return None

    # --- alert generation -----------------------------------------------------------------

    def _fresh_created(self, ns: int) -> tuple[int, str]:
        """An instant of our choosing: any style, the instant truncated to what the style holds."""
        style = self._pick_style(_CREATED_STYLES)
        unit = _STYLE_UNIT_NS[style]
        ns -= ns % unit
        return ns, format_instant(ns, style)

    def _given_created(self, value: object) -> tuple[int, str]:
        """A caller's instant: kept exactly, so only styles that can hold it are drawn."""
        if isinstance(value, _NsInstant):
            ns = value.ns
        elif isinstance(value, str):
            return _to_ns(value), value
        else:
            ns = _to_ns(value)
        styles = tuple((s, w) for s, w in _CREATED_STYLES if ns % _STYLE_UNIT_NS[s] == 0)
        return ns, format_instant(ns, self._pick_style(styles))

    def _pick_style(self, styles: tuple[tuple[str, int], ...]) -> str:
        names, weights = zip(*styles, strict=True)
        return self._rng.choices(names, weights)[0]

    def _new_id(self) -> str:
        while True:
            alert_id = f"{self._rng.getrandbits(128):032x}"
            if alert_id not in self.alerts:
                return alert_id

    def _insert(
        self,
        created_ns: int,
        created_text: str,
        fields: dict[str, Any],
        *,
        listable_ns: int | None = None,
    ) -> JSON:
        log_types = fields.pop("log_types", None)
        resource_types = fields.pop("resource_types", None)
        alert_type, detection, source = self._resolve_detection(
            fields.pop("type", None), fields.pop("detection", _MISSING)
        )
        alert_id = fields.pop("id", None) or self._new_id()
        if alert_id in self.alerts:
            raise ValueError(f"alert {alert_id} exists already")
        list_type = list_type_of(alert_type)
        if list_type == "ALERT":
            alert = self._alert_body(alert_type, detection, source, created_ns)
        elif list_type == "DETECTION_ERROR":
            alert = self._detection_error_body(detection)
        else:
            alert = self._system_error_body()
        alert = {"id": alert_id, "type": alert_type, **alert}
        alert["createdAt"] = created_text
        alert.update(fields)
        status = alert.setdefault("status", "OPEN")
        if status not in STATUSES:
            raise ValueError(f"status {status!r} must be one of {', '.join(STATUSES)}")
        if status != "OPEN" and "updatedBy" not in fields and not alert.get("updatedBy"):
            alert["updatedBy"] = _actor(self._rng.choice(catalog.ANALYSTS))
        source = source or {}
        hidden = _Hidden(
            key=(created_ns, alert_id),
            list_type=list_type,
            status=status,
            log_types=tuple(log_types if log_types is not None else source.get("logTypes", ())),
            resource_types=tuple(
                resource_types if resource_types is not None
                else source.get("resourceTypes", ())
            ),
        )
        self.alerts[alert_id] = alert
        self._hidden[alert_id] = hidden
        if listable_ns is not None and listable_ns > time.time_ns():
            hidden.listed = False
            self.late_ids.add(alert_id)
            heapq.heappush(self._late, (listable_ns, alert_id))
            return alert
        bisect.insort(self._index.setdefault((list_type, status), []), hidden.key)
        return alert

    def _unindex(self, hidden: _Hidden) -> None:
        if not hidden.listed:
            return
        keys = self._index[(hidden.list_type, hidden.status)]
        del keys[bisect.bisect_left(keys, hidden.key)]

    def _resolve_detection(
        self, alert_type: str | None, detection: object
    ) -> tuple[str, JSON | None, JSON | None]:
        """(alert type, `detection` as served, catalog object) from whatever the caller gave."""
        if detection is _MISSING:
            if alert_type == "SYSTEM_ERROR":
                return alert_type, None, None
            kinds = KINDS_OF_ALERT_TYPE.get(alert_type or "", DETECTION_TYPE_OF_KIND)
            candidates = [
                (kind, obj)
                for kind in kinds
                for obj in self.catalog[kind].values()
                if obj.get("enabled", True)
            ]
            if not candidates:
                return alert_type or "RULE", None, None
            kind, obj = self._rng.choice(candidates)
            ref = {"id": obj["id"], "type": DETECTION_TYPE_OF_KIND[kind]}
            return alert_type or ref["type"], ref, obj
        if detection is None:
            return alert_type or "RULE", None, None
        if isinstance(detection, str):
            detection = {"id": detection}
        if not isinstance(detection, dict):
            raise ValueError("detection must be a catalog id, an {id, type} dict or None")
        ref = dict(detection)
        found = next(
            (
                (kind, self.catalog[kind][ref["id"]])
                for kind in DETECTION_TYPE_OF_KIND
                if ref.get("id") in self.catalog[kind]
            ),
            None,
        )
        ref.setdefault("type", DETECTION_TYPE_OF_KIND[found[0]] if found else "RULE")
        return alert_type or ref["type"], ref, found[1] if found else None

    def _alert_body(
        self, alert_type: str, detection: JSON | None, source: JSON | None, created_ns: int
    ) -> JSON:
        rng = self._rng
        source = source or {}
        if source:
            flavor = catalog.FLAVORS.get(source["id"]) or catalog.generic_flavor(source)
        else:
            flavor = catalog.generic_flavor({"displayName": (detection or {}).get("id")})
        title, context = flavor(rng)
        base_severity = source.get("severity", "MEDIUM")
        # Mostly the detection's severity; dynamic severities make up the rest.
        severity = base_severity if rng.random() < 0.65 else rng.choice(SEVERITIES)
        is_policy = alert_type == "POLICY"
        if is_policy and rng.random() < 0.6:
            first = last = None
        else:
            first_ns = created_ns - rng.randint(5 * NS, 3600 * NS)
            last_ns = rng.randint(first_ns, created_ns)
            first = format_instant(first_ns, rng.choice(("seconds", "milli")))
            last = format_instant(last_ns, rng.choice(("milli", "nano")))
        threshold = int(source.get("threshold") or 1)
        event_count = 1 if is_policy else threshold + int(rng.expovariate(0.3))
        runbook = source.get("runbook") if not is_policy else None
        roll = rng.random()
        if roll < 0.1:
            runbook = None
        elif roll < 0.2:
            runbook = ""
        assignee = _actor(rng.choice(catalog.ANALYSTS)) if rng.random() < 0.15 else None
        alert: JSON = {
            "title": title,
            "severity": severity,
            "status": "OPEN",
            "createdAt": None,  # set by _insert; here for the key order of real payloads
            "firstEventOccurredAt": first,
            "lastReceivedEventAt": last,
            "eventCount": event_count,
            "runbook": runbook,
            "detection": detection,
            "context": context,
            "assignee": assignee,
            "updatedBy": assignee,
            "deliveries": [],
            "systemError": None,
        }
        if rng.random() < 0.2:
            alert["deliveries"] = [{
                "dispatchedAt": format_instant(created_ns + rng.randint(1, 3) * NS, "seconds"),
                "label": "#soc-alerts",
                "message": "",
                "outputId": "slack-soc",
                "statusCode": 200,
                "success": True,
            }]
        if rng.random() < 0.3:  # newer Panther versions
            alert["quality"] = None
            alert["contextTags"] = [rng.choice(("identity", "cloud", "network", "saas"))]
        if rng.random() < 0.15:  # outside the spec, as in Panther's own client fixtures
            alert["description"] = source.get("description", "")
            alert["reference"] = source.get("reference", "")
            alert["updatedAt"] = None
            alert["deliveryOverflow"] = False
        return alert

    def _detection_error_body(self, detection: JSON | None) -> JSON:
        """Sparse, like shared/api/examples/panther-alert-detection-error.json."""
        name = (detection or {}).get("id", "unknown detection")
        return {
            "title": f"{self._rng.choice(catalog.DETECTION_ERRORS)} in {name}",
            "severity": "INFO",
            "status": "OPEN",
            "createdAt": None,  # set by _insert; here for the key order of real payloads
            "eventCount": self._rng.randint(1, 5),
            "detection": detection,
            "deliveries": [],
        }

    def _system_error_body(self) -> JSON:
        """Like shared/api/examples/panther-alert-system-error.json: no detection, a systemError."""
        rng = self._rng
        template, source_type, error_type = rng.choice(catalog.SYSTEM_ERRORS)
        return {
            "title": template.format(
                name=rng.choice(catalog.SOURCE_NAMES), hours=rng.randint(1, 6)
            ),
            "severity": rng.choice(("HIGH", "MEDIUM")),
            "status": "OPEN",
            "createdAt": None,  # set by _insert; here for the key order of real payloads
            "detection": None,
            "systemError": {
                "detection": None,
                "sourceId": catalog.random_uuid(rng),
                "sourceType": source_type,
                "type": error_type,
            },
            "deliveries": [],
        }

    # --- HTTP -----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/alerts", self._list_alerts)
        app.router.add_patch("/alerts", self._patch_alerts)
        app.router.add_get("/alerts/{id}", self._get_alert)
        app.router.add_get("/alerts/{id}/events", self._alert_events)
        app.router.add_patch("/alerts/{id}", self._patch_alert)
        self.writes.install(app.router)
        for kind in CATALOG_KINDS:
            app.router.add_get(f"/{kind}", self._catalog_lister(kind))
            app.router.add_get(f"/{kind}/{{id}}", self._catalog_getter(kind))
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record = RequestRecord(
            request.method, request.path, list(request.query.items()), 0, time.monotonic()
        )
        self.requests.append(record)
        try:
            response = await self._respond(request, handler)
        except web.HTTPException as exc:  # aiohttp's own 404/405 for unknown routes: JSON too
            response = _error(exc.status, exc.reason)
        record.status = response.status
        if self.date_offset:
            response.headers["Date"] = formatdate(time.time() + self.date_offset, usegmt=True)
        return response

    async def _respond(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("X-API-Key") != self.token:
            return _error(401, "Unauthorized")
        denied = self.writes.refusal(request)
        if denied is not None:
            return denied
        refused = self._refusal(request.path)
        if refused is not None:
            return _error(refused, _FAULT_MESSAGES.get(refused, "refused"))
        fault = self._next_fault(request.path)
        if self.page_latency > 0 and request.path.startswith("/alerts"):
            await asyncio.sleep(self.page_latency)
        if fault is None or fault.kind == "ok":
            return await handler(request)
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return await handler(request)
        return self._fault_response(request, fault)

    def _fault_response(self, request: web.Request, fault: _Fault) -> web.Response:
        if fault.kind == "status":
            message = _FAULT_MESSAGES.get(fault.status, "simulated fault")
            return _error(fault.status, message, dict(fault.headers))
        if fault.kind == "html":  # a proxy in front of Panther answering for it
            return web.Response(
                status=502,
                text="<html><body>Bad Gateway</body></html>",
                content_type="text/html",
            )
        if fault.kind == "badjson":  # a body cut off mid-way
            return web.Response(
                body=b'{"results": [{"id": "', content_type="application/json"
            )
        if fault.kind == "notlist":
            return _json({"results": {"oops": 1}, "next": None})
        if fault.kind == "endless":
            return self._endless_page()
        if fault.kind == "oversized":
            return self._oversized_page(request)
        # reset: drop the connection without an answer, as a crashing load balancer does.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)

    def _endless_page(self) -> web.Response:
        """An empty page whose `next` is a valid cursor never issued before: it leads nowhere."""
        cursor = self._encode_cursor("alerts", {"q": {}, "k": [0, ""], "n": next(self._nonce)})
        return _json({"results": [], "next": cursor})

    def _oversized_page(self, request: web.Request) -> web.Response:
        """The listing's first `OVERSIZED_PAGE` (or `oversized_pages`) alerts, `limit` ignored."""
        self._index_late()
        size = self.oversized_pages or OVERSIZED_PAGE
        try:
            query = self._alert_query(request.query)
        except _BadRequest as exc:
            return _error(400, str(exc))
        keys = list(itertools.islice(self._matching_keys(query, None), size))
        return _json({"results": [self.alerts[k[1]] for k in keys], "next": None})

    async def _list_alerts(self, request: web.Request) -> web.Response:
        if self.endless_cursor:
            return self._endless_page()
        if self.oversized_pages and not request.query.get("cursor"):
            return self._oversized_page(request)
        self._index_late()
        params = request.query
        try:
            limit = _limit(params.get("limit"), *ALERTS_LIMIT)
            cursor = params.get("cursor")
            if cursor:
                payload = self._decode_cursor(cursor, "alerts")
                query = _AlertQuery.from_dict(payload["q"])
                after: tuple[int, str] | None = (payload["k"][0], payload["k"][1])
            else:
                query, after = self._alert_query(params), None
        except _BadRequest as exc:
            return _error(400, str(exc))
        keys = list(itertools.islice(self._matching_keys(query, after), limit + 1))
        more = len(keys) > limit
        keys = keys[:limit]
        next_cursor = None
        if more:
            last = keys[-1]
            # Unset filters are left out: shorter cursors, same meaning (the dataclass defaults).
            filters = {k: v for k, v in asdict(query).items() if v not in ((), None)}
            next_cursor = self._encode_cursor("alerts", {"q": filters, "k": list(last)})
        return _json({"results": [self.alerts[k[1]] for k in keys], "next": next_cursor})

    def _alert_query(self, params: Mapping[str, str]) -> _AlertQuery:
        list_type = params.get("type") or "ALERT"
        if list_type not in LIST_TYPES:
            raise _BadRequest(
                f"invalid value for type: {list_type!r} must be one of {', '.join(LIST_TYPES)}"
            )
        sort_dir = (params.get("sort-dir") or "desc").lower()
        if sort_dir not in ("asc", "desc"):
            raise _BadRequest(f"invalid value for sort-dir: {sort_dir!r} must be asc or desc")
        after = _instant_param(params, "created-after")
        return _AlertQuery(
            list_type=list_type,
            after_ns=after if after is not None else time.time_ns() - DEFAULT_LOOKBACK_NS,
            before_ns=_instant_param(params, "created-before"),
            desc=sort_dir == "desc",
            statuses=_values(params, "status", STATUSES),
            severities=_values(params, "severity", SEVERITIES),
            sub_types=_values(params, "sub-type"),
            detection_ids=_values(params, "detection-id"),
            log_types=_values(params, "log-type"),
            resource_types=_values(params, "resource-type"),
            assignees=_values(params, "assignee"),
            name_contains=params.get("name-contains") or None,
            event_count_min=_int_param(params, "event-count-min"),
            event_count_max=_int_param(params, "event-count-max"),
        )

    def _matching_keys(
        self, query: _AlertQuery, after: tuple[int, str] | None
    ) -> Iterator[tuple[int, str]]:
        """Keys of matching alerts in listing order, strictly past `after` (the cursor's key)."""
        streams = [
            _window(self._index.get((query.list_type, status), []), query, after)
            for status in (query.statuses or STATUSES)
        ]
        merged = heapq.merge(*streams, reverse=query.desc)
        if not query.needs_filter:
            return merged
        return (key for key in merged if self._matches(key[1], query))

    def _matches(self, alert_id: str, query: _AlertQuery) -> bool:
        alert, hidden = self.alerts[alert_id], self._hidden[alert_id]
        if query.severities and alert.get("severity") not in query.severities:
            return False
        if query.sub_types and alert.get("type") not in query.sub_types:
            return False
        if query.detection_ids and (alert.get("detection") or {}).get("id") not in (
            query.detection_ids
        ):
            return False
        if query.log_types and not set(query.log_types) & set(hidden.log_types):
            return False
        if query.resource_types and not set(query.resource_types) & set(hidden.resource_types):
            return False
        if query.assignees and (alert.get("assignee") or {}).get("id") not in query.assignees:
            return False
        if query.name_contains and query.name_contains.lower() not in (
            alert.get("title") or ""
        ).lower():
            return False
        count = alert.get("eventCount") or 0
        if query.event_count_min is not None and count < query.event_count_min:
            return False
        return query.event_count_max is None or count <= query.event_count_max

    async def _get_alert(self, request: web.Request) -> web.Response:
        self._index_late()
        alert_id = request.match_info["id"]
        alert = self.alerts.get(alert_id)
        if alert is None or not self._hidden[alert_id].listed:
            return _error(404, "alert not found")
        return _json(alert)

    async def _alert_events(self, request: web.Request) -> web.Response:
        """`GET /alerts/{id}/events`: the alert's raw events, `limit` (25, at most 50) a page."""
        alert_id = request.match_info["id"]
        alert = self.alerts.get(alert_id)
        if alert is None:
            return _error(404, "alert not found")
        try:
            limit = _limit(request.query.get("limit"), *ALERTS_LIMIT)
            cursor = request.query.get("cursor")
            start = self._decode_cursor(cursor, f"events/{alert_id}")["k"] if cursor else 0
        except _BadRequest as exc:
            return _error(400, str(exc))
        events = catalog.alert_events(alert, self._hidden[alert_id].log_types)
        page = events[start : start + limit]
        more = start + limit < len(events)
        next_cursor = (
            self._encode_cursor(f"events/{alert_id}", {"k": start + limit}) if more else None
        )
        return _json({"results": page, "next": next_cursor})

    async def _patch_alert(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None:
            return _error(400, "request body must be a JSON object")
        problem = self._apply_patch([request.match_info["id"]], body)
        return problem or web.Response(status=200)

    async def _patch_alerts(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None or not isinstance(body.get("ids"), list):
            return _error(400, "ids is missing from request body")
        problem = self._apply_patch([str(i) for i in body["ids"]], body)
        # Panther answers 204 with a JSON content type (its own client decodes it).
        return problem or web.Response(status=204, content_type="application/json")

    def _apply_patch(self, ids: list[str], body: JSON) -> web.Response | None:
        status, assignee = body.get("status"), body.get("assignee")
        if status is not None and status not in STATUSES:
            return _error(400, f"invalid value for status: {status!r}")
        missing = [i for i in ids if i not in self.alerts]
        if missing:
            return _error(404, f"alert not found: {missing[0]}")
        for alert_id in ids:
            if status is not None:
                self.set_status(alert_id, status, by=self.writes.token_id)
            if assignee is not None:
                self.alerts[alert_id]["assignee"] = _actor(assignee) if assignee else None
                self.alerts[alert_id]["updatedBy"] = _actor(self.writes.token_id)
        return None

    def _catalog_lister(self, kind: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            try:
                limit = _limit(request.query.get("limit"), CATALOG_LIMIT, None)
                cursor = request.query.get("cursor")
                if cursor:  # like /alerts: a cursor carries the first request's filters
                    payload = self._decode_cursor(cursor, kind)
                    last, filters = payload["k"], payload.get("f", {})
                else:
                    last, filters = None, catalog.detection_filters(kind, request.query)
            except (_BadRequest, ValueError) as exc:  # ValueError: a value outside an enum
                return _error(400, str(exc))
            objects = self.catalog[kind]
            ids = sorted(i for i in objects if catalog.detection_matches(objects[i], filters))
            start = bisect.bisect_right(ids, last) if last is not None else 0
            page = ids[start : start + limit]
            more = start + limit < len(ids)
            next_cursor = None
            if more:
                state = {"k": page[-1], "f": filters} if filters else {"k": page[-1]}
                next_cursor = self._encode_cursor(kind, state)
            return _json({"results": [self.catalog[kind][i] for i in page], "next": next_cursor})

        return handler

    def _catalog_getter(self, kind: str) -> Handler:
        noun = {"queries": "query", "policies": "policy"}.get(kind, kind[:-1].replace("-", " "))

        async def handler(request: web.Request) -> web.Response:
            obj = self.catalog[kind].get(request.match_info["id"])
            return _json(obj) if obj is not None else _error(404, f"{noun} not found")

        return handler

    def _encode_cursor(self, kind: str, payload: JSON) -> str:
        data = json.dumps({"kind": kind, **payload}, separators=(",", ":")).encode()
        signature = hmac.new(self._cursor_key, data, hashlib.sha256).digest()[:CURSOR_SIG_BYTES]
        return base64.urlsafe_b64encode(data + signature).decode().rstrip("=")

    def _decode_cursor(self, cursor: str, kind: str) -> JSON:
        """The payload of a cursor this simulator issued for `kind`; _BadRequest otherwise."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            data, signature = raw[:-CURSOR_SIG_BYTES], raw[-CURSOR_SIG_BYTES:]
            expected = hmac.new(self._cursor_key, data, hashlib.sha256).digest()
            if not hmac.compare_digest(signature, expected[:CURSOR_SIG_BYTES]):
                raise ValueError("bad signature")
            payload = json.loads(data)
            if payload.get("kind") != kind:
                raise ValueError("cursor of another listing")
            return payload
        except (ValueError, TypeError, InvalidOperation, UnicodeDecodeError):
            raise _BadRequest("invalid cursor") from None


@dataclass(frozen=True)
class _NsInstant:
    """An exact instant from `generate`, so add_alert need not round-trip it through a float."""

    ns: int


def _window(
    keys: list[tuple[int, str]], query: _AlertQuery, after: tuple[int, str] | None
) -> Iterator[tuple[int, str]]:
    """The slice of one sorted index list inside the query's window, in listing order, lazily."""
    lo = bisect.bisect_left(keys, (query.after_ns, ""))
    hi = len(keys) if query.before_ns is None else bisect.bisect_left(keys, (query.before_ns, ""))
    if query.desc:
        if after is not None:
            hi = min(hi, bisect.bisect_left(keys, after))
        return (keys[i] for i in range(hi - 1, lo - 1, -1))
    if after is not None:
        lo = max(lo, bisect.bisect_right(keys, after))
    return (keys[i] for i in range(lo, hi))


def _actor(actor_id: str | None) -> JSON:
    """`assignee` / `updatedBy`: the kind of actor follows from how its id looks."""
    if actor_id is None:
        actor_id = catalog.ANALYSTS[0]
    if actor_id.startswith("api-token"):
        return {"id": actor_id, "type": "api-token"}
    if actor_id in ("system", "panther"):
        return {"id": actor_id, "type": "system"}
    return {"id": actor_id, "type": "user"}


async def _json_body(request: web.Request) -> JSON | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def serve(
    host: str,
    port: int,
    *,
    alerts: int = 0,
    rate: float = 0.0,
    latency: float = 0.0,
    token: str = DEFAULT_TOKEN,
    faults: str = "",
    refuse: tuple[str, ...] = (),
    date_offset: float = 0.0,
    late_fraction: float = 0.0,
    late_by: float = 0.0,
) -> None:
    """`bridge sim panther`: serve until cancelled, with `alerts` alerts from the last 50 minutes
    and `rate` new ones per second, `late_fraction` of them listable `late_by` seconds late;
    `refuse` holds `PATH[:STATUS]` routes answered 403 or STATUS."""
    sim = PantherSimulator(
        token=token, page_latency=latency, late_fraction=late_fraction, late_by=late_by
    )
    sim.date_offset = date_offset
    for spec in refuse:
        prefix, _, status = spec.partition(":")
        sim.refuse(prefix, status=int(status) if status else 403)
    if alerts > 0:
        sim.generate(alerts, spacing=3000 / alerts)  # inside the default 1h lookback
    if faults:
        sim.script(faults)
    async with serve_app(sim.app, host, port) as url:
        print(f"panther simulator on {url} (X-API-Key: {token})", flush=True)
        producer = asyncio.create_task(sim.produce(rate, math.inf)) if rate > 0 else None
        try:
            await asyncio.Event().wait()
        finally:
            if producer is not None:
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer
