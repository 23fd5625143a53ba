"""Panther alert (+ detection, + saved queries) -> one BigPanda alert event.

A pure function: no I/O and no clock reads (the observation time of a status change is passed in),
so it is trivially testable and fast. Every constraint BigPanda puts on a payload
(shared/api/BIGPANDA.md) is enforced here and nowhere else, so the output is valid by construction:
a non-empty primary property, `timestamp` an int of epoch seconds, `description` <= 2048 chars, tag
names `[a-z][a-z0-9_-]{0,63}` without collisions, values strings / ints / flat arrays of them
(<= 30 items, <= 512 chars each), nested `context` flattened. What cannot be made valid comes back as
`Invalid` with a reason, never as an exception.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from bridge.panther.models import Alert
from bridge.timeutil import epoch_seconds

BigPandaAlert = dict[str, Any]

DESCRIPTION_MAX = 2048
VALUE_MAX = 512
ARRAY_MAX = 30
TAG_NAME_MAX = 64
CONTEXT_DEPTH_MAX = 4
CONTEXT_TAGS_MAX = 100
ELLIPSIS = "…"
# BigPanda stores ints; beyond what a double holds exactly they are sent as text.
_INT_SAFE = 2**53

EVENT_ALERT = "alert"
EVENT_STATUS_CHANGE = "status_change"

BIGPANDA_STATUSES = frozenset({"ok", "critical", "warning", "unknown", "acknowledged"})

DEFAULT_STATUS_MAP: Mapping[str, str] = {
    "TRIAGED": "acknowledged",
    "RESOLVED": "ok",
    "CLOSED": "ok",
}
DEFAULT_SEVERITY_MAP: Mapping[str, str] = {
    "CRITICAL": "critical",
    "HIGH": "critical",
    "MEDIUM": "warning",
    "LOW": "warning",
    "INFO": "warning",
}

# Reserved BigPanda keys a tag must never shadow.
_RESERVED = frozenset(
    {
        "app_key",
        "status",
        "host",
        "service",
        "application",
        "device",
        "check",
        "sensor",
        "timestamp",
        "description",
        "incident_identifier",
        "primary_property",
        "secondary_property",
    }
)

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_TAG_CHAR = re.compile(r"[^a-z0-9_-]+")
_UNDERSCORES = re.compile(r"_{2,}")


@dataclass(frozen=True, slots=True)
class Invalid:
    """An alert that cannot become a valid BigPanda payload; `reason` is a bounded metric label."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class MappingRules:
    """How Panther fields become BigPanda fields. Defaults are DESIGN.md's; config may change them."""

    status_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STATUS_MAP))
    severity_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SEVERITY_MAP))
    default_open_status: str = "warning"
    console_url: str | None = None
    include_context: bool = True
    extra_tags: Mapping[str, Any] = field(default_factory=dict)


DEFAULT_RULES = MappingRules()


def bigpanda_status(panther_status: str, severity: str | None, rules: MappingRules) -> str:
    """OPEN maps by severity; every other Panther status by the status map; unknown -> `unknown`."""
    status = (panther_status or "").upper()
    if status == "OPEN":
        return rules.severity_map.get((severity or "").upper(), rules.default_open_status)
    return rules.status_map.get(status, "unknown")


def normalize(
    alert: Alert | Mapping[str, Any],
    *,
    kind: str = EVENT_ALERT,
    observed_at: int | None = None,
    detection: Mapping[str, Any] | None = None,
    queries: Sequence[Mapping[str, Any]] = (),
    rules: MappingRules = DEFAULT_RULES,
) -> BigPandaAlert | Invalid:
    """The BigPanda alert event for `alert`, or `Invalid` with the reason it cannot be one.

    `kind` is `alert` (a new alert: stamped with its `createdAt`) or `status_change` (stamped with
    `observed_at`, when the bridge saw the new status, since Panther keeps no update time).
    """
    try:
        if not isinstance(alert, Alert):
            alert = Alert.model_validate(alert)
    except ValidationError as exc:
        return Invalid("malformed_alert", validation_summary(exc))
    except (TypeError, ValueError) as exc:  # not a mapping at all
        return Invalid("malformed_alert", f"not a Panther alert object: {exc}")
    try:
        return _build(alert, kind, observed_at, detection or {}, queries, rules)
    except Exception as exc:  # noqa: BLE001 - the stream must go on whatever one alert holds
        return Invalid("normalize_failed", f"{type(exc).__name__}: {exc}"[:VALUE_MAX])


