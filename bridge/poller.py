"""Intake: Panther alert pages -> normalized events in the outbox, without gaps or repeats.

Panther lists alerts by creation time only (shared/api/PANTHER.md), so the bridge keeps a
watermark per listing (`type=ALERT`, `DETECTION_ERROR`, `SYSTEM_ERROR`): the newest `createdAt`
durably recorded. The head poll reads forward from it in ascending order; each page's events and
the watermark that passes them are one transaction, so a crash replays at most a page, and replays
are absorbed by the dedup keys. The head poll starts a microsecond *before* the watermark: alerts
sharing the watermark's instant (ties, possibly split across a page boundary) are read again and
deduplicated, whether Panther's `created-after` is inclusive or not.

Alerts can be indexed late, with a `createdAt` behind the watermark. Re-reading an overlap on every
poll would make every poll cost the whole overlap (at 50 alerts/s, 2 minutes is 120 pages), so the
overlap is swept on its own slower cadence (`panther.late_sweep_interval`) instead. A sweep reads
from `overlap` before the *previous* sweep's watermark up to the current one: an alert at most
`overlap` late is indexed before the first sweep after it, and that sweep's window covers it
whatever the sweep interval. The previous sweep's point is stored, so a restart keeps the promise.

A listing may change between pages (alerts inserted, statuses changing): the watermark only moves
to what a recorded page held, inserts behind it are the sweep's, and repeats are deduplicated.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from pydantic import ValidationError

from bridge.catalog import Catalog, Enrichment
from bridge.errors import AuthError, BridgeError, TransportError
from bridge.filters import AlertFilter, listing_of
from bridge.health import Health
from bridge.metrics import Metrics
from bridge.normalize import EVENT_ALERT, Invalid, MappingRules, normalize, validation_summary
from bridge.outbox import NewEvent, Outbox, Rejected, TrackedAlert
from bridge.panther.client import PantherClient
from bridge.panther.models import Alert
from bridge.retry import RetryPolicy
from bridge.routing import Dropped, Router
from bridge.timeutil import parse_timestamp

log = structlog.get_logger("bridge.poller")

TERMINAL_STATUSES = frozenset({"RESOLVED", "CLOSED"})
# Query bounds are sent with microseconds; one microsecond below a bound makes it inclusive
# whatever Panther's own convention, and covers the nanoseconds the float watermark cannot hold.
EPSILON = 1e-6
# A backfill cuts its window into this many slices per concurrent pager, so that one busy slice
# (an alert storm) does not leave the other pagers idle.
SLICES_PER_PAGER = 4


def alert_key(alert_id: str) -> str:
    """Dedup key of the event that forwards a new alert: one per Panther alert, ever."""
    return f"{alert_id}:alert"


def watermark_key(listing: str) -> str:
    """The outbox meta key of a listing's watermark (`watermark` stays the ALERT listing's)."""
    return "watermark" if listing == "ALERT" else f"watermark:{listing}"


def swept_key(listing: str) -> str:
    """The meta key holding the watermark the last late sweep of a listing reached."""
    return f"swept:{listing}"


@dataclass
class PollResult:
    """What one listing pass did, for logs, metrics and `bridge once`."""

    pages: int = 0
    seen: int = 0
    new_events: int = 0
    rejected: int = 0
    filtered: int = 0
    watermark: float | None = None
    new_alert_ids: list[str] = field(default_factory=list)

    def add(self, other: PollResult) -> None:
        self.pages += other.pages
        self.seen += other.seen
        self.new_events += other.new_events
        self.rejected += other.rejected
        self.filtered += other.filtered
        self.new_alert_ids.extend(other.new_alert_ids)
        if other.watermark is not None:
            self.watermark = max(self.watermark or other.watermark, other.watermark)


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
        filters: AlertFilter | None = None,
        catalog: Catalog | None = None,
        backfill_concurrency: int = 8,
        track_for: float = 7 * 86_400.0,
        router: Router | None = None,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._metrics = metrics
        self._app_key_for = app_key_for
        self._rules = rules
        self._initial_lookback = initial_lookback
        self._overlap = overlap
        self._clock = clock
        self.filters = filters or AlertFilter()
        self._catalog = catalog
        self._backfill_concurrency = max(1, backfill_concurrency)
        self._track_for = track_for
        # Routes decide app key, tags or drop; without one, app_key_for and rules do.
        self._router = router
        self._dropped_ids: dict[str, None] = {}  # counted once each, though re-read in overlaps

    @property
    def listings(self) -> tuple[str, ...]:
        return self.filters.alert_types

    @property
    def rules(self) -> MappingRules:
        """The mapping rules alerts are normalized with (the status sync uses the same)."""
        return self._rules

    @property
    def app_key_for(self) -> Callable[[Alert], str | None]:
        return self._app_key_for

    def start_point(self, listing: str = "ALERT") -> float:
        """Where the head poll starts: the watermark, or `initial_lookback` ago on a fresh state."""
        watermark = self._outbox.watermark(watermark_key(listing))
        if watermark is None:
            return self._clock() - self._initial_lookback
        return watermark

    async def poll_head(self) -> PollResult:
        """Read every alert created at or after each listing's watermark, advancing it page by page.

        Costs requests in proportion to the new alerts: the pages after the watermark, plus the
        one that ends the listing.
        """
        total = PollResult()
        for listing in self.listings:
            start = self.start_point(listing) - EPSILON
            total.add(await self.read_window(start, None, advance_watermark=True, listing=listing))
        return total

    async def sweep_overlap(self) -> PollResult:
        """Re-read the window behind each watermark for alerts that were indexed late."""
        total = PollResult()
        if self._overlap <= 0:
            return total
        for listing in self.listings:
            watermark = self._outbox.watermark(watermark_key(listing))
            if watermark is None:
                continue
            swept = self._outbox.get_meta(swept_key(listing))
            since = min(watermark, float(swept)) if swept is not None else watermark
            total.add(
                await self.read_window(
                    since - self._overlap - EPSILON, watermark, advance_watermark=False,
                    listing=listing,
                )
            )
            self._outbox.set_meta(swept_key(listing), repr(watermark))
        return total

    async def backfill(self, since: float, until: float) -> PollResult:
        """Read [since, until) of every listing in slices paged concurrently; watermarks stay put.

        Nothing already recorded is recorded (hence sent) again: the dedup keys decide.
        """
        total = PollResult()
        count = self._backfill_concurrency * SLICES_PER_PAGER
        step = (until - since) / count
        bounds = [since + i * step for i in range(count)] + [until]
        for listing in self.listings:
            queue: asyncio.Queue[tuple[float, float]] = asyncio.Queue()
            for start, end in itertools.pairwise(bounds):
                queue.put_nowait((start - EPSILON, end))

            async def pager(listing: str = listing, queue: asyncio.Queue = queue) -> None:
                while not queue.empty():
                    start, end = queue.get_nowait()
                    total.add(
                        await self.read_window(
                            start, end, advance_watermark=False, listing=listing
                        )
                    )

            try:
                async with asyncio.TaskGroup() as tg:
                    for _ in range(min(self._backfill_concurrency, count)):
                        tg.create_task(pager())
            except ExceptionGroup as group:
                # One failed slice stops the backfill (what was recorded stays); say why plainly.
                failures = [e for e in group.exceptions if isinstance(e, BridgeError)]
                if failures and len(failures) == len(group.exceptions):
                    raise failures[0] from None
                raise
        return total

    async def read_window(
        self,
        start: float,
        end: float | None,
        *,
        advance_watermark: bool,
        listing: str = "ALERT",
    ) -> PollResult:
        """List [start, end) ascending and record every alert not yet recorded."""
        result = PollResult()
        async for page in self._client.iter_alert_pages(
            created_after=_dt(start),
            created_before=_dt(end) if end is not None else None,
            alert_type=listing,
            **self.filters.query(listing),
        ):
            result.pages += 1
            enrichment = await self._enrich(page.results)
            self.record_page(
                page.results,
                result,
                advance_watermark=advance_watermark,
                listing=listing,
                enrichment=enrichment,
            )
        return result

    async def _enrich(self, results: Sequence[Mapping[str, Any]]) -> Mapping[str, Enrichment]:
        """Catalog context for the page's alerts not yet recorded: a cache lookup + bounded wait."""
        if self._catalog is None:
            return {}
        ids = [r.get("id") for r in results if isinstance(r.get("id"), str)]
        known = self._outbox.known(alert_key(i) for i in ids)
        alerts = []
        for raw in results:
            if alert_key(str(raw.get("id"))) in known or not self.filters.accepts(raw):
                continue
            try:
                alerts.append(Alert.model_validate(raw))
            except ValidationError:
                continue
        return await self._catalog.enrich(alerts) if alerts else {}

    def record_page(
        self,
        results: list[dict[str, Any]],
        result: PollResult,
        *,
        advance_watermark: bool,
        listing: str = "ALERT",
        enrichment: Mapping[str, Enrichment] | None = None,
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
            if not self.filters.accepts(raw):
                result.filtered += 1
                continue
            context = (enrichment or {}).get(raw_id) if isinstance(raw_id, str) else None
            outcome = self._event_for(raw, observed, context)
            if isinstance(outcome, Dropped):
                self._count_dropped(outcome)
                continue
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
            watermark_key=watermark_key(listing),
            rejected=rejected,
            track=track,
        )
        result.seen += len(results)
        result.new_events += len(fresh)
        result.rejected += len(rejected)
        result.new_alert_ids.extend(e.alert_id for e in fresh)
        # A rejected event was received too (it went straight to dead letters), so that
        # received = sent + pending + dead-lettered holds for operators reading the metrics.
        if fresh or rejected:
            self._metrics.events_received.labels(kind=EVENT_ALERT).inc(len(fresh) + len(rejected))
        for rej in rejected:
            self._metrics.events_dead_lettered.labels(reason=rej.reason).inc()
            log.warning(
                "alert.rejected", alert_id=rej.alert_id, reason=rej.reason, detail=rej.detail
            )
        if advance_watermark and newest is not None:
            result.watermark = newest
            if listing == "ALERT":
                current = self._outbox.watermark()
                if current is not None:
                    self._metrics.watermark.set(current)

    def _count_dropped(self, dropped: Dropped) -> None:
        if dropped.alert_id in self._dropped_ids:
            return
        if len(self._dropped_ids) >= 100_000:
            self._dropped_ids.pop(next(iter(self._dropped_ids)))
        self._dropped_ids[dropped.alert_id] = None
        self._metrics.events_dropped.labels(reason=dropped.reason).inc()
        log.info(
            "alert.dropped", alert_id=dropped.alert_id, route=dropped.route, reason=dropped.reason
        )

    def _event_for(
        self, raw: Mapping[str, Any], observed: float, context: Enrichment | None = None
    ) -> tuple[NewEvent, TrackedAlert | None] | Rejected | Dropped:
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
        detection, queries = context if context is not None else (None, [])
        route = self._router.route(alert, detection) if self._router is not None else None
        if route is not None and route.app_key is None:
            return Dropped(alert.id, route.name, route.drop_reason or "route")
        outcome = normalize(
            alert,
            kind=EVENT_ALERT,
            observed_at=int(observed),
            detection=detection,
            queries=queries,
            rules=route.rules if route is not None else self._rules,
        )
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
        app_key = route.app_key if route is not None else self._app_key_for(alert)
        app_key = app_key or ""
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
        # Terminal alerts are followed too: RESOLVED -> OPEN (a reopen) must reach BigPanda, and
        # the status sync finds it at no extra request (see bridge.status_sync).
        tracked = None
        if created >= observed - self._track_for:
            tracked = TrackedAlert(alert.id, created, alert.status.upper(), 0, original)
        return event, tracked


