"""bridge.health: what makes the bridge ready, and every reason it is not."""

from __future__ import annotations

import pytest

from bridge.health import Health


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def health(clock: Clock) -> Health:
    """Open state and one good poll: ready, until a test breaks something."""
    h = Health(poll_interval=10.0, clock=clock)
    h.state_open = True
    h.poll_succeeded()
    return h


def reasons(health: Health) -> list[str]:
    ready, details = health.readiness()
    assert ready is (not details["reasons"]) is details["ready"]
    return details["reasons"]  # type: ignore[return-value]


class TestReadiness:
    """Ready means state open and writable, a poll within 3 intervals, nobody refusing us."""

    def test_fresh_record_is_not_ready(self, clock: Clock) -> None:
        h = Health(poll_interval=10.0, clock=clock)
        assert h.started_at == 1000.0
        assert reasons(h) == ["state database is not open", "no successful Panther poll yet"]

    def test_ready_after_state_and_a_poll(self, health: Health, clock: Clock) -> None:
        ready, details = health.readiness()
        assert ready and details == {
            "ready": True, "reasons": [], "last_successful_poll": 1000.0,
        }

    def test_poll_older_than_three_intervals(self, health: Health, clock: Clock) -> None:
        clock.now += 30.0
        assert reasons(health) == []
        clock.now += 0.5
        assert reasons(health) == [
            "last successful Panther poll 30s ago (more than 3 poll intervals, 30s)"
        ]
        health.poll_succeeded()
        assert reasons(health) == []

    def test_a_good_poll_clears_the_last_error_and_refusal(self, health: Health) -> None:
        health.last_poll_error = "503 from Panther"
        health.panther_refused = "401"
        assert reasons(health) == ["Panther refuses our credentials: 401"]
        assert health.readiness()[1]["last_poll_error"] == "503 from Panther"
        health.poll_succeeded()
        assert reasons(health) == [] and "last_poll_error" not in health.readiness()[1]

    @pytest.mark.parametrize(
        ("field", "value", "reason"),
        [
            ("state_open", False, "state database is not open"),
            ("state_problem", "disk full",
             "state database cannot be written, intake paused: disk full"),
            ("panther_refused", "403", "Panther refuses our credentials: 403"),
            ("bigpanda_refused", "401", "BigPanda refuses our credentials: 401"),
            ("panther_write_refused", "403",
             "Panther refuses the two-way sync's writes (missing 'Manage Alerts' permission): 403"),
            ("sync_back_refused", "401", "BigPanda refuses sync_back.api_key: 401"),
        ],
    )
    def test_each_problem_is_named(
        self, health: Health, field: str, value: object, reason: str
    ) -> None:
        setattr(health, field, value)
        assert reasons(health) == [reason]

    def test_rejections_named_per_loop_in_order(self, health: Health) -> None:
        health.panther_rejected = {"sweep": "400 bad cursor", "poll": "404"}
        assert reasons(health) == [
            "Panther rejects the poll requests (retried at the slow cadence only): 404",
            "Panther rejects the sweep requests (retried at the slow cadence only): 400 bad cursor",
        ]

    def test_every_reason_at_once(self, clock: Clock) -> None:
        h = Health(poll_interval=1.0, clock=clock)
        h.bigpanda_refused = "401"
        h.sync_back_refused = "403"
        assert len(reasons(h)) == 4


class TestStandby:
    """A standby polls nothing: Panther's freshness does not apply, the lease does."""

    def test_standby_without_a_poll_is_ready(self, clock: Clock) -> None:
        h = Health(poll_interval=10.0, clock=clock, role="standby")
        h.state_open = True
        ready, details = h.readiness()
        assert ready and details["role"] == "standby"

    def test_standby_needs_the_lease(self, clock: Clock) -> None:
        h = Health(poll_interval=10.0, clock=clock, role="standby", state_open=True)
        h.lease_error = "connection refused"
        assert reasons(h) == ["cannot reach the leadership lease: connection refused"]

    def test_leader_is_judged_on_its_polls(self, health: Health, clock: Clock) -> None:
        health.role = "leader"
        health.lease_error = "ignored while leading"
        clock.now += 100
        ready, details = health.readiness()
        assert not ready and details["role"] == "leader"
        assert details["reasons"][0].startswith("last successful Panther poll 100s ago")
