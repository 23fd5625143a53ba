"""Sync back: what people do to incidents in BigPanda becomes write-backs to the Panther alerts.

Every `sync_back.interval` the Incidents V2 search is read sorted by last change, from the durable
cursor (the newest `updated_at` seen, minus a small overlap: BigPanda's times are whole seconds,
so changes in the cursor's own second are read again) with `expand=alerts` (page_size <= 10,
BIGPANDA.md), which also names the Panther alerts behind each incident (their `panther_alert_id`
tags). Each changed incident's activities are read newest first, down to the cursor; each activity
not seen before is classified:

- `incident_resolved_ui_manually` / `incident_resolved_api` (and the documented misspellings):
  every Panther alert of the incident gets `sync_back.resolve_as` (RESOLVED, CLOSED, or nothing)
  and one comment naming who resolved it and their comment;
- `incident_alerts_resolved`: the same, for the alerts named in `ids_to_resolve` only;
- `incident_commented` (with `sync_back.comments`): the comment on every Panther alert;
- acknowledged / assigned (with `sync_back.acknowledge_to_triaged`): OPEN alerts go TRIAGED;
- `incident_resolved_by_alerts` (what the bridge's own `ok` events cause), reopen, and actions of
  the bridge's own BigPanda users (`sync_back.ignore_user_ids`): nothing, never echoed back.

A status the Panther alert already has (as the status sync last saw it) is not written again.

Each write-back is an outbox event (kinds `writeback_status`, `writeback_comment`) with dedup key
`bp:<incident id>:<activity id>:<panther alert id>:<status|comment>`, recorded in ONE transaction
with the cursor that passes it: a crash before the commit reads the same activities again and
derives the same keys (nothing lost, nothing twice); `bridge.writeback` delivers them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import orjson
import structlog

from bridge.bigpanda.incidents import MAX_EXPANDED_PAGE, BigPandaIncidents
from bridge.config import SyncBackSettings
from bridge.metrics import Metrics
from bridge.state.records import NewEvent
from bridge.state.sqlite import Outbox

log = structlog.get_logger("bridge.sync_back")

CURSOR_KEY = "sync_back:cursor"
SEEN_KEY = "sync_back:seen"
# Whole-second times: re-read the cursor's own second (and one before, for clock steps).
OVERLAP = 2
ACTIVITIES_PAGE = 50
MAX_SEARCH_PAGES = 1000  # BigPanda stops at the 10,000th result
KIND_STATUS = "writeback_status"
KIND_COMMENT = "writeback_comment"

RESOLVED_BY_PERSON = "resolved"
RESOLVED_SOME = "alerts_resolved"
COMMENTED = "commented"
ACKNOWLEDGED = "acknowledged"
OWN_RESOLUTION = "resolved_by_alerts"
REOPENED = "reopened"
OTHER = "other"

# BIGPANDA.md: the docs spell some types inconsistently; all of these mean the same thing.
_TYPES = {
    "incident_resolved_ui_manually": RESOLVED_BY_PERSON,
    "incident_resolved_manually": RESOLVED_BY_PERSON,
    "incident_resolved_api": RESOLVED_BY_PERSON,
    "incident_resolved_by_alerts": OWN_RESOLUTION,
    "incident_alerts_resolved": RESOLVED_SOME,
    "incident_commented": COMMENTED,
    "incident_reopen": REOPENED,
    "incident_reopened": REOPENED,
    "incident_acknowledged": ACKNOWLEDGED,
    "incident_assigned": ACKNOWLEDGED,
}


def classify(activity_type: object) -> str:
    """The meaning of an activity type, tolerant of case and a stray trailing `_`."""
    if not isinstance(activity_type, str):
        return OTHER
    return _TYPES.get(activity_type.strip().lower().rstrip("_"), OTHER)


def writeback_key(incident_id: str, activity_id: str, alert_id: str, what: str) -> str:
    # Starts with "bp:", never with "<panther alert id>:": the outbox's in-order rule for an
    # alert's BigPanda events ranges over keys with that prefix and must not see write-backs.
    return f"bp:{incident_id}:{activity_id}:{alert_id}:{what}"


def panther_ids(incident: dict[str, Any], bigpanda_ids: set[str] | None = None) -> list[str]:
    """The Panther alert ids behind an expanded incident (its alerts' `panther_alert_id` tags)."""
    found: list[str] = []
    for alert in incident.get("alerts") or []:
        if not isinstance(alert, dict):
            continue
        if bigpanda_ids is not None and str(alert.get("id")) not in bigpanda_ids:
            continue
        tags = alert.get("tags") or []
        if isinstance(tags, dict):  # tolerate a map, though BIGPANDA.md documents a list
            tags = [{"name": k, "value": v} for k, v in tags.items()]
        for tag in tags:
            if isinstance(tag, dict) and tag.get("name") == "panther_alert_id":
                values = tag.get("value")
                for value in values if isinstance(values, list) else [values]:
                    if isinstance(value, str) and value and value not in found:
                        found.append(value)
    return found


@dataclass
class SyncBackResult:
    incidents: int = 0
    activities: int = 0
    skipped: int = 0
    new_events: int = 0
    requests: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class SyncBack:
    """Reads changed BigPanda incidents and records the write-backs they call for."""

    client: BigPandaIncidents
    outbox: Outbox
    metrics: Metrics
    settings: SyncBackSettings
    _: KW_ONLY
    # Besides `settings.ignore_user_ids`: the users whose actions are the bridge's own.
    own_user_ids: Iterable[str] = ()
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._own_users = set(self.settings.ignore_user_ids) | set(self.own_user_ids)

    async def sync(self) -> SyncBackResult:
        result = SyncBackResult()
        now = self.clock()
        cursor = self.outbox.watermark(CURSOR_KEY)
        if cursor is None:
            # A fresh state starts now: incidents resolved before the two-way sync was turned on
            # are history, not work.
            self.outbox.record([], watermark=float(int(now)), watermark_key=CURSOR_KEY)
            return result
        since = int(cursor) - OVERLAP
        seen = self._seen()
        requests_before = self.client.requests
        incidents = await self._changed_incidents(since)
        result.incidents = len(incidents)
        events: list[NewEvent] = []
        newest = cursor
        for incident in incidents:
            newest = max(newest, _stamp(incident.get("updated_at"), 0.0))
            activities = await self._new_activities(str(incident["id"]), since, seen)
            for activity in reversed(activities):  # oldest first: write-backs in their order
                result.activities += 1
                seen[str(activity["id"])] = int(_stamp(activity.get("timestamp"), now))
                made = self._writebacks(incident, activity, result)
                events.extend(made)
        fresh = self.outbox.record(events, watermark=newest, watermark_key=CURSOR_KEY)
        self._save_seen(seen, since)
        result.new_events = len(fresh)
        result.requests = self.client.requests - requests_before
        for event in fresh:
            self.metrics.writebacks.labels(kind=event.kind, outcome="recorded").inc()
            self.metrics.sync_back_lag.set(max(0.0, now - event.event_time))
        return result

    async def _changed_incidents(self, since: int) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for page in range(1, MAX_SEARCH_PAGES + 1):
            total, items = await self.client.search(
                since=since, page=page, page_size=MAX_EXPANDED_PAGE, expand_alerts=True
            )
            for item in items:
                if "id" in item:
                    found.setdefault(str(item["id"]), item)
            if len(items) < MAX_EXPANDED_PAGE or page * MAX_EXPANDED_PAGE >= total:
                break
        return list(found.values())

    async def _new_activities(
        self, incident_id: str, since: int, seen: dict[str, int]
    ) -> list[dict[str, Any]]:
        """The incident's activities not seen yet, newest first, back to the cursor."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            items = await self.client.activities(
                incident_id, page=page, per_page=ACTIVITIES_PAGE
            )
            older = False
            for item in items:
                stamp = _stamp(item.get("timestamp"), None)
                if stamp is not None and stamp < since:
                    older = True
                    break
                if "id" in item and str(item["id"]) not in seen:
                    out.append(item)
            if older or len(items) < ACTIVITIES_PAGE:
                return out
            page += 1

    def _writebacks(
        self, incident: dict[str, Any], activity: dict[str, Any], result: SyncBackResult
    ) -> list[NewEvent]:
        meaning = classify(activity.get("type"))
        actor = activity.get("created_by")
        actor_name = str(actor) if actor else "BigPanda"
        incident_id, activity_id = str(incident["id"]), str(activity["id"])
        params = activity.get("params") if isinstance(activity.get("params"), dict) else {}
        comment = str(params.get("comment") or params.get("comments") or "").strip()
        own = meaning == OWN_RESOLUTION or bool(actor and str(actor) in self._own_users)
        if own or meaning in (REOPENED, OTHER):
            # The bridge's own doing (its ok events, its own user), or nothing to write.
            result.skipped += 1
            reason = "own" if own else "ignored"
            log.debug("sync_back.skipped", incident_id=incident_id, activity_id=activity_id,
                      type=activity.get("type"), reason=reason)
            self.metrics.writebacks.labels(kind="activity", outcome=f"skipped_{reason}").inc()
            return []
        status: str | None = None
        note = ""
        targets = panther_ids(incident)
        if meaning in (RESOLVED_BY_PERSON, RESOLVED_SOME):
            if meaning == RESOLVED_SOME:
                raw_ids = params.get("ids_to_resolve") or []
                targets = panther_ids(incident, {str(i) for i in raw_ids})
            how = "through the API" if "api" in str(activity.get("type")).lower() else ""
            note = f"Resolved in BigPanda {how} by {actor_name} (incident {incident_id})"
            note = " ".join(note.split())
            if comment:
                note += f": {comment}"
            if self.settings.resolve_as != "comment":
                status = self.settings.resolve_as
        elif meaning == COMMENTED:
            if not self.settings.comments or not comment:
                result.skipped += 1
                return []
            note = f"BigPanda comment by {actor_name} on incident {incident_id}: {comment}"
        elif meaning == ACKNOWLEDGED:
            if not self.settings.acknowledge_to_triaged:
                result.skipped += 1
                return []
            status = "TRIAGED"
        current = self.outbox.tracked_statuses(targets) if status else {}
        when = _stamp(activity.get("timestamp"), self.clock())
        events: list[NewEvent] = []
        for alert_id in targets:
            base = {"alert_id": alert_id, "incident_id": incident_id, "activity_id": activity_id}
            write_status = status is not None and current.get(alert_id) != status
            if status == "TRIAGED" and current.get(alert_id, "OPEN") != "OPEN":
                write_status = False  # only OPEN alerts move to TRIAGED
            if write_status:
                events.append(self._event(incident_id, activity_id, alert_id, KIND_STATUS,
                                          status or "", {**base, "status": status}, when))
            elif status is not None:
                self.metrics.writebacks.labels(kind=KIND_STATUS, outcome="skipped_same").inc()
            if note:
                events.append(self._event(incident_id, activity_id, alert_id, KIND_COMMENT, "",
                                          {**base, "body": note}, when))
        log.info("sync_back.activity", incident_id=incident_id, activity_id=activity_id,
                 type=activity.get("type"), panther_alerts=len(targets), writebacks=len(events))
        return events

    @staticmethod
    def _event(incident_id: str, activity_id: str, alert_id: str, kind: str, status: str,
               payload: dict[str, Any], when: float) -> NewEvent:
        what = "status" if kind == KIND_STATUS else "comment"
        return NewEvent(
            dedup_key=writeback_key(incident_id, activity_id, alert_id, what),
            alert_id=alert_id,
            kind=kind,
            bp_status=status,
            app_key="",
            payload=orjson.dumps(payload),
            event_time=when,
        )

    def _seen(self) -> dict[str, int]:
        value = self.outbox.meta_json(SEEN_KEY)
        if not isinstance(value, dict):
            return {}
        return {str(k): int(v) for k, v in value.items() if isinstance(v, int | float)}

    def _save_seen(self, seen: dict[str, int], since: int) -> None:
        # Only activities inside the re-read window can come back; older ids are forgotten.
        kept = {k: v for k, v in seen.items() if v >= since - OVERLAP}
        self.outbox.set_meta(SEEN_KEY, orjson.dumps(kept).decode())


def _stamp(value: object, default: Any) -> Any:
    """Epoch seconds from BigPanda (int, float or digits; milliseconds scaled down), or default."""
    if isinstance(value, bool):
        return default
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return default
    if not isinstance(value, int | float) or value != value:  # NaN
        return default
    return float(value) / 1000.0 if value > 10**11 else float(value)
