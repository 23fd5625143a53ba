"""What `/readyz` reports: a small shared record the loops write and the server reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Health:
    """Ready means: state open, a Panther poll succeeded within 3 intervals, BigPanda accepts us."""

    poll_interval: float
    clock: Callable[[], float] = time.time
    started_at: float = field(default=0.0)
    state_open: bool = False
    last_poll_ok_at: float | None = None
    last_poll_error: str | None = None
    panther_refused: str | None = None
    bigpanda_refused: str | None = None
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
        if self.panther_refused:
            reasons.append(f"Panther refuses our credentials: {self.panther_refused}")
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
        details: dict[str, object] = {"ready": not reasons, "reasons": reasons}
        if self.role is not None:
            details["role"] = self.role
        if self.last_poll_error:
            details["last_poll_error"] = self.last_poll_error
        if self.last_poll_ok_at is not None:
            details["last_successful_poll"] = self.last_poll_ok_at
        return not reasons, details