def _build(
    alert: Alert,
    kind: str,
    observed_at: int | None,
    detection: Mapping[str, Any],
    queries: Sequence[Mapping[str, Any]],
    rules: MappingRules,
) -> BigPandaAlert | Invalid:
    created = epoch_seconds(alert.created_at)
    timestamp = created if kind == EVENT_ALERT else observed_at
    if timestamp is None:
        timestamp = observed_at if observed_at is not None else created
    if timestamp is None or timestamp < 0:
        return Invalid("no_timestamp", f"alert {alert.id}: no createdAt and no observation time")

    status = bigpanda_status(alert.status, alert.severity, rules)
    detection_id = (alert.detection.id if alert.detection else None) or None
    host = _clean_text(detection_id or alert.type)
    if not host:
        return Invalid("no_primary_property", f"alert {alert.id}: no detection id and no type")
    detection_name = _text(detection.get("displayName")) or None
    check = _clean_text(detection_name or alert.title or detection_id or alert.type)

    payload: BigPandaAlert = {
        "status": status,
        "host": _truncate(host, VALUE_MAX),
        "check": _truncate(check, VALUE_MAX),
        "timestamp": int(timestamp),
        "incident_identifier": _truncate(f"panther-{alert.id}", VALUE_MAX),
        "description": _description(alert, detection),
    }
    tags = TagSet()
    tags.add("panther_alert_id", alert.id)
    if rules.console_url:
        tags.add("panther_alert_url", f"{rules.console_url.rstrip('/')}/alerts/{alert.id}")
    tags.add("severity", alert.severity)
    tags.add("panther_status", alert.status)
    tags.add("detection_id", detection_id)
    tags.add("detection_name", detection_name)
    tags.add("detection_type", (alert.detection.type if alert.detection else None) or alert.type)
    tags.add("alert_type", alert.type)
    tags.add("log_types", detection.get("logTypes") or detection.get("resourceTypes"))
    tags.add("event_count", alert.event_count)
    tags.add("first_event_at", _iso(alert.first_event_occurred_at))
    tags.add("last_event_at", _iso(alert.last_received_event_at))
    tags.add("runbook", alert.runbook or _text(detection.get("runbook")))
    tags.add("reference", alert.reference or _text(detection.get("reference")))
    reports = detection.get("reports")
    if isinstance(reports, Mapping):
        tags.add("mitre_attack", reports.get("MITRE ATT&CK"))
    tags.add("detection_tags", detection.get("tags"))
    if queries:
        tags.add("scheduled_queries", [q.get("name") for q in queries if q.get("name")])
        tags.add("scheduled_query_schedules", [_schedule(q) for q in queries])
    elif detection.get("scheduledQueries"):
        tags.add("scheduled_queries", detection.get("scheduledQueries"))
    if alert.assignee and alert.assignee.id:
        tags.add("assignee", alert.assignee.id)
    if alert.system_error:
        tags.add("system_error_type", alert.system_error.get("type"))
        tags.add("system_error_source_type", alert.system_error.get("sourceType"))
    tags.add("context_tags", alert.context_tags)
    for name, value in rules.extra_tags.items():
        tags.add(name, value)
    if rules.include_context and isinstance(alert.context, Mapping):
        for name, value in _flatten("context", alert.context, 0):
            if tags.context_count >= CONTEXT_TAGS_MAX:
                break
            tags.add(name, value, context=True)
    payload.update(tags.items)
    return payload


class TagSet:
    """Tag names made valid and kept distinct: two source keys never land on one name."""

    __slots__ = ("context_count", "items")

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}
        self.context_count = 0

    def add(self, source_name: str, value: Any, *, context: bool = False) -> None:
        value = tag_value(value)
        if value is None:
            return
        name = unique_name(tag_name(source_name), self.items)
        self.items[name] = value
        if context:
            self.context_count += 1


