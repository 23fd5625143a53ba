"""Intake: Panther alert pages -> normalized events in the outbox, without gaps or repeats.

Panther lists alerts by creation time only (shared/api/PANTHER.md), so the bridge keeps a
watermark per listing (`type=ALERT`, `DETECTION_ERROR`, `SYSTEM_ERROR`): the newest `createdAt`
durably recorded. The head poll reads forward from it in ascending order; each page's events and
the watermark that passes them are one transaction, so a crash replays at most a page, and replays
are absorbed by the dedup keys. The head poll starts a microsecond *before* the watermark: alerts
sharing the watermark's instant (ties, possibly split across a page boundary) are read again and
deduplicated, whether Panther's `created-after` is inclusive or not.

Alerts are indexed late, routinely: their `createdAt` falls behind the watermark (PANTHER.md). The
late sweep re-reads from `overlap` before the point the *previous* sweep reached up to the current
watermark: an alert at most `overlap` late is listable before the first sweep after it, and that
sweep's window covers it however long the gap between sweeps. Coverage is contiguous from the
first poll on: a fresh state's sweep point is where its first poll starts, and the point is
stored in the outbox meta, so restarts (crash loops, `bridge once` from cron) keep it. The sweep
runs after a head poll whenever it is due (`sweep_due`): at start, then as often as its budget
allows (`bridge.budget.SweepBudget`): at normal volume, where the overlap holds a few pages,
after every poll, so a late alert is delivered within a couple of poll intervals; at storm
volume within `panther.sweep_share` of Panther requests, and at least every
`panther.late_sweep_interval`.

The watermark never moves past now + `MAX_CLOCK_SKEW`: an alert stamped further in the future (a
broken clock, a hostile source) is delivered and logged once, but does not move the watermark,
so it hides none of the alerts after it (the head poll reads it again each time: one alert).

A catch-up (after an outage, a storm) pages its window with concurrent pagers and pays per
alert: `bridge.catchup` schedules the slices (one per pager, the busiest split when a pager runs
out of work), and this module reads each one (`_read_slice`).

A listing may change between pages (alerts inserted, statuses changing): the watermark only moves
to what a recorded page held, inserts behind it are the sweep's, and repeats are deduplicated.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError

from bridge.budget import SweepBudget
from bridge.catalog import Catalog, Enrichment
from bridge.catchup import Slice, SplitReader
from bridge.filters import AlertFilter, listing_of
from bridge.intake import (
    alert_key,
    build_event,
    count_intake,
    malformed,
    original_form,
    tracked_form,
)
from bridge.metrics import Metrics
from bridge.normalize import EVENT_ALERT, MappingRules
from bridge.panther.client import PantherClient
from bridge.panther.models import Alert, AlertPage
from bridge.routing import Dropped, Router
from bridge.state.records import NewEvent, Rejected, TrackedAlert
from bridge.state.sqlite import Outbox
from bridge.timeutil import parse_timestamp

log = structlog.get_logger("bridge.poller")

TERMINAL_STATUSES = frozenset({"RESOLVED", "CLOSED"})
# Query bounds are sent with microseconds; one microsecond below a bound makes it inclusive
# whatever Panther's own convention, and covers the nanoseconds the float watermark cannot hold.
EPSILON = 1e-6
# How far ahead of the bridge's clock the watermark may go: clocks disagree a little, never by
# years (one alert stamped 2099 must not hide every later one).
MAX_CLOCK_SKEW = 60.0
# Pages of a slice stored per transaction (catch-up, backfill): see `read_window`.
PAGES_PER_COMMIT = 8
# The head poll switches to concurrent slices when a full page's newest alert is further behind
# now than this: well past what one poll interval accumulates, so steady polling never slices.
CATCHUP_LAG = 120.0


def watermark_key(listing: str) -> str:
    """The outbox meta key of a listing's watermark (`watermark` stays the ALERT listing's)."""
    return "watermark" if listing == "ALERT" else f"watermark:{listing}"


def swept_key(listing: str) -> str:
    """The meta key holding the watermark the last late sweep of a listing reached."""
    return f"swept:{listing}"


def sweeping_key(listing: str) -> str:
    """The meta key of a sweep run out of pages: `<createdAt read up to>,<its watermark>`."""
    return f"sweeping:{listing}"


@dataclass(slots=True)
class _PageWork:
    """A page normalized and waiting to be stored."""

    events: list[NewEvent]
    rejected: list[Rejected]
    track: list[TrackedAlert]
    newest: float | None


@dataclass(frozen=True)
class Forwarding:
    """What decides whether and how a Panther alert is forwarded, shared by the poller and the
    status sync, so an alert's later changes are decided as the alert was: its app key
    (`app_key_for`, or the `router`'s route), mapping rules, enrichment (`catalog`), filters, and
    how long after its creation its status is followed (`track_for`)."""

    app_key_for: Callable[[Alert], str | None]
    rules: MappingRules
    router: Router | None = None
    catalog: Catalog | None = None
    filters: AlertFilter = field(default_factory=AlertFilter)
    track_for: float = 7 * 86_400.0


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

    def log_fields(self) -> dict[str, int]:
        """What the logs say of a pass (`poll.completed`, `backfill.read`), under the same names."""
        return {"pages": self.pages, "alerts_seen": self.seen, "new_events": self.new_events,
                "rejected": self.rejected}

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
        forwarding: Forwarding,
        *,
        initial_lookback: float,
        overlap: float,
        clock: Callable[[], float] = time.time,
        backfill_concurrency: int = 8,
        catchup_concurrency: int | None = None,
        catchup_lag: float = CATCHUP_LAG,
        on_recorded: Callable[[], None] | None = None,
        sweep_budget: SweepBudget | None = None,
        late_sweep_interval: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._metrics = metrics
        self._initial_lookback = initial_lookback
        self._overlap = overlap
        self._clock = clock
        self.forwarding = forwarding
        self.filters = forwarding.filters
        self._backfill_concurrency = max(1, backfill_concurrency)
        # Concurrent pagers of a head-poll catch-up (1: the head poll always pages sequentially).
        self._catchup_pagers = max(
            1, backfill_concurrency if catchup_concurrency is None else catchup_concurrency
        )
        self._catchup_lag = catchup_lag
        self._dropped_ids: dict[str, None] = {}  # counted once each, though re-read in overlaps
        # Told when new events are stored, so the dispatcher wakes during a long catch-up too.
        self._on_recorded = on_recorded
        self.sweep_budget = sweep_budget or SweepBudget(per_minute=12.0, share=0.25)
        self._late_sweep_interval = late_sweep_interval
        self._monotonic = monotonic
        self._last_sweep_at: float | None = None  # None: no sweep since start, one is due
        self._future_ids: dict[str, None] = {}  # alerts from the future, logged once each

    @property
    def listings(self) -> tuple[str, ...]:
        return self.filters.alert_types

    def start_point(self, listing: str = "ALERT") -> float:
        """Where the head poll starts: the watermark, or `initial_lookback` ago on a fresh state."""
        watermark = self._outbox.watermark(watermark_key(listing))
        if watermark is None:
            return self._clock() - self._initial_lookback
        return watermark

    async def poll_head(self) -> PollResult:
        """Read every alert created at or after each listing's watermark, advancing it page by page.

        Costs requests in proportion to the new alerts: the pages after the watermark, plus the
        one that ends the listing. When a page comes back full and its newest alert is more than
        `catchup_lag` behind now, the bridge is catching up (after an outage, a storm): the rest
        of the way to now is paged in concurrent slices (`catch_up`), then the head poll goes on.
        """
        total = PollResult()
        for listing in self.listings:
            total.add(await self._poll_listing(listing))
        return total

    async def _poll_listing(self, listing: str) -> PollResult:
        total = PollResult()
        may_catch_up = self._catchup_pagers > 1
        if self._outbox.get_meta(swept_key(listing)) is None:
            # A fresh state: sweep coverage starts where the first poll does, so an alert
            # indexed late during the first polls is inside the first sweep's window.
            self._outbox.set_meta(swept_key(listing), repr(self.start_point(listing)))
        while True:
            start = self.start_point(listing) - EPSILON
            behind: float | None = None
            pages = self._pages(listing, start)
            async with contextlib.aclosing(pages):
                async for page in pages:
                    total.pages += 1
                    newest = await self.ingest_page(
                        page.results, total, advance_watermark=True, listing=listing
                    )
                    if (
                        may_catch_up
                        and page.next
                        and newest is not None
                        and newest < self._clock() - self._catchup_lag
                    ):
                        behind = newest
                        break
            if behind is None:
                return total
            before = self._outbox.watermark(watermark_key(listing))
            await self.catch_up(behind, self._clock(), listing, total)
            if self._outbox.watermark(watermark_key(listing)) == before:
                # The slices held nothing past the page (a listing whose `next` led nowhere):
                # go on page by page rather than slicing the same window again.
                may_catch_up = False

    async def catch_up(
        self, since: float, until: float, listing: str, total: PollResult | None = None
    ) -> PollResult:
        """Page [since, until) of a listing with concurrent pagers, advancing its watermark.

        Slices finish in any order; the watermark only ever moves to the newest alert of the
        *contiguous prefix* of finished slices, so it never passes a slice still being read (or
        one that failed): a crash or an error mid-catch-up replays from there, and what the later
        slices already recorded is absorbed by the dedup keys.
        """
        total = PollResult() if total is None else total
        key = watermark_key(listing)

        def prefix_done(mark: float) -> None:
            self._outbox.record([], watermark=self._capped(mark), watermark_key=key)
            total.watermark = max(total.watermark or mark, mark)
            if listing == "ALERT":
                current = self._outbox.watermark()
                if current is not None:
                    self._metrics.watermark.set(current)

        log.info(
            "poll.catching_up", listing=listing, behind_seconds=round(until - since, 1),
            pagers=self._catchup_pagers,
        )
        await SplitReader(
            lambda piece: self._read_slice(piece, listing, total), self._catchup_pagers,
            prefix_done,
        ).run(since, until)
        return total

    def sweep_due(self, *, busy: bool = False) -> bool:
        """Whether the late sweep should run now: at start, whenever its budget grants a
        request, and at least every `late_sweep_interval` (one page, budget or not).

        `busy` (a delivery backlog, as right after a catch-up): only the interval counts. A late
        alert found now would queue behind the backlog anyway, and re-reading pages costs the
        CPU the dispatcher needs to drain it.
        """
        if self._overlap <= 0:
            return False
        if self._last_sweep_at is not None and (
            self._monotonic() - self._last_sweep_at >= self._late_sweep_interval
        ):
            return True
        if busy:
            return False
        return self._last_sweep_at is None or self.sweep_budget.allowance() >= 1

    def polled(self, pages: int) -> None:
        """Count the requests of a head poll (or another loop) against which the sweep's share
        is measured."""
        self.sweep_budget.spent("poll", pages)

    async def sweep_overlap(self, max_pages: int | None = None) -> PollResult:
        """Re-read the window behind each watermark for alerts that were indexed late: from
        `overlap` before the point the previous sweep reached, up to the current watermark.

        At most `max_pages` list requests (default: what the sweep budget grants, at least one).
        A sweep that runs out of pages stores the point it reached, and the next one goes on
        from there: at storm volume the sweep falls behind rather than past its share, and
        catches up when the storm is over; no window is skipped.
        """
        total = PollResult()
        if self._overlap <= 0:
            return total
        if max_pages is None:
            max_pages = max(1, self.sweep_budget.allowance())
        self._last_sweep_at = self._monotonic()
        try:
            for listing in self.listings:
                left = max_pages - total.pages
                if left <= 0:
                    break
                await self._sweep_listing(listing, total, left)
        finally:
            self.sweep_budget.spent("sweep", total.pages)
        return total

    async def _sweep_listing(self, listing: str, total: PollResult, max_pages: int) -> None:
        """One sweep run of a listing, resumed where an earlier run ran out of pages.

        A sweep that began when the watermark was at M covers from `overlap` before the previous
        sweep's point; once it is complete its point is M, not where the watermark stands at
        the end: an alert listed while the sweep ran, behind what it had read already, is at
        most `overlap` behind a watermark of at least M, so the next sweep's window holds it.
        """
        watermark = self._outbox.watermark(watermark_key(listing))
        if watermark is None:
            return
        progress = self._outbox.get_meta(sweeping_key(listing))
        if progress:
            resume, began = (float(x) for x in progress.split(","))
            since = resume - EPSILON
        else:
            swept = self._outbox.get_meta(swept_key(listing))
            point = min(watermark, float(swept)) if swept is not None else watermark
            since, began = point - self._overlap - EPSILON, watermark
        reached = await self._sweep_window(
            since, watermark + EPSILON, listing, total, max_pages
        )
        if reached is None:  # complete
            self._outbox.set_meta(swept_key(listing), repr(began))
            if progress:
                self._outbox.set_meta(sweeping_key(listing), "")
        else:
            self._outbox.set_meta(sweeping_key(listing), f"{max(reached, since)!r},{began!r}")

    async def _sweep_window(
        self, start: float, end: float, listing: str, result: PollResult, max_pages: int
    ) -> float | None:
        """Read [start, end) for a sweep, at most `max_pages` pages. Returns None when the window
        was read to its end, else the newest `createdAt` read (where the next sweep goes on)."""
        newest: float | None = None
        pages = self._pages(listing, start, end)
        read = 0
        async with contextlib.aclosing(pages):
            async for page in pages:
                read += 1
                result.pages += 1
                page_newest = await self.ingest_page(
                    page.results, result, advance_watermark=False, listing=listing
                )
                if page_newest is not None and (newest is None or page_newest > newest):
                    newest = page_newest
                if page.next and read >= max_pages:
                    log.info(
                        "sweep.budget_spent", listing=listing, pages=read,
                        behind_seconds=round(end - (newest or start), 1),
                    )
                    return newest if newest is not None else start
        return None

    async def backfill(self, since: float, until: float) -> PollResult:
        """Read [since, until) of every listing with concurrent pagers; watermarks stay put.

        Nothing already recorded is recorded (hence sent) again: the dedup keys decide.
        """
        total = PollResult()
        for listing in self.listings:
            await SplitReader(
                lambda piece, listing=listing: self._read_slice(piece, listing, total),
                self._backfill_concurrency,
            ).run(since, until)
        return total

    async def read_window(
        self,
        start: float,
        end: float | None,
        *,
        advance_watermark: bool,
        listing: str = "ALERT",
        result: PollResult | None = None,
        group: int = 1,
    ) -> float | None:
        """List [start, end) ascending and record every alert not yet recorded.

        Returns the newest `createdAt` read (None: the window was empty); counts go to `result`.
        Without a watermark to move, `group` pages are stored per transaction: a slice's pages
        need not be durable one by one (the watermark passes the slice only once it is complete),
        and a commit costs per page it dirties, which a few pages share (random-key indexes).
        """
        result = PollResult() if result is None else result
        newest: float | None = None
        if not advance_watermark and group > 1:
            return await self._read_grouped(start, end, listing, result, group)
        async for page in self._pages(listing, start, end):
            result.pages += 1
            page_newest = await self.ingest_page(
                page.results, result, advance_watermark=advance_watermark, listing=listing
            )
            if page_newest is not None and (newest is None or page_newest > newest):
                newest = page_newest
        return newest

    async def _read_grouped(
        self, start: float, end: float | None, listing: str, result: PollResult, group: int
    ) -> float | None:
        newest: float | None = None
        held: list[_PageWork] = []
        async for page in self._pages(listing, start, end):
            result.pages += 1
            work = await self._prepare(page.results, result)
            if work.newest is not None and (newest is None or work.newest > newest):
                newest = work.newest
            held.append(work)
            if len(held) >= group:
                self._store(held, result, watermark=None, listing=listing)
                held = []
        if held:
            self._store(held, result, watermark=None, listing=listing)
        return newest

    async def ingest_page(
        self,
        results: list[dict[str, Any]],
        result: PollResult,
        *,
        advance_watermark: bool,
        listing: str = "ALERT",
    ) -> float | None:
        """Validate, enrich and normalize the page's unseen alerts, and store them with the new
        watermark, atomically. Returns the page's newest `createdAt` (None: no timestamps)."""
        work = await self._prepare(results, result)
        self._store(
            [work], result, watermark=work.newest if advance_watermark else None, listing=listing
        )
        return work.newest

    async def _prepare(self, results: list[dict[str, Any]], result: PollResult) -> _PageWork:
        """The page's events, dead letters and tracked alerts, ready to store.

        Each alert is validated once: the `Alert` serves the catalog, the router and the
        normalizer alike.
        """
        observed = self._clock()
        keys = {alert_key(i): i for r in results if (i := r.get("id")).__class__ is str}
        known = {keys[k] for k in self._outbox.known(keys)} if keys else set()
        accepts = self.filters.accepts
        rejected: list[Rejected] = []
        valid: list[tuple[Mapping[str, Any], Alert]] = []
        newest: float | None = None
        for raw in results:
            raw_id = raw.get("id")
            created = None
            if raw_id.__class__ is str and raw_id in known:
                created = parse_timestamp(raw.get("createdAt"))
            elif not accepts(raw):
                result.filtered += 1
                self._count_filtered(raw_id)
                created = parse_timestamp(raw.get("createdAt"))
            else:
                try:
                    alert = Alert.model_validate(raw)
                except ValidationError as exc:
                    rejected.append(malformed(raw, exc, observed))
                    created = parse_timestamp(raw.get("createdAt"))
                else:
                    valid.append((raw, alert))
                    created = alert.created_at  # parsed by the model: not twice
            if created is not None:
                ts = created.timestamp()
                if ts > observed + MAX_CLOCK_SKEW:
                    # Not a watermark: every alert after it would seem late, or be lost.
                    self._note_future(raw_id, ts, observed)
                elif newest is None or ts > newest:
                    newest = ts
        enrichment: Mapping[str, Enrichment] = {}
        catalog = self.forwarding.catalog
        if catalog is not None and valid:
            # A cache lookup + a bounded wait for the detections not cached yet.
            enrichment = await catalog.enrich(alert for _, alert in valid)
        events: list[NewEvent] = []
        track: list[TrackedAlert] = []
        for raw, alert in valid:
            outcome = self._event_for(raw, alert, observed, enrichment.get(alert.id))
            if outcome.__class__ is Dropped:
                self._count_dropped(outcome)  # type: ignore[arg-type]
                continue
            if outcome.__class__ is Rejected:
                rejected.append(outcome)  # type: ignore[arg-type]
                continue
            event, tracked = outcome  # type: ignore[misc]
            events.append(event)
            if tracked is not None:
                track.append(tracked)
        result.seen += len(results)
        return _PageWork(events, rejected, track, newest)

    def _store(
        self,
        works: Sequence[_PageWork],
        result: PollResult,
        *,
        watermark: float | None,
        listing: str,
    ) -> None:
        """Record prepared pages (and the watermark passing them) in one transaction."""
        if len(works) == 1:
            events, rejected, track = works[0].events, works[0].rejected, works[0].track
        else:
            events = [e for w in works for e in w.events]
            rejected = [r for w in works for r in w.rejected]
            track = [t for w in works for t in w.track]
        if watermark is not None:
            watermark = self._capped(watermark)
        fresh = self._outbox.record(
            events,
            watermark=watermark,
            watermark_key=watermark_key(listing),
            rejected=rejected,
            track=track,
        )
        result.new_events += len(fresh)
        if fresh and self._on_recorded is not None:
            self._on_recorded()
        result.rejected += len(rejected)
        result.new_alert_ids.extend(e.alert_id for e in fresh)
        count_intake(self._metrics, fresh, rejected, rejected_event="alert.rejected")
        if watermark is not None:
            result.watermark = watermark
            if listing == "ALERT":
                current = self._outbox.watermark()
                if current is not None:
                    self._metrics.watermark.set(current)

    def _capped(self, watermark: float) -> float:
        """The watermark, never past now + MAX_CLOCK_SKEW."""
        return min(watermark, self._clock() + MAX_CLOCK_SKEW)

    def _note_future(self, alert_id: object, created: float, observed: float) -> None:
        """An alert stamped beyond the clock skew: delivered, but logged once (the head poll
        reads it again each time, since the watermark stays behind it)."""
        if not isinstance(alert_id, str) or alert_id in self._future_ids:
            return
        if len(self._future_ids) >= 10_000:
            self._future_ids.pop(next(iter(self._future_ids)))
        self._future_ids[alert_id] = None
        self._metrics.alerts_from_future.inc()
        log.warning(
            "alert.created_in_future", alert_id=alert_id,
            ahead_seconds=round(created - observed, 1),
            detail="createdAt is ahead of this host's clock; the watermark stays at now",
        )

    def _count_filtered(self, alert_id: object) -> None:
        """Alerts `panther.filters` excludes client-side: counted once each, logged at debug."""
        if not isinstance(alert_id, str) or not self._first_drop(alert_id):
            return
        self._metrics.events_dropped.labels(reason="filtered").inc()
        log.debug("alert.filtered", alert_id=alert_id)

    def _first_drop(self, alert_id: str) -> bool:
        """True the first time an alert is dropped (overlap sweeps read it again)."""
        if alert_id in self._dropped_ids:
            return False
        if len(self._dropped_ids) >= 100_000:
            self._dropped_ids.pop(next(iter(self._dropped_ids)))
        self._dropped_ids[alert_id] = None
        return True

    def _count_dropped(self, dropped: Dropped) -> None:
        if not self._first_drop(dropped.alert_id):
            return
        self._metrics.events_dropped.labels(reason=dropped.reason).inc()
        log.info(
            "alert.dropped", alert_id=dropped.alert_id, route=dropped.route, reason=dropped.reason
        )

    def _event_for(
        self,
        raw: Mapping[str, Any],
        alert: Alert,
        observed: float,
        context: Enrichment | None = None,
    ) -> tuple[NewEvent, TrackedAlert | None] | Rejected | Dropped:
        detection, queries = context if context is not None else (None, [])
        forwarding = self.forwarding
        router = forwarding.router
        route = router.route(alert, detection) if router is not None else None
        if route is not None and route.app_key is None:
            return Dropped(alert.id, route.name, route.drop_reason or "route")
        app_key = route.app_key if route is not None else forwarding.app_key_for(alert)
        created = alert.created_at.timestamp() if alert.created_at else observed
        event = build_event(
            alert,
            kind=EVENT_ALERT,
            key_for=lambda _status: alert_key(alert.id),
            observed=observed,
            event_time=created,
            rules=route.rules if route is not None else forwarding.rules,
            app_key=app_key or "",
            original=lambda: original_form(raw),
            detection=detection,
            queries=queries,
        )
        if event.__class__ is Rejected:
            return event  # type: ignore[return-value]
        # Terminal alerts are followed too: RESOLVED -> OPEN (a reopen) must reach BigPanda, and
        # the status sync finds it at no extra request (see bridge.status_sync).
        tracked = None
        if created >= observed - forwarding.track_for:
            tracked = TrackedAlert(alert.id, created, alert.status.upper(), 0, tracked_form(raw))
        return event, tracked  # type: ignore[return-value]

    async def _read_slice(self, piece: Slice, listing: str, total: PollResult) -> None:
        """Read one slice of a catch-up or backfill for `SplitReader`, noting how far it got.

        Pages are stored `PAGES_PER_COMMIT` at a time, with no watermark: the watermark passes
        the slice only once the slices before it are complete too (`catch_up`).
        """
        result = PollResult()
        held: list[_PageWork] = []
        pages = self._pages(listing, piece.start - EPSILON, piece.end)
        try:
            async with contextlib.aclosing(pages):
                async for page in pages:
                    result.pages += 1
                    work = await self._prepare(page.results, result)
                    piece.advance(work.newest, more=bool(page.next))
                    held.append(work)
                    if len(held) >= PAGES_PER_COMMIT:
                        self._store(held, result, watermark=None, listing=listing)
                        held = []
                    # A split may have moved this slice's end: the thief reads past it.
                    if piece.position is not None and piece.position >= piece.end:
                        break
            if held:
                self._store(held, result, watermark=None, listing=listing)
        finally:
            total.add(result)

    def _pages(
        self, listing: str, start: float, end: float | None = None
    ) -> AsyncIterator[AlertPage]:
        """The pages of one listing created in [start, end) (no end: up to now), ascending."""
        return self._client.iter_alert_pages(
            created_after=_dt(start),
            created_before=_dt(end) if end is not None else None,
            alert_type=listing,
            **self.filters.query(listing),
        )


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


__all__ = [
    "PollResult",
    "Poller",
    "alert_key",
    "count_intake",
    "listing_of",
    "swept_key",
    "watermark_key",
]
