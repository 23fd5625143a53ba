"""Status sync: every status change of a forwarded alert becomes one BigPanda event.

Panther has no `updated-after` and no `updatedAt` (shared/api/PANTHER.md): the only ways to see a
status change are to list again or to `GET /alerts/{id}`. With 1,000 alerts followed, one GET each
would be 1,000 requests a minute. The strategy here costs a handful:

1. **One status-filtered listing per alert listing type**: `GET /alerts?status=TRIAGED&
   status=RESOLVED&status=CLOSED` over the tracked creation window (oldest tracked `createdAt` ->
   now), with the forwarding filters Panther applies (severity, detection id, log type) to keep
   it small. Most tracked alerts are OPEN and most changes leave OPEN, so the listing holds the
   changed alerts and the window's non-OPEN alerts, never the (usually far larger) OPEN
   population: with 1,000 tracked and 10 changed, one page.
2. A tracked alert found there with another status than the one recorded has changed.
3. A tracked alert *not* found there is OPEN now: nothing to do if it was OPEN; if it was not
   (TRIAGED / RESOLVED / CLOSED before), it was reopened, or the listing moved under our feet, so
   only then is it confirmed with `GET /alerts/{id}` (404: deleted, stop following it). Reopens are
   rare, so these fallbacks are few; listing OPEN instead would cost the whole OPEN population.

Terminal alerts (RESOLVED / CLOSED) stay tracked until `track_for`, unlike the first design note:
a reopen must reach BigPanda, and since they are in the status listing anyway, following them
costs no request. Alerts older than `track_for` are dropped (`bridge_tracking_expired_total`).

Each change is one `status_change` event, dedup key `<alert id>:status_change:<n>:<bp status>`
where n is the alert's count of transitions seen, plus one. The events and the tracked rows' new
status and count are recorded in one transaction: a crash between listing and recording derives
the same keys again (no duplicate), and OPEN -> RESOLVED -> OPEN -> RESOLVED gives four distinct
events. One sync emits at most one event per alert, and syncs run one after another, so the
events of an alert are recorded, and hence delivered, in order.

**Event count updates** (`mapping.forward_event_count: true`, off by default): a tracked alert
whose `eventCount` grew since the bridge last forwarded it (the count stored in its tracked row,
else the one in the alert as first forwarded) yields one `event_count` event: same
incident_identifier and BigPanda status as its current Panther status, stamped with the
observation time, tags refreshed (`event_count`, `last_event_at`, ...): BigPanda merges it into
the alert as a tag update. Dedup key `<alert id>:event_count:<count>`, recorded in one transaction
with the row's new count. A status change seen in the same sync carries the new count itself: it
is the only event, and the row's count is updated with it. Seeing the counts of OPEN alerts takes
the listing *without* the status filter: still one listing per alert type over the tracked window,
but its pages grow with every alert created in the window (OPEN ones included), roughly one request
per `panther.page_size` alerts of the window instead of one page for the few non-OPEN ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from pydantic import ValidationError

from bridge.filters import listing_of
from bridge.intake import (
    alert_key,
    build_event,
    count_intake,
    event_count_key,
    malformed,
    original_form,
    status_change_key,
)
from bridge.metrics import Metrics
from bridge.normalize import EVENT_EVENT_COUNT, EVENT_STATUS_CHANGE
from bridge.panther.client import PantherClient
from bridge.panther.models import Alert
from bridge.poller import Forwarding
from bridge.state.records import NewEvent, Rejected, TrackedAlert
from bridge.state.sqlite import Outbox

log = structlog.get_logger("bridge.status_sync")

LISTED_STATUSES = ("TRIAGED", "RESOLVED", "CLOSED")
FALLBACK_CONCURRENCY = 8
EPSILON = 1e-6


@dataclass
class SyncResult:
    """What one sync did, for logs and tests."""

    tracked: int = 0
    expired: int = 0
    pages: int = 0
    fetched: int = 0
    changes: int = 0
    count_changes: int = 0
    new_events: int = 0
    gone: int = 0


class StatusSync:
    """Finds status changes of tracked alerts and records them as events."""

    def __init__(
        self,
        client: PantherClient,
        outbox: Outbox,
        metrics: Metrics,
        forwarding: Forwarding,
        *,
        clock: Callable[[], float] = time.time,
        own_actor_ids: Collection[str] = (),
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._metrics = metrics
        # The poller's: a change is routed, mapped, enriched and filtered as its alert was.
        self._forwarding = forwarding
        self._track_for = forwarding.track_for  # tracked rows older than this expire
        self._clock = clock
        # The bridge's own Panther token (two-way sync): its changes are already in BigPanda.
        self._own_actor_ids = own_actor_ids

    async def sync(self) -> SyncResult:
        """One pass: expire, list, confirm the few that need it, record the changes."""
        result = SyncResult()
        now = self._clock()
        result.expired = self._outbox.expire_tracked(now - self._track_for)
        if result.expired:
            self._metrics.tracking_expired.inc(result.expired)
        tracked = self._outbox.tracked()
        result.tracked = len(tracked)
        self._metrics.tracked_alerts.set(len(tracked))
        if not tracked:
            return result

        # Counts of OPEN alerts too when they are forwarded: list every status (more pages).
        statuses = () if self._forwarding.rules.forward_event_count else LISTED_STATUSES
        groups: dict[str, list[TrackedAlert]] = defaultdict(list)
        for t in tracked:
            groups[_listing(t)].append(t)
        current: dict[str, dict[str, Any]] = {}  # alert id -> alert as Panther has it now
        for listing, members in groups.items():
            current.update(await self._list_changed(listing, members, statuses, result))

        confirm = [t for t in tracked if t.alert_id not in current and t.status != "OPEN"]
        gone: list[TrackedAlert] = []
        if confirm:
            fetched = await self._fetch_all([t.alert_id for t in confirm])
            result.fetched = len(confirm)
            for t in confirm:
                alert = fetched.get(t.alert_id)
                if alert is None:
                    gone.append(t)
                else:
                    current[t.alert_id] = alert

        changed = [
            (t, current[t.alert_id])
            for t in tracked
            if t.alert_id in current
            and str(current[t.alert_id].get("status") or "").upper() not in ("", t.status)
        ]
        counted: list[tuple[TrackedAlert, dict[str, Any], int]] = []
        if self._forwarding.rules.forward_event_count:
            # A status change carries the new count itself: only the others are looked at.
            status_changed = {t.alert_id for t, _ in changed}
            for t in tracked:
                raw = current.get(t.alert_id)
                if raw is None or t.alert_id in status_changed:
                    continue
                count = _count(raw)
                last = _last_count(t)
                if count is not None and (last is None or count > last):
                    counted.append((t, raw, count))
        result.changes = len(changed)
        result.count_changes = len(counted)
        result.gone = len(gone)
        if changed or counted or gone:
            result.new_events = await self._record(changed, counted, gone, now)
        return result

    async def _list_changed(
        self,
        listing: str,
        members: Sequence[TrackedAlert],
        statuses: Sequence[str],
        result: SyncResult,
    ) -> dict[str, dict[str, Any]]:
        """The tracked alerts of one listing found by the (status-filtered) listing."""
        wanted = {t.alert_id for t in members}
        oldest = min(t.created_at for t in members)
        found: dict[str, dict[str, Any]] = {}
        async for page in self._client.iter_alert_pages(
            created_after=datetime.fromtimestamp(oldest - EPSILON, tz=UTC),
            alert_type=listing,
            statuses=statuses,
            **self._forwarding.filters.query(listing),
        ):
            result.pages += 1
            for alert in page.results:
                if alert.get("id") in wanted:
                    found[alert["id"]] = alert  # listed twice (moved mid-listing): the later wins
        return found

    async def _fetch_all(self, alert_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        semaphore = asyncio.Semaphore(FALLBACK_CONCURRENCY)

        async def fetch(alert_id: str) -> tuple[str, dict[str, Any] | None]:
            async with semaphore:
                return alert_id, await self._client.get_alert(alert_id)

        pairs = await asyncio.gather(*(fetch(i) for i in alert_ids))
        return dict(pairs)

    async def _record(
        self,
        changed: Sequence[tuple[TrackedAlert, dict[str, Any]]],
        counted: Sequence[tuple[TrackedAlert, dict[str, Any], int]],
        gone: Sequence[TrackedAlert],
        now: float,
    ) -> int:
        # A status change goes where the alert went: the app key its first event was sent to
        # (a route on status or log type must not split one BigPanda alert across integrations).
        first_keys = self._outbox.app_keys_of(
            [alert_key(t.alert_id) for t, _ in changed]
            + [alert_key(t.alert_id) for t, _, _ in counted]
        )
        enrichment = {}
        catalog = self._forwarding.catalog
        if catalog is not None:
            alerts = []
            for raw in [raw for _, raw in changed] + [raw for _, raw, _ in counted]:
                try:
                    alerts.append(Alert.model_validate(raw))
                except ValidationError:
                    continue
            enrichment = await catalog.enrich(alerts)
        outcomes: list[NewEvent | Rejected] = []
        track: list[TrackedAlert] = []
        for tracked, raw in changed:
            transition = tracked.transitions + 1
            new_status = str(raw.get("status")).upper()
            original = original_form(raw)
            count = _count(raw)
            track.append(
                # The row keeps the alert as first forwarded: its route decides the tags of
                # every later change, so one BigPanda alert keeps one set of route tags.
                TrackedAlert(
                    tracked.alert_id,
                    tracked.created_at,
                    new_status,
                    transition,
                    tracked.alert,
                    count if count is not None else tracked.event_count,
                )
            )
            outcome = self._event(
                raw,
                tracked,
                EVENT_STATUS_CHANGE,
                lambda bp, i=tracked.alert_id, n=transition: status_change_key(i, n, bp),
                now,
                enrichment,
                original,
                first_keys,
            )
            actor = raw.get("updatedBy")
            if isinstance(actor, dict) and actor.get("id") in self._own_actor_ids:
                # Written by the two-way sync after a resolution in BigPanda, which already
                # holds it: an event now would only echo it back. The row follows the change.
                log.info("alert.status_changed_by_bridge", alert_id=tracked.alert_id,
                         status_to=new_status)
                continue
            outcomes.append(outcome)
            log.info(
                "alert.status_changed",
                alert_id=tracked.alert_id,
                status_from=tracked.status,
                status_to=new_status,
                transition=transition,
            )
        for tracked, raw, count in counted:
            # Same status, same transitions, same first-forwarded alert: only the count moves.
            track.append(tracked._replace(event_count=count))
            key = event_count_key(tracked.alert_id, count)
            outcomes.append(self._event(
                raw, tracked, EVENT_EVENT_COUNT, lambda _bp, k=key: k, now, enrichment,
                original_form(raw), first_keys,
            ))
            log.info(
                "alert.event_count_changed",
                alert_id=tracked.alert_id,
                event_count_from=_last_count(tracked),
                event_count_to=count,
            )
        events = [o for o in outcomes if not isinstance(o, Rejected)]
        rejected = [o for o in outcomes if isinstance(o, Rejected)]
        fresh = self._outbox.record(events, rejected=rejected, track=track, untrack=gone)
        count_intake(self._metrics, fresh, rejected, rejected_event="status_change.rejected")
        for t in gone:
            log.info("alert.untracked", alert_id=t.alert_id, reason="not_found")
        return len(fresh)

    def _event(
        self,
        raw: dict[str, Any],
        tracked: TrackedAlert,
        kind: str,
        key_for: Callable[[str], str],
        now: float,
        enrichment: dict[str, Any],
        original: bytes,
        first_keys: Mapping[str, str],
    ) -> NewEvent | Rejected:
        """The event of one change; `key_for(bp_status)` is its dedup key ("invalid" if none).

        It goes to the app key the alert's first event went to (`first_keys`, by dedup key).
        """
        try:
            alert = Alert.model_validate(raw)
        except ValidationError as exc:
            rejected = malformed(raw, exc, now, kind=kind, key_for=key_for)
            return dataclasses.replace(rejected, alert_id=tracked.alert_id, original=original)
        detection, queries = enrichment.get(alert.id, (None, []))
        rules = self._forwarding.rules
        router = self._forwarding.router
        if router is not None:
            route = router.route(_first_seen(tracked, alert), detection)
            if route.app_key is not None:  # the route's tags, unless it would drop the change
                rules = route.rules
        return build_event(
            alert,
            kind=kind,
            key_for=key_for,
            observed=now,
            event_time=now,
            rules=rules,
            app_key=(
                first_keys.get(alert_key(tracked.alert_id))
                or self._forwarding.app_key_for(alert)
                or ""
            ),
            original=lambda: original,
            detection=detection,
            queries=queries,
        )


def _first_seen(tracked: TrackedAlert, current: Alert) -> Alert:
    """The alert as it was first forwarded (what routing decided on), else the current one."""
    try:
        return Alert.model_validate_json(tracked.alert)
    except ValidationError:
        return current


def _count(raw: Any) -> int | None:
    """An alert's `eventCount` when it is a count (an int, not a bool), else None."""
    value = raw.get("eventCount") if isinstance(raw, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _last_count(tracked: TrackedAlert) -> int | None:
    """The eventCount last forwarded: the row's, else the alert's as first forwarded."""
    if tracked.event_count is not None:
        return tracked.event_count
    try:
        return _count(orjson.loads(tracked.alert))
    except orjson.JSONDecodeError:
        return None


def _listing(tracked: TrackedAlert) -> str:
    try:
        alert_type = orjson.loads(tracked.alert).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        alert_type = None
    return listing_of(alert_type if isinstance(alert_type, str) else None)