def tag_name(source: str) -> str:
    """`userIdentity.userName` -> `useridentity_user_name`-style names BigPanda can index."""
    snake = _CAMEL_BOUNDARY.sub("_", source).lower()
    name = _UNDERSCORES.sub("_", _NOT_TAG_CHAR.sub("_", snake)).strip("_-")
    if not name or not name[0].isalpha() or not name.isascii():
        name = f"tag_{name}".rstrip("_") if name else "tag"
    if name in _RESERVED:
        name = f"tag_{name}"
    return name[:TAG_NAME_MAX].rstrip("_-") or "tag"


def unique_name(name: str, taken: Mapping[str, Any]) -> str:
    """`name`, or a suffixed variant when an earlier key already took it (deterministic)."""
    if name not in taken:
        return name
    for n in range(2, 100):
        suffix = f"_{n}"
        candidate = name[: TAG_NAME_MAX - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return name[: TAG_NAME_MAX - 9] + "_" + digest


def tag_value(value: Any) -> str | int | list[str | int] | None:
    """A BigPanda tag value (string, int, or flat array of them), or None when there is nothing."""
    if value is None:
        return None
    if isinstance(value, str | int | float | bool | datetime):
        return _scalar(value)
    if isinstance(value, Mapping):
        text = _compact(value)
        return _truncate(text, VALUE_MAX) if text else None
    if isinstance(value, Sequence | set | frozenset | tuple):
        items: list[str | int] = []
        for item in value:
            if len(items) >= ARRAY_MAX:
                break
            scalar = _scalar(item) if not isinstance(item, Mapping | list | tuple) else None
            if scalar is None and item is not None:
                scalar = _truncate(_compact(item), VALUE_MAX)
            if scalar is not None and scalar != "":
                items.append(scalar)
        return items or None
    return _truncate(str(value), VALUE_MAX) or None


def _scalar(value: Any) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value if -_INT_SAFE < value < _INT_SAFE else str(value)
    if isinstance(value, float):
        if value.is_integer() and -_INT_SAFE < value < _INT_SAFE:
            return int(value)
        return repr(value)
    if isinstance(value, datetime):
        return _iso(value)
    text = _clean_text(str(value))
    return _truncate(text, VALUE_MAX) if text else None


def _flatten(prefix: str, value: Any, depth: int) -> list[tuple[str, Any]]:
    """Nested objects become `context_user_name` style keys; past the depth limit, compact text."""
    out: list[tuple[str, Any]] = []
    for key, item in value.items():
        name = f"{prefix}_{tag_name(str(key))}"
        if isinstance(item, Mapping) and depth + 1 < CONTEXT_DEPTH_MAX:
            out.extend(_flatten(name, item, depth + 1))
        else:
            out.append((name, item))
    return out


def _description(alert: Alert, detection: Mapping[str, Any]) -> str:
    title = _clean_text(alert.title or "") or f"Panther {alert.type} alert {alert.id}"
    extra = _text(detection.get("description")) or _clean_text(alert.description or "")
    text = f"{title} — {extra}" if extra and extra != title else title
    return _truncate(text, DESCRIPTION_MAX)


def _schedule(query: Mapping[str, Any]) -> str:
    name = _text(query.get("name")) or "query"
    schedule = query.get("schedule")
    if not isinstance(schedule, Mapping):
        return name
    if schedule.get("disabled"):
        return f"{name}: disabled"
    if schedule.get("cron"):
        return f"{name}: cron {schedule['cron']}"
    if schedule.get("rateMinutes"):
        return f"{name}: every {schedule['rateMinutes']}m"
    return name


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _text(value: Any) -> str:
    return _clean_text(value) if isinstance(value, str) else ""


def _clean_text(value: str | None) -> str:
    """Strip and drop characters JSON cannot carry (lone surrogates) so encoding never fails."""
    if not value:
        return ""
    text = value.strip()
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
        text = text.replace("\x00", "")
    return text


def _truncate(text: str, limit: int) -> str:
    """At most `limit` characters; a cut is marked with `…` so nobody mistakes it for the whole."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _compact(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return _clean_text(str(value))


def validation_summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "alert"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
