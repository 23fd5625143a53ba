"""Every metric the bridge exports, declared once (names are a contract: shared/DESIGN.md).

Each `Metrics` owns its registry, so two bridges in one process (tests, the demo) never share
counters. Label values are bounded: targets, endpoint templates, status codes, enum reasons.
"""

from __future__ import annotations

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

        self.events_received = Counter(
            "bridge_events_received_total",
            "Events taken from Panther into the outbox, by kind (alert, status_change, "
            "event_count: only the eventCount grew, with mapping.forward_event_count).",
            ["kind"],
            registry=r,
        )
        self.events_sent = Counter(
            "bridge_events_sent_total",
            "Events BigPanda accepted, by the BigPanda alert status sent.",
            ["status"],
            registry=r,
        )
        self.events_dead_lettered = Counter(
            "bridge_events_dead_lettered_total",
            "Events moved to the dead-letter table, by reason.",
            ["reason"],
            registry=r,
        )
        # Routing, beyond DESIGN.md's list: dropping on purpose is not a dead letter.
        self.events_dropped = Counter(
            "bridge_events_dropped_total",
            "Alerts not sent on purpose, by reason (unrouted: no route and routing.unmatched "
            "is drop; route: a route with drop: true; filtered: panther.filters).",
            ["reason"],
            registry=r,
        )
        self.http_requests = Counter(
            "bridge_http_requests_total",
            "HTTP requests made, by target API, endpoint template and status code (0: none).",
            ["target", "endpoint", "code"],
            registry=r,
        )
        self.http_duration = Histogram(
            "bridge_http_request_duration_seconds",
            "Duration of HTTP requests to Panther and BigPanda.",
            ["target", "endpoint"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "bridge_retries_total",
            "Requests that failed and will be tried again, by target and reason.",
            ["target", "reason"],
            registry=r,
        )
        self.outbox_events = Gauge(
            "bridge_outbox_events",
            "Events waiting in the outbox (not yet accepted by BigPanda).",
            registry=r,
        )
        self.dead_letter_events = Gauge(
            "bridge_dead_letter_events",
            "Events currently in the dead-letter table.",
            registry=r,
        )
        self.jobs_in_flight = Gauge(
            "bridge_jobs_in_flight",
            "BigPanda asynchronous jobs (202 Accepted) not yet done or failed.",
            registry=r,
        )
        self.jobs = Counter(
            "bridge_jobs_total",
            "BigPanda asynchronous jobs finished, by result (done, failed, timeout).",
            ["result"],
            registry=r,
        )
        self.watermark = Gauge(
            "bridge_watermark_timestamp_seconds",
            "Creation time of the newest Panther alert durably recorded.",
            registry=r,
        )
        self.last_successful_poll = Gauge(
            "bridge_last_successful_poll_timestamp_seconds",
            "When the last Panther poll completed without error.",
            registry=r,
        )
        self.delivery_latency = Histogram(
            "bridge_delivery_latency_seconds",
            "From the event's time (alert createdAt or status observation) to BigPanda acceptance.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.build_info = Gauge(
            "bridge_build_info",
            "Always 1; the version label says which bridge runs.",
            ["version"],
            registry=r,
        )
        self.build_info.labels(version=__version__).set(1)
        # Panther side: status tracking and enrichment, beyond DESIGN.md's contract list.
        self.tracked_alerts = Gauge(
            "bridge_tracked_alerts",
            "Forwarded Panther alerts whose status changes are still followed.",
            registry=r,
        )
        self.tracking_expired = Counter(
            "bridge_tracking_expired_total",
            "Alerts no longer followed because they are older than panther.track_for.",
            registry=r,
        )
        self.catalog_errors = Counter(
            "bridge_catalog_errors_total",
            "Enrichment degraded (catalog listing or fetch failed, detection unknown), by reason.",
            ["reason"],
            registry=r,
        )

        # Alerts whose createdAt is ahead of this host's clock (beyond the skew allowance):
        # delivered, but the watermark does not follow them.
        self.alerts_from_future = Counter(
            "bridge_alerts_from_future_total",
            "Alerts created (by their createdAt) further in the future than the clock skew"
            " allows: delivered, counted once each; the watermark stays at now.",
            registry=r,
        )

        # State trouble (disk full, a damaged file, ...), beyond DESIGN.md's contract list.
        self.state_errors = Counter(
            "bridge_state_errors_total",
            "Failed reads or writes of the state database, by reason (disk_full, corrupt, busy,"
            " access, io, state).",
            ["reason"],
            registry=r,
        )

        # Two-way sync (BigPanda -> Panther).
        self.writebacks = Counter(
            "bridge_writebacks_total",
            "Write-backs to Panther (status, comment) by outcome: recorded, written, retried,"
            " refused, dead_lettered, skipped_*.",
            ["kind", "outcome"],
            registry=r,
        )
        self.sync_back_lag = Gauge(
            "bridge_sync_back_lag_seconds",
            "Seconds from a BigPanda incident activity to the bridge recording its write-back"
            " (the latest one).",
            registry=r,
        )

        # High availability: leadership of the shared (PostgreSQL) state.
        self.leader = Gauge(
            "bridge_leader",
            "1 while this replica leads (polls and sends), 0 on a standby.",
            registry=r,
        )
        self.leader_changes = Counter(
            "bridge_leader_changes_total",
            "Times this replica became leader (took the lease at a new term).",
            registry=r,
        )
        self.lease_renew_seconds = Histogram(
            "bridge_lease_renew_seconds",
            "Time one renewal of the leadership lease took.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of everything in this registry."""
        return generate_latest(self.registry)