# -- failures of the Panther loops ----------------------------------------------------------------


def retry_reason(exc: BaseException) -> str:
    """A bounded `bridge_retries_total{reason}` label for a failed Panther request."""
    if isinstance(exc, AuthError):
        return "unauthorized"
    status = getattr(exc, "status", 0)
    if status == 429:
        return "rate_limited"
    if status == 408 or (isinstance(exc, TransportError) and "Timeout" in str(exc)):
        return "timeout"
    if status >= 500:
        return "server_error"
    if isinstance(exc, TransportError):
        return "transport"
    if type(exc).__name__ == "BadResponseError":
        return "bad_response"
    return "other"


class FailureBurst:
    """The failures of one Panther loop (poll, sweep, status sync) since its last success.

    Each failure is counted (`bridge_retries_total{target="panther",reason}`); only the first of a
    burst is logged as a warning, the rest at debug, and the success that ends it once at info:
    an hour-long outage is two log lines, not one per attempt. 401/403 is logged as an error
    naming the permission the token lacks, and takes readiness down (`Health.panther_refused`).
    """

    def __init__(
        self, name: str, metrics: Metrics, health: Health | None, policy: RetryPolicy
    ) -> None:
        self.name = name
        self._metrics = metrics
        self._health = health
        self._policy = policy
        self.failures = 0
        self._retry_after: float | None = None

    def failed(self, exc: BridgeError) -> None:
        self.failures += 1
        reason = retry_reason(exc)
        self._retry_after = getattr(exc, "retry_after", None)
        self._metrics.retries.labels(target="panther", reason=reason).inc()
        message = str(exc)[:500]
        if self._health is not None:
            self._health.last_poll_error = message
        if isinstance(exc, AuthError):
            if self._health is not None:
                self._health.panther_refused = message
            if self.failures == 1:
                log.error(f"{self.name}.unauthorized", status=exc.status, error=message)
            return
        fields = {"error": message, "status": getattr(exc, "status", 0), "reason": reason}
        if self.failures == 1:
            log.warning(f"{self.name}.failed", **fields)
        else:
            log.debug(f"{self.name}.failed", consecutive_failures=self.failures, **fields)

    def succeeded(self) -> None:
        if self.failures:
            log.info(f"{self.name}.recovered", failures=self.failures)
        self.failures = 0
        self._retry_after = None

    def delay(self, interval: float) -> float:
        """The wait before the next attempt: `interval`, plus jittered backoff after failures,
        at least a server's (capped) Retry-After."""
        if not self.failures:
            return interval
        delay = interval + self._policy.delay(self.failures - 1)
        if self._retry_after is not None:
            delay = max(delay, min(self._retry_after, self._policy.max_retry_after))
        return min(delay, max(self._policy.max_backoff, interval))


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


__all__ = [
    "FailureBurst",
    "PollResult",
    "Poller",
    "alert_key",
    "listing_of",
    "retry_reason",
    "swept_key",
    "watermark_key",
]
