"""Every metric the bridge exports, declared once (names are a contract: shared/DESIGN.md).

Each `Metrics` owns its registry, so two bridges in one process (tests, the demo) never share
counters. Label values are bounded: targets, endpoint templates, status codes, enum reasons.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

from bridge import __version__

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The bridge's Prometheus metrics and the registry that exposes them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        process_collector.ProcessCollector(registry=r)
        platform_collector.PlatformCollector(registry=r)
        gc_collector.GCCollector(registry=r)

        self.events_received = self._counter(
            "bridge_events_received_total",
            "Events taken from Panther into the outbox, by kind (alert, status_change, "
            "event_count: only the eventCount grew, with mapping.forward_event_count).",
            "kind",
        )
        self.events_sent = self._counter(
            "bridge_events_sent_total",
            "Events BigPanda accepted, by the BigPanda alert status sent.",
            "status",
        )
        self.events_dead_lettered = self._counter(
            "bridge_events_dead_lettered_total",
            "Events moved to the dead-letter table, by reason.",
            "reason",
        )
        # Routing, beyond DESIGN.md's list: dropping on purpose is not a dead letter.
        self.events_dropped = self._counter(
            "bridge_events_dropped_total",
            "Alerts not sent on purpose, by reason (unrouted: no route and routing.unmatched "
            "is drop; route: a route with drop: true; filtered: panther.filters).",
            "reason",
        )
        self.http_requests = self._counter(
            "bridge_http_requests_total",
            "HTTP requests made, by target API, endpoint template and status code (0: none).",
            "target", "endpoint", "code",
        )
        self.http_duration = self._histogram(
            "bridge_http_request_duration_seconds",
            "Duration of HTTP requests to Panther and BigPanda.",
            "target", "endpoint",
            buckets=HTTP_BUCKETS,
        )
        self.retries = self._counter(
            "bridge_retries_total",
            "Requests that failed and will be tried again, by target and reason.",
            "target", "reason",
        )
        self.outbox_events = self._gauge(
            "bridge_outbox_events",
            "Events waiting in the outbox (not yet accepted by BigPanda).",
        )
        self.dead_letter_events = self._gauge(
            "bridge_dead_letter_events",
            "Events currently in the dead-letter table.",
        )
        self.jobs_in_flight = self._gauge(
            "bridge_jobs_in_flight",
            "BigPanda asynchronous jobs (202 Accepted) not yet done or failed.",
        )
        self.jobs = self._counter(
            "bridge_jobs_total",
            "BigPanda asynchronous jobs finished, by result (done, failed, timeout).",
            "result",
        )
        self.watermark = self._gauge(
            "bridge_watermark_timestamp_seconds",
            "Creation time of the newest Panther alert durably recorded.",
        )
        self.last_successful_poll = self._gauge(
            "bridge_last_successful_poll_timestamp_seconds",
            "When the last Panther poll completed without error.",
        )
        self.delivery_latency = self._histogram(
            "bridge_delivery_latency_seconds",
            "From the event's time (alert createdAt or status observation) to BigPanda acceptance.",
            buckets=LATENCY_BUCKETS,
        )
        self.build_info = self._gauge(
            "bridge_build_info",
            "Always 1; the version label says which bridge runs.",
            "version",
        )
        self.build_info.labels(version=__version__).set(1)
        # Panther side: status tracking and enrichment, beyond DESIGN.md's contract list.
        self.tracked_alerts = self._gauge(
            "bridge_tracked_alerts",
            "Forwarded Panther alerts whose status changes are still followed.",
        )
        self.tracking_expired = self._counter(
            "bridge_tracking_expired_total",
            "Alerts no longer followed because they are older than panther.track_for.",
        )
        self.catalog_errors = self._counter(
            "bridge_catalog_errors_total",
            "Enrichment degraded (catalog listing or fetch failed, detection unknown), by reason.",
            "reason",
        )

        # Alerts whose createdAt is ahead of this host's clock (beyond the skew allowance):
        # delivered, but the watermark does not follow them.
        self.alerts_from_future = self._counter(
            "bridge_alerts_from_future_total",
            "Alerts created (by their createdAt) further in the future than the clock skew"
            " allows: delivered, counted once each; the watermark stays at now.",
        )

        # State trouble (disk full, a damaged file, ...), beyond DESIGN.md's contract list.
        self.state_errors = self._counter(
            "bridge_state_errors_total",
            "Failed reads or writes of the state database, by reason (disk_full, corrupt, busy,"
            " access, io, state).",
            "reason",
        )

        # Two-way sync (BigPanda -> Panther).
        self.writebacks = self._counter(
            "bridge_writebacks_total",
            "Write-backs to Panther (status, comment) by outcome: recorded, written, retried,"
            " refused, dead_lettered, skipped_*.",
            "kind", "outcome",
        )
        self.sync_back_lag = self._gauge(
            "bridge_sync_back_lag_seconds",
            "Seconds from a BigPanda incident activity to the bridge recording its write-back"
            " (the latest one).",
        )

        # High availability: leadership of the shared (PostgreSQL) state.
        self.leader = self._gauge(
            "bridge_leader",
            "1 while this replica leads (polls and sends), 0 on a standby.",
        )
        self.leader_changes = self._counter(
            "bridge_leader_changes_total",
            "Times this replica became leader (took the lease at a new term).",
        )
        self.lease_renew_seconds = self._histogram(
            "bridge_lease_renew_seconds",
            "Time one renewal of the leadership lease took.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )

    # One place that binds every metric to this registry; labels are given as names.

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def _gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    def _histogram(
        self, name: str, documentation: str, *labels: str, buckets: Sequence[float]
    ) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything in this registry."""
        return generate_latest(self.registry)
