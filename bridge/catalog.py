"""Panther's detections and saved queries, cached, to give a BigPanda operator context.

`/rules`, `/scheduled-rules`, `/policies`, `/simple-rules` and `/queries` are listed page by page
(shared/api/PANTHER.md) every `catalog.refresh_interval`, in the background. An alert is enriched
from that cache; a detection the cache does not hold is fetched singly (`GET /<kind>/{id}`), and a
404 is remembered for `catalog.miss_ttl` so an alert storm from a deleted rule is not a request
storm.

Enrichment is a nicety, delivery is the job: the hot path never waits on the catalog beyond a
dictionary lookup plus, for misses, one bounded wait (`fetch_timeout`) shared by a whole page.
After a failed fetch the catalog is considered down for a while and not asked at all: alerts go
out without enrichment and `bridge_catalog_errors_total{reason}` counts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from bridge.config import CatalogSettings
from bridge.errors import AuthError, BridgeError
from bridge.metrics import Metrics
from bridge.panther.client import PantherClient
from bridge.panther.models import Alert
from bridge.periodic import every

log = structlog.get_logger("bridge.catalog")

DETECTION_KINDS = ("rules", "scheduled-rules", "policies", "simple-rules")
QUERIES = "queries"
ALL_KINDS = (*DETECTION_KINDS, QUERIES)

# Which listings hold the detection an alert names (`detection.type`, else the alert's `type`).
# Simple rules fire as RULE (the spec's DetectionInfo has no SIMPLE_RULE), so RULE looks in both.
KINDS_BY_TYPE: Mapping[str, tuple[str, ...]] = {
    "RULE": ("rules", "simple-rules"),
    "SCHEDULED_RULE": ("scheduled-rules",),
    "POLICY": ("policies",),
}
# After a failed single fetch, the catalog is not asked again for this long (nor longer than
# miss_ttl): an outage must cost one bounded wait, not one per alert.
OUTAGE_HOLD = 60.0

Enrichment = tuple[dict[str, Any] | None, list[dict[str, Any]]]
"""(detection, saved queries) for normalize(detection=, queries=)."""


def kinds_for(alert: Alert) -> tuple[str, ...]:
    """The catalog listings to look in for `alert.detection`; RULE_ERROR -> the rule itself."""
    kind = ((alert.detection.type if alert.detection else None) or alert.type or "").upper()
    kind = kind.removesuffix("_ERROR")
    return KINDS_BY_TYPE.get(kind, ())


class Catalog:
    """The TTL cache of detections and saved queries, refreshed in the background."""

    def __init__(
        self,
        client: PantherClient,
        metrics: Metrics,
        settings: CatalogSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self.settings = settings or CatalogSettings()
        self._clock = clock
        self._objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in ALL_KINDS}
        self._queries_by_name: dict[str, dict[str, Any]] = {}
        self._misses: dict[tuple[str, str], float] = {}  # (kinds, id) -> remembered until
        self._fetches: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._down_until = 0.0
        self.refreshed_at: float | None = None
        self._failing = False

    # -- background refresh ------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Refresh now and then every `refresh_interval` (sooner again after a failure)."""
        failures = 0

        def wait() -> float:
            if not failures:
                return self.settings.refresh_interval
            return min(self.settings.refresh_interval, 5.0 * 2 ** min(failures, 10))

        try:
            async for _ in every(wait, stopping):
                failures = 0 if await self.refresh() else failures + 1
        finally:
            self.close()

    async def refresh(self) -> bool:
        """List every kind again; a kind that fails keeps its previous objects. True if all ok."""
        ok = True
        for kind in ALL_KINDS:
            try:
                objects = {
                    str(obj["id"]): obj
                    async for obj in self._client.iter_objects(kind)
                    if obj.get("id") is not None
                }
            except BridgeError as exc:
                ok = False
                self._metrics.catalog_errors.labels(reason="refresh_failed").inc()
                if isinstance(exc, AuthError) or not self._failing:
                    log.warning("catalog.refresh_failed", kind=kind, error=str(exc)[:500])
                self._failing = True
                if not isinstance(exc, AuthError):
                    break  # Panther is down: the next kinds would only fail the same way
                continue
            self._objects[kind] = objects
            for obj_id in objects:
                self._forget_miss(kind, obj_id)
            if kind == QUERIES:
                self._queries_by_name = {
                    str(q["name"]): q for q in objects.values() if q.get("name")
                }
        if ok:
            if self._failing:
                log.info("catalog.recovered")
            self._failing = False
            self._down_until = 0.0
            self.refreshed_at = self._clock()
            log.debug("catalog.refreshed", **{k: len(v) for k, v in self._objects.items()})
        return ok

    def close(self) -> None:
        """Cancel single fetches still in flight (on shutdown)."""
        for task in self._fetches.values():
            task.cancel()
        self._fetches.clear()

    # -- lookups -----------------------------------------------------------------------------

    def lookup(self, alert: Alert) -> Enrichment:
        """Cache only: the alert's detection and, for a scheduled rule, its saved queries."""
        detection_id = alert.detection.id if alert.detection else None
        if not detection_id:
            return None, []
        detection = None
        for kind in kinds_for(alert) or DETECTION_KINDS:
            detection = self._objects[kind].get(detection_id)
            if detection is not None:
                break
        if detection is None:
            return None, []
        return detection, self.queries_for(detection)

    def queries_for(self, detection: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The saved queries a scheduled rule names in `scheduledQueries`, those the cache holds."""
        names = detection.get("scheduledQueries") or []
        if not isinstance(names, list):
            return []
        found = [self._queries_by_name[n] for n in names if n in self._queries_by_name]
        if len(found) < len(names):
            self._metrics.catalog_errors.labels(reason="query_not_found").inc(
                len(names) - len(found)
            )
        return found

    async def enrich(self, alerts: Iterable[Alert]) -> dict[str, Enrichment]:
        """Enrichment of each alert by id: the cache, plus one bounded wait for the misses.

        Misses are fetched concurrently, once per detection however many alerts name it; what
        has not answered within `fetch_timeout` goes on in the background (it fills the cache
        for later alerts) while these alerts go out without it.
        """
        alerts = list(alerts)
        out: dict[str, Enrichment] = {}
        wanted: dict[tuple[str, str], asyncio.Task[None]] = {}
        now = self._clock()
        for alert in alerts:
            out[alert.id] = self.lookup(alert)
            if out[alert.id][0] is not None:
                continue
            key = self._fetch_key(alert)
            if key is None or now < self._down_until or self._missed(key, now):
                continue
            if key not in self._fetches:
                self._fetches[key] = asyncio.create_task(self._fetch(*key))
            wanted[key] = self._fetches[key]
        if wanted:
            await asyncio.wait(wanted.values(), timeout=self.settings.fetch_timeout)
        for alert in alerts:
            key = self._fetch_key(alert)
            if out[alert.id][0] is not None or key is None:
                continue
            if key in wanted:
                out[alert.id] = self.lookup(alert)
            if out[alert.id][0] is None:
                reason = "not_found" if self._missed(key, self._clock()) else "unavailable"
                self._metrics.catalog_errors.labels(reason=reason).inc()
        return out

    def _fetch_key(self, alert: Alert) -> tuple[str, str] | None:
        detection_id = alert.detection.id if alert.detection else None
        kinds = kinds_for(alert)
        if not detection_id or not kinds:
            return None
        return ",".join(kinds), detection_id

    def _missed(self, key: tuple[str, str] | None, now: float) -> bool:
        if key is None:
            return False
        until = self._misses.get(key)
        return until is not None and now < until

    def _forget_miss(self, kind: str, obj_id: str) -> None:
        for key in [k for k in self._misses if k[1] == obj_id and kind in k[0].split(",")]:
            del self._misses[key]

    async def _fetch(self, kinds: str, detection_id: str) -> None:
        """`GET /<kind>/{id}` in each candidate listing until one knows it; remember a 404."""
        try:
            for kind in kinds.split(","):
                obj = await self._client.get_object(kind, detection_id)
                if obj is not None:
                    self._objects[kind][detection_id] = obj
                    return
            self._misses[(kinds, detection_id)] = self._clock() + self.settings.miss_ttl
            log.info("catalog.detection_unknown", detection_id=detection_id, kinds=kinds)
        except BridgeError as exc:
            hold = min(OUTAGE_HOLD, self.settings.miss_ttl)
            if self._clock() >= self._down_until:
                log.warning(
                    "catalog.fetch_failed",
                    detection_id=detection_id,
                    error=str(exc)[:500],
                    enrichment_paused_seconds=hold,
                )
            self._down_until = self._clock() + hold
        finally:
            self._fetches.pop((kinds, detection_id), None)

    # -- introspection (tests, logs) ---------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {kind: len(objects) for kind, objects in self._objects.items()}

    def objects(self, kind: str) -> Sequence[dict[str, Any]]:
        return list(self._objects[kind].values())
