"""Panther alert (+ detection, + saved queries) -> one BigPanda alert event.

A deterministic function: no I/O and no clock reads (the observation time of a status change is
passed in), the same arguments always give the same payload, so it is trivially testable. To be
fast it memoizes one thing, the tags a catalog detection alone decides (`_detection_tags`): the
memo holds the detection object itself and is checked by identity, so what it returns never
differs from computing afresh (the catalog replaces detections, never mutates them). Every
constraint BigPanda puts on a payload
(shared/api/BIGPANDA.md) is enforced here and nowhere else, so the output is valid by construction:
a non-empty primary property, `timestamp` an int of epoch seconds, `description` <= 2048 chars, tag
names `[a-z][a-z0-9_-]{0,63}` without collisions, values strings / ints / flat arrays of them
(<= 30 items, <= 512 chars each), nested `context` flattened. What cannot be made valid comes back
as `Invalid` with a reason, never as an exception.

What goes where (templates, maps, tags, context filter) is `bridge.mapping.MappingRules`, compiled
once from config; this module only applies it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from bridge.mapping import (
    BIGPANDA_STATUSES,
    DEFAULT_SEVERITY_MAP,
    DEFAULT_STATUS_MAP,
    RESERVED_KEYS,
    ContextFilter,
    MappingRules,
    iso_utc,
)
from bridge.panther.models import Alert
from bridge.timeutil import epoch_seconds

__all__ = [
    "ARRAY_MAX",
    "BIGPANDA_STATUSES",
    "DEFAULT_RULES",
    "DEFAULT_SEVERITY_MAP",
    "DEFAULT_STATUS_MAP",
    "DESCRIPTION_MAX",
    "ELLIPSIS",
    "EVENT_ALERT",
    "EVENT_EVENT_COUNT",
    "EVENT_STATUS_CHANGE",
    "VALUE_MAX",
    "BigPandaAlert",
    "Invalid",
    "MappingRules",
    "bigpanda_status",
    "normalize",
    "tag_name",
    "tag_value",
    "unique_name",
    "validation_summary",
]

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
# BIGPANDA.md: seconds, never milliseconds. An instant this far out (year 5138) is not a real
# event time, and BigPanda would read it as milliseconds: it counts as no time at all.
_TIMESTAMP_MAX = 100_000_000_000
# Past this depth a value inside a compacted object is cut (orjson refuses > 255 levels).
_COMPACT_DEPTH = 8
_COMPACT_ITEMS = 64

EVENT_ALERT = "alert"
EVENT_STATUS_CHANGE = "status_change"
EVENT_EVENT_COUNT = "event_count"  # only eventCount grew (mapping.forward_event_count)

_RESERVED = RESERVED_KEYS

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_TAG_CHAR = re.compile(r"[^a-z0-9_-]+")
_UNDERSCORES = re.compile(r"_{2,}")


@dataclass(frozen=True, slots=True)
class Invalid:
    """An alert that cannot become a valid BigPanda payload; `reason` is a bounded metric label."""

    reason: str
    detail: str


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
    observed_at: int | float | None = None,
    detection: Mapping[str, Any] | None = None,
    queries: Sequence[Mapping[str, Any]] = (),
    rules: MappingRules = DEFAULT_RULES,
) -> BigPandaAlert | Invalid:
    """The BigPanda alert event for `alert`, or `Invalid` with the reason it cannot be one.

    `kind` is `alert` (a new alert: stamped with its `createdAt`), `status_change` or `event_count`
    (stamped with `observed_at`, when the bridge saw the new status or count, since Panther keeps
    no update time).
    `detection` and `queries` are the catalog objects behind the alert, when known (enrichment).
    """
    try:
        if not isinstance(alert, Alert):
            alert = Alert.model_validate(alert)
    except ValidationError as exc:
        return Invalid("malformed_alert", validation_summary(exc))
    except (TypeError, ValueError) as exc:  # not a mapping at all
        return Invalid("malformed_alert", f"not a Panther alert object: {exc}"[:VALUE_MAX])
    try:
        if detection.__class__ is not dict and not isinstance(detection, Mapping):
            detection = {}
        return _build(alert, kind, observed_at, detection, queries or (), rules)
    except Exception as exc:  # the stream must go on, whatever one alert holds
        return Invalid("normalize_failed", f"{type(exc).__name__}: {exc}"[:VALUE_MAX])


def _event_time(value: object) -> int | None:
    """Epoch seconds for any time shape (RFC3339, epoch s or ms), None if absent or absurd."""
    if value.__class__ is datetime:  # what the Alert model holds: skip re-parsing it
        seconds = int(value.timestamp() // 1)  # type: ignore[attr-defined]
    elif value.__class__ is int and 0 <= value < _TIMESTAMP_MAX:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    else:
        seconds = epoch_seconds(value)
    if seconds is None or not 0 <= seconds < _TIMESTAMP_MAX:
        return None
    return seconds


def _build(
    alert: Alert,
    kind: str,
    observed_at: int | float | None,
    detection: Mapping[str, Any],
    queries: Sequence[Mapping[str, Any]],
    rules: MappingRules,
) -> BigPandaAlert | Invalid:
    created = _event_time(alert.created_at)
    observed = _event_time(observed_at)
    timestamp = created if kind == EVENT_ALERT else observed
    if timestamp is None:
        timestamp = observed if observed is not None else created
    if timestamp is None:
        return Invalid("no_timestamp", f"alert {alert.id}: no createdAt and no observation time")

    host = _clean_text(rules.primary.render(alert, detection))
    if not host:
        return Invalid(
            "no_primary_property",
            f"alert {alert.id}: the primary property template "
            f"{rules.primary.config!r} rendered nothing",
        )
    payload: BigPandaAlert = {
        "status": bigpanda_status(alert.status, alert.severity, rules),
        "host": _truncate(host, VALUE_MAX),
        "timestamp": timestamp,
    }
    check = _clean_text(rules.secondary.render(alert, detection))
    if check:
        payload["check"] = _truncate(check, VALUE_MAX)
    identifier = _clean_text(rules.incident_identifier.render(alert, detection))
    if identifier:
        payload["incident_identifier"] = _truncate(identifier, VALUE_MAX)
    description = _clean_text(rules.description.render(alert, detection))
    if description:
        payload["description"] = _truncate(description, DESCRIPTION_MAX)

    ref = alert.detection
    detection_id = (ref.id if ref is not None else None) or _text(detection.get("id"))
    put = _put_text  # the model's text fields: strings or None, no generic dispatch needed
    put(payload, "panther_alert_id", alert.id)
    if rules.console_url:
        put(payload, "panther_alert_url", f"{rules.console_url.rstrip('/')}/alerts/{alert.id}")
    put(payload, "severity", alert.severity)
    put(payload, "panther_status", alert.status)
    put(payload, "detection_id", detection_id)
    put(payload, "detection_type", (ref.type if ref is not None else None) or alert.type)
    put(payload, "alert_type", alert.type)
    if alert.event_count is not None:
        payload["event_count"] = tag_value(alert.event_count)
    put(payload, "first_event_at", iso_utc(alert.first_event_occurred_at))
    put(payload, "last_event_at", iso_utc(alert.last_received_event_at))
    put(payload, "runbook", alert.runbook or _text(detection.get("runbook")))
    put(payload, "reference", alert.reference or _text(detection.get("reference")))
    named = (
        [q for q in queries if q.__class__ is dict or isinstance(q, Mapping)] if queries else None
    )
    if detection:
        payload.update(_detection_tags(detection, bool(named)))
    tags = TagSet(payload)
    add = tags.add_named
    if named:
        add("scheduled_queries", [q.get("name") for q in named if q.get("name")])
        add("scheduled_query_schedules", [_schedule(q) for q in named])
    if alert.assignee is not None:
        put(payload, "assignee", alert.assignee.id)
    if alert.system_error:
        add("system_error_type", alert.system_error.get("type"))
        add("system_error_source_type", alert.system_error.get("sourceType"))
    if alert.context_tags:
        add("context_tags", alert.context_tags)
    for name, value in rules.extra_tags.items():
        tags.replace(name, value)
    context = alert.context
    if (
        rules.include_context
        and not rules.context.nothing
        and (context.__class__ is dict or isinstance(context, Mapping))
    ):
        context_filter = None if rules.context.everything else rules.context
        _add_context(tags.items, "context", context, 0, (), context_filter, CONTEXT_TAGS_MAX)
    return payload


_DETECTION_TAGS: dict[int, tuple[Mapping[str, Any], bool, dict[str, Any]]] = {}
_DETECTION_TAGS_MAX = 4096


def _detection_tags(detection: Mapping[str, Any], has_queries: bool) -> dict[str, Any]:
    """The tags that depend on the catalog detection alone, computed once per detection object.

    Many alerts share one detection, and its list-valued tags are the costly ones. The cache holds
    the object itself, so its id cannot be reused while cached; the catalog replaces detection
    objects on refresh rather than mutating them, so a cached entry never goes stale.
    """
    entry = _DETECTION_TAGS.get(id(detection))
    if entry is not None and entry[0] is detection and entry[1] == has_queries:
        return entry[2]
    tags = TagSet()
    add = tags.add_named
    add("detection_name", _text(detection.get("displayName")) or None)
    add("log_types", detection.get("logTypes") or detection.get("resourceTypes"))
    reports = detection.get("reports")
    if isinstance(reports, Mapping):
        add("mitre_attack", reports.get("MITRE ATT&CK"))
    add("detection_tags", detection.get("tags"))
    if not has_queries:
        add("scheduled_queries", detection.get("scheduledQueries"))
    if len(_DETECTION_TAGS) >= _DETECTION_TAGS_MAX:
        _DETECTION_TAGS.clear()
    _DETECTION_TAGS[id(detection)] = (detection, has_queries, tags.items)
    return tags.items


class TagSet:
    """Tags added to a payload, names made valid and kept distinct: two keys never share a name."""

    __slots__ = ("items",)

    def __init__(self, items: dict[str, Any] | None = None) -> None:
        self.items: dict[str, Any] = {} if items is None else items

    def add(self, source_name: str, value: Any) -> bool:
        """Add under a sanitized, not yet taken name; False when there was no value to add."""
        value = tag_value(value)
        if value is None:
            return False
        self.items[unique_name(tag_name(source_name), self.items)] = value
        return True

    def add_named(self, name: str, value: Any) -> None:
        """Add a built-in tag, whose name is known valid and not yet taken."""
        if value is None:
            return
        value = tag_value(value)
        if value is not None:
            self.items[name] = value

    def replace(self, source_name: str, value: Any) -> None:
        """Set a configured tag, replacing a built-in one of the same name."""
        value = tag_value(value)
        if value is not None:
            self.items[tag_name(source_name)] = value


_TAG_NAMES: dict[str, str] = {}
_TAG_NAMES_MAX = 100_000


def tag_name(source: str) -> str:
    """`userIdentity.userName` -> `useridentity_user_name`-style names BigPanda can index.

    Context keys repeat from alert to alert: results are remembered (bounded) so the regexes run
    once per distinct key, not once per alert.
    """
    name = _TAG_NAMES.get(source)
    if name is None:
        name = _tag_name(source)
        if len(_TAG_NAMES) < _TAG_NAMES_MAX:
            _TAG_NAMES[source] = name
    return name


def _tag_name(source: str) -> str:
    snake = _CAMEL_BOUNDARY.sub("_", source).lower()
    name = _UNDERSCORES.sub("_", _NOT_TAG_CHAR.sub("_", snake)).strip("_-")
    if not name or not name[0].isalpha() or not name.isascii():
        name = f"tag_{name}".rstrip("_") if name else "tag"
    if name in _RESERVED:
        name = f"tag_{name}"
    return name[:TAG_NAME_MAX].rstrip("_-") or "tag"


_CHILD_NAMES: dict[str, dict[str, str]] = {}


def _child_name(prefix: str, key: str) -> str:
    """The tag name of `key` under `prefix` (`context` + `userName` -> `context_user_name`)."""
    names = _CHILD_NAMES.get(prefix)
    if names is None:
        names = {}
        if len(_CHILD_NAMES) < _TAG_NAMES_MAX:  # bounded: keys are whatever alerts carry
            _CHILD_NAMES[prefix] = names
    name = names.get(key)
    if name is None:
        name = tag_name(f"{prefix}_{tag_name(key)}")
        if len(names) < _TAG_NAMES_MAX:
            names[key] = name
    return name


def _add_context(
    items: dict[str, Any],
    prefix: str,
    value: Mapping[str, Any],
    depth: int,
    path: tuple[str, ...],
    context_filter: ContextFilter | None,
    budget: int,
) -> int:
    """Add `context` flattened (`context_user_name`), at most `budget` tags; returns what is left.

    Nested objects become prefixed keys down to `CONTEXT_DEPTH_MAX` levels, deeper ones compact
    JSON text. `path` (the raw keys from the top) matters only when a context filter applies.
    """
    for key, item in value.items():
        if budget <= 0:
            break
        key = key if key.__class__ is str else str(key)
        name = _child_name(prefix, key)
        here = (*path, key) if context_filter is not None else path
        cls = item.__class__
        nested = cls is dict or (
            cls is not str and cls is not int and cls is not list and isinstance(item, Mapping)
        )
        if nested and depth + 1 < CONTEXT_DEPTH_MAX:
            if context_filter is None or context_filter.may_keep_below(here):
                budget = _add_context(items, name, item, depth + 1, here, context_filter, budget)
            continue
        if context_filter is not None and not context_filter.keeps(here):
            continue
        tagged = tag_value(item)
        if tagged is None:
            continue
        items[name if name not in items else unique_name(name, items)] = tagged
        budget -= 1
    return budget


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
    cls = value.__class__
    if cls is str:  # the common case first, without the generic checks
        return _string_value(value)
    if cls is int:
        return value if -_INT_SAFE < value < _INT_SAFE else str(value)
    if value is None:
        return None
    if isinstance(value, str | int | float | datetime):
        return _scalar(value)
    if isinstance(value, Mapping):
        return _string_value(_compact(value))
    if isinstance(value, Sequence | set | frozenset):
        items: list[str | int] = []
        for item in value:
            if len(items) >= ARRAY_MAX:
                break
            if item.__class__ is str:
                scalar = _string_value(item)
            elif isinstance(item, Mapping | list | tuple | set | frozenset):
                scalar = _string_value(_compact(item))
            else:
                scalar = _scalar(item)
            if scalar is not None and scalar != "":
                items.append(scalar)
        return items or None
    return _scalar(str(value))


def _put_text(items: dict[str, Any], name: str, value: str | None) -> None:
    """`items[name] = value` made a valid tag value, unless there is no text to put."""
    if value:
        text = value.strip()
        if not text.isascii():
            text = _clean_text(text)
        if text:
            items[name] = text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 1] + ELLIPSIS


def _string_value(value: str) -> str | None:
    text = value.strip()
    if not text.isascii():
        text = _clean_text(text)
    if not text:
        return None
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 1] + ELLIPSIS


def _scalar(value: Any) -> str | int | None:
    if value.__class__ is str:
        return _string_value(value)
    if value is None:
        return None
    if value.__class__ is bool:
        return "true" if value else "false"
    if isinstance(value, int):
        return int(value) if -_INT_SAFE < value < _INT_SAFE else str(value)
    if isinstance(value, float):
        if value.is_integer() and -_INT_SAFE < value < _INT_SAFE:
            return int(value)
        return repr(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    text = _clean_text(str(value))
    return _truncate(text, VALUE_MAX) if text else None


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
    """Compact JSON text of a nested value (what BigPanda cannot take as a tag, made a string)."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        # Deeper than orjson goes, or integers past 64 bits: cut it down to something it takes.
        return orjson.dumps(_shallow(value, 0), default=str).decode()


def _shallow(value: Any, depth: int) -> Any:
    """`value` with at most `_COMPACT_DEPTH` levels and `_COMPACT_ITEMS` items per level."""
    if isinstance(value, Mapping):
        if depth >= _COMPACT_DEPTH:
            return ELLIPSIS
        items = list(value.items())[:_COMPACT_ITEMS]
        return {str(k): _shallow(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        if depth >= _COMPACT_DEPTH:
            return ELLIPSIS
        return [_shallow(v, depth + 1) for v in list(value)[:_COMPACT_ITEMS]]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def validation_summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "alert"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
