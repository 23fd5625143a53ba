"""Intake: Panther alert pages -> normalized events in the outbox, without gaps or repeats.

Panther lists alerts by creation time only (shared/api/PANTHER.md), so the bridge keeps a
watermark: the newest `createdAt` durably recorded. The head poll reads forward from it in
ascending order; each page's events and the watermark that passes them are one transaction, so a
crash replays at most a page, and replays are absorbed by the dedup keys.

Alerts can be indexed late, with a `createdAt` behind the watermark. Re-reading an overlap on every
poll would make every poll cost the whole overlap (at 50 alerts/s, 2 minutes is 120 pages), so the
overlap window is swept on its own slower cadence instead.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from pydantic import ValidationError

from bridge.metrics import Metrics
from bridge.normalize import EVENT_ALERT, Invalid, MappingRules, normalize, validation_summary
from bridge.outbox import NewEvent, Outbox, Rejected, TrackedAlert
from bridge.panther.client import PantherClient
from bridge.panther.models import Alert
from bridge.timeutil import parse_timestamp

log = structlog.get_logger("bridge.poller")

TERMINAL_STATUSES = frozenset({"RESOLVED", "CLOSED"})


def alert_key(alert_id: str) -> str:
    """Dedup key of the event that forwards a new alert: one per Panther alert, ever."""
    return f"{alert_id}:alert"


@dataclass
class PollResult:
    """What one listing pass did, for logs, metrics and `bridge once`."""

    pages: int = 0
    seen: int = 0
    new_events: int = 0
    rejected: int = 0
    watermark: float | None = None
    new_alert_ids: list[str] = field(default_factory=list)


class Poller:
    """Reads Panther alert listings into the outbox."""

    def __init__(
        self,
        client: PantherClient,
        outbox: Outbox,
        metrics: Metrics,
        *,
        app_key_for: Callable[[Alert], str | None],
        rules: MappingRules,
        initial_lookback: float,
        overlap: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._metrics = metrics
        self._app_key_for = app_key_for
        self._rules = rules
        self._initial_lookback = initial_lookback
        self._overlap = overlap
        self._clock = clock

    def start_point(self) -> float:
        """Where the head poll starts: the watermark, or `initial_lookback` ago on a fresh state."""
        watermark = self._outbox.watermark()
        if watermark is None:
            return self._clock() - self._initial_lookback
        return watermark

    async def poll_head(self) -> PollResult:
        """Read every alert created at or after the watermark, advancing it page by page."""
        return await self.read_window(self.start_point(), None, advance_watermark=True)

    async def sweep_overlap(self) -> PollResult:
        """Re-read the `overlap` window behind the watermark for alerts that were indexed late."""
        watermark = self._outbox.watermark()
        if watermark is None or self._overlap <= 0:
            return PollResult()
        return await self.read_window(watermark - self._overlap, watermark, advance_watermark=False)

    async def read_window(
        self, start: float, end: float | None, *, advance_watermark: bool
    ) -> PollResult:
        """List [start, end) ascending and record every alert not yet recorded."""
        result = PollResult()
        async for page in self._client.iter_alert_pages(
            created_after=_dt(start), created_before=_dt(end) if end is not None else None
        ):
            result.pages += 1
            self.record_page(page.results, result, advance_watermark=advance_watermark)
        return result

    def record_page(
        self, results: list[dict[str, Any]], result: PollResult, *, advance_watermark: bool
    ) -> None:
        """Normalize the page's unseen alerts and store them with the new watermark, atomically."""
        observed = self._clock()
        ids = [r.get("id") for r in results if isinstance(r.get("id"), str)]
        known = self._outbox.known(alert_key(i) for i in ids)
        events: list[NewEvent] = []
        rejected: list[Rejected] = []
        track: list[TrackedAlert] = []
        newest: float | None = None
        for raw in results:
            created = parse_timestamp(raw.get("createdAt"))
            if created is not None:
                ts = created.timestamp()
                newest = ts if newest is None or ts > newest else newest
            raw_id = raw.get("id")
            if isinstance(raw_id, str) and alert_key(raw_id) in known:
                continue
            outcome = self._event_for(raw, observed)
            if isinstance(outcome, Rejected):
                rejected.append(outcome)
                continue
            event, tracked = outcome
            events.append(event)
            if tracked is not None:
                track.append(tracked)
        fresh = self._outbox.record(
            events,
            watermark=newest if advance_watermark else None,
            rejected=rejected,
            track=track,
        )
        result.seen += len(results)
        result.new_events += len(fresh)
        result.rejected += len(rejected)
        result.new_alert_ids.extend(e.alert_id for e in fresh)
        if fresh:
            self._metrics.events_received.labels(kind=EVENT_ALERT).inc(len(fresh))
        for rej in rejected:
            self._metrics.events_dead_lettered.labels(reason=rej.reason).inc()
            log.warning(
                "alert.rejected", alert_id=rej.alert_id, reason=rej.reason, detail=rej.detail
            )
        if advance_watermark and newest is not None:
            result.watermark = newest
            current = self._outbox.watermark()
            if current is not None:
                self._metrics.watermark.set(current)

    def _event_for(
        self, raw: Mapping[str, Any], observed: float
    ) -> tuple[NewEvent, TrackedAlert | None] | Rejected:
        original = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        try:
            alert = Alert.model_validate(raw)
        except ValidationError as exc:
            alert_id = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else None
            return Rejected(
                dedup_key=alert_key(alert_id or "sha1-" + hashlib.sha1(original).hexdigest()),
                alert_id=alert_id or "",
                kind=EVENT_ALERT,
                reason="malformed_alert",
                detail=validation_summary(exc),
                original=original,
                event_time=observed,
            )
        outcome = normalize(alert, kind=EVENT_ALERT, observed_at=int(observed), rules=self._rules)
        if isinstance(outcome, Invalid):
            return Rejected(
                dedup_key=alert_key(alert.id),
                alert_id=alert.id,
                kind=EVENT_ALERT,
                reason=outcome.reason,
                detail=outcome.detail,
                original=original,
                event_time=observed,
            )
        app_key = self._app_key_for(alert) or ""
        created = alert.created_at.timestamp() if alert.created_at else observed
        event = NewEvent(
            dedup_key=alert_key(alert.id),
            alert_id=alert.id,
            kind=EVENT_ALERT,
            bp_status=outcome["status"],
            app_key=app_key,
            payload=orjson.dumps(outcome),
            event_time=created,
        )
        tracked = None
        if alert.status.upper() not in TERMINAL_STATUSES:
            tracked = TrackedAlert(alert.id, created, alert.status.upper(), 0, original)
        return event, tracked


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)
