"""What the bridge does about a failure: one policy for the Panther loops and the BigPanda sender.

The decision is made from the error's type and its attributes (`retriable`, `reason`,
`retry_after` on the classes of `bridge.errors`), here and nowhere else:

- `REFUSED`: our credentials are refused (401/403). Nothing is dropped; readiness goes down and
  the loop or the sender probes again with a growing pause.
- `PAUSE`: rate limited (429). The whole sender (or loop) waits, at least the `Retry-After`.
- `RETRY`: retriable (5xx but 501, 408, transport errors, unreadable answers, a full disk).
  Backoff with full jitter (`bridge.retry.RetryPolicy`), the events' give-up clock running.
- `REJECTED`: a permanent answer to this very request (400, 404, 501, ...). On the BigPanda side
  the batch is bisected and the bad events dead-lettered; on the Panther side retrying soon
  cannot help, so it is reported (log, metric, `/readyz`) and tried again at the slow cadence
  only (`retry.max_backoff`), in case a person fixes the cause.
- `HALT`: our own side is broken (a corrupt state file, a bug). Reported like `REJECTED` and tried
  again at the slow cadence only.

`RetryPolicy` (bridge.retry) says how long to wait; this module says what kind of wait it is.
"""

from __future__ import annotations

from enum import StrEnum

import structlog

from bridge.errors import (
    ApiError,
    AuthError,
    BridgeError,
    RateLimitedError,
    retry_reason,
)
from bridge.health import Health
from bridge.metrics import Metrics
from bridge.retry import RetryPolicy

log = structlog.get_logger("bridge.failures")


class Action(StrEnum):
    """What to do about one failure."""

    REFUSED = "refused"
    PAUSE = "pause"
    RETRY = "retry"
    REJECTED = "rejected"
    HALT = "halt"


def action_for(exc: BaseException) -> Action:
    """The action for a failure, by the type of the error."""
    if isinstance(exc, AuthError):
        return Action.REFUSED
    if isinstance(exc, RateLimitedError):
        return Action.PAUSE
    if isinstance(exc, BridgeError) and exc.retriable:
        return Action.RETRY
    if isinstance(exc, ApiError):
        return Action.REJECTED
    return Action.HALT


def retry_after_of(exc: BaseException) -> float | None:
    """The wait the other side asked for (a `Retry-After`), None when it did not say."""
    return exc.retry_after if isinstance(exc, BridgeError) else None


def status_of(exc: BaseException) -> int:
    """The HTTP status behind an API error; 0 for anything else."""
    return exc.status if isinstance(exc, ApiError) else 0


# Log event names of each Panther loop: (failed, unauthorized, rejected, recovered).
_LOOP_EVENTS: dict[str, tuple[str, str, str, str]] = {
    "poll": ("poll.failed", "poll.unauthorized", "poll.rejected", "poll.recovered"),
    "sweep": ("sweep.failed", "sweep.unauthorized", "sweep.rejected", "sweep.recovered"),
    "status_sync": (
        "status_sync.failed",
        "status_sync.unauthorized",
        "status_sync.rejected",
        "status_sync.recovered",
    ),
}
_OTHER_LOOP = ("panther.failed", "panther.unauthorized", "panther.rejected", "panther.recovered")


class FailureBurst:
    """The failures of one Panther loop (poll, sweep, status sync) since its last success.

    Each failure is counted (`bridge_retries_total{target="panther",reason}`); only the first of a
    burst is logged (a warning; an error for refused credentials or a permanent answer), the rest
    at debug, and the success that ends it once at info: an hour-long outage is two log lines, not
    one per attempt. 401/403 names the permission the token lacks and takes readiness down
    (`Health.panther_refused`); a permanent answer (400, 404, ...) takes it down too
    (`Health.panther_rejected`) and is retried at the slow cadence only, never like a 503.
    """

    def __init__(
        self, name: str, metrics: Metrics, health: Health | None, policy: RetryPolicy
    ) -> None:
        self.name = name
        self._metrics = metrics
        self._health = health
        self._policy = policy
        self._events = _LOOP_EVENTS.get(name, _OTHER_LOOP)
        self.failures = 0
        self.action: Action | None = None
        self._retry_after: float | None = None

    def failed(self, exc: BaseException) -> Action:
        """Count, report and remember one failure; returns the action it called for."""
        self.failures += 1
        action = action_for(exc)
        self.action = action
        reason = retry_reason(exc)
        self._retry_after = retry_after_of(exc)
        self._metrics.retries.labels(target="panther", reason=reason).inc()
        message = str(exc)[:500]
        failed, unauthorized, rejected, _ = self._events
        if self._health is not None:
            self._health.last_poll_error = message
            if action is Action.REFUSED:
                self._health.panther_refused = message
            elif action in (Action.REJECTED, Action.HALT):
                self._health.panther_rejected[self.name] = message
        status = status_of(exc)
        if action is Action.REFUSED:
            if self.failures == 1:
                log.error(unauthorized, status=status, error=message)
            return action
        if action in (Action.REJECTED, Action.HALT):
            if self.failures == 1:
                log.error(
                    rejected, status=status, reason=reason, error=message,
                    retry_in_seconds=round(self.slow_cadence(0.0), 1),
                    hint="retrying soon cannot help: fix the cause (panther.api_url, the"
                    " token's permissions); the bridge tries again at the"
                    " slow cadence (retry.max_backoff)",
                )
            return action
        fields = {"error": message, "status": status, "reason": reason}
        if self.failures == 1:
            log.warning(failed, **fields)
        else:
            log.debug(failed, consecutive_failures=self.failures, **fields)
        return action

    def succeeded(self) -> None:
        if self.failures:
            log.info(self._events[3], failures=self.failures)
        if self._health is not None:
            self._health.panther_rejected.pop(self.name, None)
        self.failures = 0
        self.action = None
        self._retry_after = None

    def slow_cadence(self, interval: float) -> float:
        """The wait after a failure that retrying soon cannot fix."""
        return max(self._policy.max_backoff, interval)

    def delay(self, interval: float) -> float:
        """The wait before the next attempt: `interval`, plus jittered backoff after failures,
        at least a server's (capped) Retry-After; the slow cadence after a permanent one."""
        if not self.failures:
            return interval
        if self.action in (Action.REJECTED, Action.HALT):
            return self.slow_cadence(interval)
        delay = interval + self._policy.delay(self.failures - 1)
        if self._retry_after is not None:
            delay = max(delay, min(self._retry_after, self._policy.max_retry_after))
        return min(delay, max(self._policy.max_backoff, interval))


__all__ = [
    "Action",
    "FailureBurst",
    "action_for",
    "retry_after_of",
    "status_of",
]
