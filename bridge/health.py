"""What `/readyz` reports: a small shared record the loops write and the server reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Health:
    """Ready means: state open and writable, a Panther poll succeeded within 3 intervals, Panther
    neither refuses nor rejects our requests, BigPanda accepts us."""

    poll_interval: float
    clock: Callable[[], float] = time.time
    started_at: float = field(default=0.0)
    state_open: bool = False
    last_poll_ok_at: float | None = None
    last_poll_error: str | None = None
    panther_refused: str | None = None
    # Permanent answers from Panther (400, 404, ...) by loop (poll, sweep, status_sync): each is
    # retried at the slow cadence only, and cleared by that loop's next success.
    panther_rejected: dict[str, str] = field(default_factory=dict)
    bigpanda_refused: str | None = None
    # The state file cannot be written (disk full, ...): intake is paused, delivery goes on.
    state_problem: str | None = None
    # Two-way sync: Panther refusing our writes (missing permission), BigPanda refusing the key.
    panther_write_refused: str | None = None
    sync_back_refused: str | None = None
    # "leader" or "standby" (set by bridge/leadership.py); a standby polls nothing, so Panther's
    # freshness does not apply to it, and it is ready when it can reach the lease.
    role: str | None = None
    lease_error: str | None = None

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    def poll_succeeded(self) -> None:
        self.last_poll_ok_at = self.clock()
        self.last_poll_error = None
        self.panther_refused = None

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """(ready, details): details name every reason for not being ready."""
        reasons: list[str] = []
        now = self.clock()
        if not self.state_open:
            reasons.append("state database is not open")
        if self.state_problem:
            reasons.append(f"state database cannot be written, intake paused: {self.state_problem}")
        if self.panther_refused:
            reasons.append(f"Panther refuses our credentials: {self.panther_refused}")
        for loop, message in sorted(self.panther_rejected.items()):
            reasons.append(
                f"Panther rejects the {loop} requests (retried at the slow cadence only): {message}"
            )
        window = 3 * self.poll_interval
        standby = self.role == "standby"
        if standby:
            if self.lease_error:
                reasons.append(f"cannot reach the leadership lease: {self.lease_error}")
        elif self.last_poll_ok_at is None:
            reasons.append("no successful Panther poll yet")
        elif now - self.last_poll_ok_at > window:
            reasons.append(
                f"last successful Panther poll {now - self.last_poll_ok_at:.0f}s ago"
                f" (more than 3 poll intervals, {window:.0f}s)"
            )
        if self.bigpanda_refused:
            reasons.append(f"BigPanda refuses our credentials: {self.bigpanda_refused}")
        if self.panther_write_refused:
            reasons.append(
                "Panther refuses the two-way sync's writes (missing 'Manage Alerts' permission):"
                f" {self.panther_write_refused}"
            )
        if self.sync_back_refused:
            reasons.append(f"BigPanda refuses sync_back.api_key: {self.sync_back_refused}")
        details: dict[str, object] = {"ready": not reasons, "reasons": reasons}
        if self.role is not None:
            details["role"] = self.role
        if self.last_poll_error:
            details["last_poll_error"] = self.last_poll_error
        if self.last_poll_ok_at is not None:
            details["last_successful_poll"] = self.last_poll_ok_at
        return not reasons, details
