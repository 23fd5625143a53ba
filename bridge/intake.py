"""What intake records, shared by the poller and the status sync: events, dedup keys, accounting.

The poller decides *what to read* (watermarks, sweeps, catch-up slices) and the status sync *what
changed* (statuses, event counts); both turn a Panther alert into an outbox event the same way:
normalize it, and either freeze the BigPanda payload under its dedup key (`NewEvent`) or set it
aside as a dead letter with the reason and the alert as Panther sent it (`Rejected`). Both count
what they recorded the same way too, so that received = sent + pending + dead-lettered holds.

Dedup keys, one per thing BigPanda must hear about once:
- `<alert id>:alert`: the alert itself, forwarded once ever;
- `<alert id>:status_change:<n>:<bp status>`: its n-th status change;
- `<alert id>:event_count:<count>`: its grown `eventCount` (`mapping.forward_event_count`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import structlog
from pydantic import ValidationError

from bridge.metrics import Metrics
from bridge.normalize import EVENT_ALERT, Invalid, MappingRules, normalize, validation_summary
from bridge.panther.models import Alert
from bridge.state.records import NewEvent, Rejected

log = structlog.get_logger("bridge.intake")


def alert_key(alert_id: str) -> str:
    """Dedup key of the event that forwards a new alert: one per Panther alert, ever."""
    return f"{alert_id}:alert"


def status_change_key(alert_id: str, transition: int, bp_status: str) -> str:
    """Dedup key of the n-th status change event of an alert."""
    return f"{alert_id}:status_change:{transition}:{bp_status}"


def event_count_key(alert_id: str, count: int) -> str:
    """Dedup key of the event that forwards an alert's grown `eventCount`."""
    return f"{alert_id}:event_count:{count}"


def build_event(
    alert: Alert,
    *,
    kind: str,
    key_for: Callable[[str], str],
    observed: float,
    event_time: float,
    rules: MappingRules,
    app_key: str,
    original: Callable[[], bytes],
    detection: Mapping[str, Any] | None = None,
    queries: Sequence[Mapping[str, Any]] = (),
) -> NewEvent | Rejected:
    """The outbox event of one alert (new, or changed): its payload frozen under
    `key_for(bp status)`, or a dead letter under `key_for("invalid")` with the normalizer's reason.

    `observed` is when the bridge saw it (the payload's timestamp for a change); `event_time`
    orders the event (createdAt for a new alert); `original()` is only called for a dead letter.
    """
    outcome = normalize(
        alert,
        kind=kind,
        observed_at=int(observed),
        detection=detection,
        queries=queries,
        rules=rules,
    )
    if isinstance(outcome, Invalid):
        return Rejected(
            dedup_key=key_for("invalid"),
            alert_id=alert.id,
            kind=kind,
            reason=outcome.reason,
            detail=outcome.detail,
            original=original(),
            event_time=observed,
        )
    return NewEvent(
        dedup_key=key_for(outcome["status"]),
        alert_id=alert.id,
        kind=kind,
        bp_status=outcome["status"],
        app_key=app_key,
        payload=orjson.dumps(outcome),
        event_time=event_time,
    )


def original_form(raw: Mapping[str, Any]) -> bytes:
    """The alert as Panther sent it, keys sorted: kept for dead letters."""
    return orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)


def malformed(
    raw: Mapping[str, Any], exc: ValidationError, observed: float, *, kind: str = EVENT_ALERT,
    key_for: Callable[[str], str] | None = None,
) -> Rejected:
    """A listed object that is no Panther alert: dead-lettered once, under its id or its hash."""
    original = original_form(raw)
    alert_id = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else None
    if key_for is not None:
        dedup_key = key_for("invalid")
    else:
        dedup_key = alert_key(alert_id or "sha1-" + hashlib.sha1(original).hexdigest())
    return Rejected(
        dedup_key=dedup_key,
        alert_id=alert_id or "",
        kind=kind,
        reason="malformed_alert",
        detail=validation_summary(exc),
        original=original,
        event_time=observed,
    )


# What the status sync reads back from a tracked alert as first forwarded: its listing (`type`),
# its route (`severity`, `status`, `type`, `detection`) and its last `eventCount`. Only these are
# stored (sorted), not the whole alert: ~220 bytes instead of ~720 for a simulator alert.
_TRACKED_FIELDS = ("createdAt", "detection", "eventCount", "id", "severity", "status", "type")


def tracked_form(raw: Mapping[str, Any]) -> bytes:
    """The fields of a forwarded alert the status sync needs, as JSON with sorted keys."""
    return orjson.dumps({k: raw[k] for k in _TRACKED_FIELDS if k in raw})


def count_intake(
    metrics: Metrics,
    fresh: Sequence[NewEvent],
    rejected: Sequence[Rejected],
    *,
    rejected_event: str,
) -> None:
    """Count what one intake transaction recorded, by event kind, and log what it rejected.

    A rejected event was received too (it went straight to dead letters), so that
    received = sent + pending + dead-lettered holds for operators reading the metrics.
    """
    received: dict[str, int] = {}
    for item in (*fresh, *rejected):
        received[item.kind] = received.get(item.kind, 0) + 1
    for kind, n in received.items():
        metrics.events_received.labels(kind=kind).inc(n)
    for rej in rejected:
        metrics.events_dead_lettered.labels(reason=rej.reason).inc()
        log.warning(rejected_event, alert_id=rej.alert_id, reason=rej.reason, detail=rej.detail)


__all__ = [
    "alert_key",
    "build_event",
    "count_intake",
    "event_count_key",
    "malformed",
    "original_form",
    "status_change_key",
    "tracked_form",
]
