"""The failure policy of the Panther loops: by type, reported once per burst, and a permanent
answer retried at the slow cadence only, never like a 503."""

from __future__ import annotations

import random

import pytest
import structlog

from bridge.errors import error_for_status
from bridge.failures import Action, FailureBurst
from bridge.health import Health
from bridge.metrics import Metrics
from bridge.retry import RetryPolicy


def failure(status: int, retry_after: float | None = None):  # -> ApiError
    return error_for_status(
        status, target="panther", body='{"message": "m"}', retry_after=retry_after,
        what="GET /alerts",
    )


@pytest.fixture
def burst() -> tuple[FailureBurst, Health, Metrics]:
    metrics = Metrics()
    health = Health(poll_interval=1.0)
    policy = RetryPolicy.from_settings(initial_backoff=1, max_backoff=60, max_retry_after=30,
                         rng=random.Random(3))
    return FailureBurst("poll", metrics, health, policy), health, metrics


def retries(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "bridge_retries_total", {"target": "panther", "reason": reason}
    )
    return value or 0.0


class TestFailureBurst:
    """One loop's failures: counted by reason, logged once, the wait chosen by the type."""

    @pytest.mark.parametrize("status", [400, 404, 422])
    def test_permanent_answer_is_slow_and_reported(self, burst, status: int) -> None:
        faults, health, metrics = burst
        with structlog.testing.capture_logs() as logs:
            for _ in range(4):
                assert faults.failed(failure(status)) is Action.REJECTED
        (error,) = [e for e in logs if e["event"] == "poll.rejected"]
        assert error["log_level"] == "error" and error["status"] == status
        assert "retrying soon cannot help" in error["hint"]
        assert not [e for e in logs if e["event"] == "poll.failed"]
        assert retries(metrics, "rejected") == 4
        # The slow cadence, every time: no jittered backoff starting near the poll interval.
        assert {faults.delay(1.0) for _ in range(20)} == {60.0}
        ready, details = health.readiness()
        assert not ready
        assert any(r.startswith("Panther rejects the poll requests") for r in details["reasons"])
        faults.succeeded()
        assert health.panther_rejected == {}
        assert faults.delay(1.0) == 1.0

    def test_server_error_backs_off_with_jitter(self, burst) -> None:
        faults, health, metrics = burst
        for _ in range(4):
            assert faults.failed(failure(503)) is Action.RETRY
        delays = {faults.delay(1.0) for _ in range(20)}
        assert len(delays) > 5 and max(delays) <= 60
        assert health.panther_rejected == {}
        assert retries(metrics, "server_error") == 4

    def test_rate_limit_waits_the_retry_after(self, burst) -> None:
        faults, _, metrics = burst
        assert faults.failed(failure(429, retry_after=20)) is Action.PAUSE
        assert all(faults.delay(1.0) >= 20 for _ in range(20))
        assert retries(metrics, "rate_limited") == 1

    def test_refused_credentials(self, burst) -> None:
        faults, health, metrics = burst
        with structlog.testing.capture_logs() as logs:
            faults.failed(failure(401))
            faults.failed(failure(401))
        assert [e["event"] for e in logs] == ["poll.unauthorized"]
        assert health.panther_refused and retries(metrics, "auth") == 2

    def test_each_loop_clears_only_its_own_rejection(self) -> None:
        health = Health(poll_interval=1.0)
        metrics, policy = Metrics(), RetryPolicy.from_settings()
        poll = FailureBurst("poll", metrics, health, policy)
        sync = FailureBurst("status_sync", metrics, health, policy)
        poll.failed(failure(400))
        sync.failed(failure(404))
        poll.succeeded()
        assert list(health.panther_rejected) == ["status_sync"]
