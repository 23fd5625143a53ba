"""Delivery guarantees end to end: the real bridge against both simulators, one fault at a time.

Every test counts on the BigPanda simulator (by incident identifier, exact resends deduplicated
like the real service does) and reads timings from its request log, never from test wall-clock.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from harness import (
    Rig,
    all_delivered,
    metric,
    running,
    settled,
    wait_until,
)

from bridge.config import Settings
from bridge.service import Bridge
from bridge.state.sqlite import Outbox

# Timestamps come from two clocks (the bridge's time.time, the simulator's monotonic): allow this.
CLOCK_SLACK = 0.02


def assert_exactly_once(rig: Rig, expected: list[str]) -> None:
    delivered = rig.delivered()
    assert set(delivered) == set(expected)
    assert max(delivered.values()) == 1


def assert_resends_identical(rig: Rig) -> None:
    """Every alert that went out more than once went out byte for byte the same."""
    bodies = [r.body for r in rig.posts()]
    assert len(set(bodies)) == 1, "a resend differed from the first send"


def alerts_against(rig: Rig, n: int, answers: str, *, jobs: str | None = None) -> list[str]:
    """`n` new alerts in Panther, and BigPanda scripted to answer `answers` (its jobs `jobs`)."""
    expected = rig.generate(n)
    rig.bigpanda.script(answers)
    if jobs is not None:
        rig.bigpanda.job_script(jobs)
    return expected


@contextlib.asynccontextmanager
async def delivering(
    rig: Rig, expected: list[str], settings: Settings | None = None, *,
    timeout: float = 8, what: str = "delivery",
) -> AsyncIterator[Bridge]:
    """The bridge running until `expected` is delivered and nothing is pending, then still."""
    async with running(settings or rig.settings()) as bridge:
        await wait_until(all_delivered(rig, bridge, expected), timeout, what=what)
        yield bridge


async def deliver(rig: Rig, expected: list[str], settings: Settings | None = None,
                  **wait: Any) -> None:
    async with delivering(rig, expected, settings, **wait):
        pass


class TestRetriableFaults:
    """408, 429, 5xx but 501, resets, timeouts and outages are retried until delivered, once."""

    async def test_scripted_sequence_with_retry_after(self, rig: Rig) -> None:
        expected = alerts_against(rig, 5, "500,500,429:Retry-After=1,201")
        async with delivering(rig, expected) as bridge:
            assert metric(bridge, "bridge_retries_total", target="bigpanda",
                          reason="server_error") == 2
            assert metric(bridge, "bridge_retries_total", target="bigpanda",
                          reason="rate_limited") == 1
        posts = rig.posts()
        assert [p.status for p in posts] == [500, 500, 429, 201]
        assert posts[3].at - posts[2].at >= 1.0 - CLOCK_SLACK, "Retry-After: 1 not honoured"
        assert_resends_identical(rig)
        assert_exactly_once(rig, expected)

    async def test_rate_limit_pauses_every_batch(self, rig: Rig) -> None:
        expected = alerts_against(rig, 40, "429:Retry-After=1")
        settings = rig.settings(bigpanda={"batch_size": 5, "max_in_flight": 2})
        await deliver(rig, expected, settings)
        posts = rig.posts()
        limited = next(p for p in posts if p.status == 429)
        # A batch already on the wire when the 429 came back cannot be recalled (max_in_flight 2);
        # every request started after that must wait out the whole pause, whatever its batch.
        later = [p for p in posts if p.at > limited.at + 0.1]
        assert later, "nothing was sent after the pause"
        assert min(p.at for p in later) - limited.at >= 1.0 - CLOCK_SLACK
        assert len(posts) >= 40 // 5 + 1
        assert_exactly_once(rig, expected)

    async def test_timeouts_and_server_errors_are_retried(self, rig: Rig) -> None:
        expected = alerts_against(rig, 3, "408,502,503,504,500")
        async with delivering(rig, expected) as bridge:
            assert not bridge.outbox.dead_letters()
        assert [p.status for p in rig.posts()] == [408, 502, 503, 504, 500, 201]
        assert_resends_identical(rig)
        assert_exactly_once(rig, expected)

    async def test_backoff_grows_between_attempts(
        self, rig: Rig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Full jitter keeps each wait under initial * 2**n; the cap keeps it under max_backoff.
        Read from the retry times the bridge stored, each against the moment it stored it."""
        expected = alerts_against(rig, 2, "500,500,500,500,500")
        settings = rig.settings(retry={"initial_backoff": 0.1, "max_backoff": 0.3})
        waits: list[float] = []
        async with running(settings) as bridge:
            mark_retry = bridge.outbox.mark_retry

            def recording(ids: list[int], *, next_attempt_at: float, now: float | None = None,
                          **kwargs: Any) -> None:
                assert now is not None
                waits.append(next_attempt_at - now)
                mark_retry(ids, next_attempt_at=next_attempt_at, now=now, **kwargs)

            monkeypatch.setattr(bridge.outbox, "mark_retry", recording)
            await wait_until(all_delivered(rig, bridge, expected), 8, what="delivery")
        assert [p.status for p in rig.posts()] == [500] * 5 + [201]
        ceilings = [0.1, 0.2, 0.3, 0.3, 0.3]
        assert len(waits) == len(ceilings)
        for attempt, (wait, ceiling) in enumerate(zip(waits, ceilings, strict=True)):
            assert 0 <= wait <= ceiling, f"attempt {attempt}: waited {wait}, ceiling {ceiling}"
        assert_exactly_once(rig, expected)

    async def test_connection_reset_is_retried(self, rig: Rig) -> None:
        expected = alerts_against(rig, 4, "reset,reset")
        async with delivering(rig, expected) as bridge:
            assert metric(bridge, "bridge_retries_total", target="bigpanda",
                          reason="transport") == 2
        assert len(rig.posts()) == 3
        assert_resends_identical(rig)
        assert_exactly_once(rig, expected)

    async def test_slow_response_beyond_timeout_is_retried(self, rig: Rig) -> None:
        """The slow request may still land after we gave up on it: the resend is then a 204."""
        expected = alerts_against(rig, 3, "slow:1.0")
        async with delivering(rig, expected, rig.settings(bigpanda={"timeout": 0.3})) as bridge:
            assert metric(bridge, "bridge_retries_total", target="bigpanda",
                          reason="timeout") >= 1
        assert len(rig.posts()) >= 2
        assert_resends_identical(rig)
        assert_exactly_once(rig, expected)

    async def test_outage_then_recovery(self, rig: Rig) -> None:
        expected = rig.generate(30)
        outage_ends = time.monotonic() + 1.5  # the simulator's clock
        rig.bigpanda.outage(1.5)
        settings = rig.settings(bigpanda={"batch_size": 10})
        async with delivering(rig, expected, settings, timeout=9) as bridge:
            assert not bridge.outbox.dead_letters()
        posts = rig.posts()
        failed = [p for p in posts if p.status == 503]
        ok = [p for p in posts if p.status in (201, 204)]
        assert failed and ok
        assert min(p.at for p in ok) >= outage_ends - CLOCK_SLACK
        for first_try in {p.body for p in failed}:
            assert first_try in {p.body for p in ok}, "a batch was resent with different bytes"
        assert_exactly_once(rig, expected)

    async def test_give_up_after_dead_letters_as_expired(self, rig: Rig) -> None:
        rig.generate(3)
        rig.bigpanda.outage(30)
        settings = rig.settings(retry={"give_up_after": 0.4})
        async with running(settings) as bridge:
            await wait_until(lambda: len(bridge.outbox.dead_letters()) == 3, 8, what="expiry")
            letters = bridge.outbox.dead_letters()
            assert {dl.reason for dl in letters} == {"expired"}
            assert all("503" in dl.detail for dl in letters)
            assert all(dl.payload for dl in letters), "an expired event must stay replayable"
            assert metric(bridge, "bridge_events_dead_lettered_total", reason="expired") == 3
        assert not rig.bigpanda.accepted


class TestPermanentFaults:
    """A bad event is isolated and dead-lettered; refused credentials drop nothing."""

    async def test_501_is_permanent(self, rig: Rig) -> None:
        (expected,) = rig.generate(1)
        rig.bigpanda.script("501")
        async with running(rig.settings()) as bridge:
            await wait_until(lambda: bool(bridge.outbox.dead_letters()), 5, what="dead letter")
            await wait_until(lambda: settled(bridge), 2, what="settled")
            (letter,) = bridge.outbox.dead_letters()
        assert letter.reason == "rejected"
        assert "HTTP 501" in letter.detail and "scripted 501" in letter.detail
        assert letter.payload is not None and expected.encode() in letter.payload
        assert len(rig.posts()) == 1, "501 was retried"

    async def test_poisoned_alert_in_a_batch_of_20(self, rig: Rig) -> None:
        expected = rig.generate(20)
        bad = expected[7]
        rig.bigpanda.poison(bad)
        async with running(rig.settings(bigpanda={"batch_size": 20})) as bridge:
            good = [e for e in expected if e != bad]
            await wait_until(all_delivered(rig, bridge, good), 8, what="delivery")
            letters = bridge.outbox.dead_letters()
            assert metric(bridge, "bridge_events_dead_lettered_total", reason="rejected") == 1
        (letter,) = letters
        assert letter.alert_id == bad.removeprefix("panther-")
        assert letter.reason == "rejected"
        assert "HTTP 400" in letter.detail and "poisoned" in letter.detail
        assert_exactly_once(rig, good)
        assert rig.posts()[0].alert_count == 20

    @pytest.mark.parametrize("refusals", ["401,401,403", "403"])
    async def test_refused_credentials_keep_everything(self, rig: Rig, refusals: str) -> None:
        expected = alerts_against(rig, 6, refusals)
        reasons: list[str] = []

        # One batch at a time: a concurrent batch's success would end the refusal at once.
        settings = rig.settings(bigpanda={"batch_size": 3, "max_in_flight": 1})
        async with running(settings) as bridge:

            def delivered_and_watch_readiness() -> bool:
                ready, details = bridge.health.readiness()
                if not ready:
                    reasons.extend(details["reasons"])  # type: ignore[arg-type]
                return all_delivered(rig, bridge, expected)()

            await wait_until(delivered_and_watch_readiness, 8, what="delivery", every=0.005)
            assert bridge.health.bigpanda_refused is None, "readiness did not recover"
            assert not bridge.outbox.dead_letters()
            assert all(e.attempts == 0 for e in bridge.outbox.due(100, now=float("inf")))
        assert any(r.startswith("BigPanda refuses our credentials") for r in reasons)
        assert_exactly_once(rig, expected)


class TestJobs:
    """A 202 is delivered only when its job is done; a failed or stuck job is resent unchanged."""

    async def test_pending_started_done(self, rig: Rig) -> None:
        expected = alerts_against(rig, 4, "202", jobs="pending,started,done")
        seen_states: set[str] = set()
        async with running(rig.settings()) as bridge:

            def done() -> bool:
                counts = bridge.outbox.counts()
                if counts["job"]:
                    seen_states.add("job")
                    assert not rig.bigpanda.accepted or len(rig.job_polls()) >= 3
                return all_delivered(rig, bridge, expected)()

            await wait_until(done, 5, what="job done", every=0.01)
            assert metric(bridge, "bridge_jobs_total", result="done") == 1
        assert "job" in seen_states
        assert len(rig.posts()) == 1
        assert len(rig.job_polls()) == 3
        assert_exactly_once(rig, expected)

    @pytest.mark.parametrize(
        ("answer", "job_steps", "polls"),
        [
            pytest.param("202abs", "done", 1, id="absolute_location"),
            # An unknown job status is no failure: the job is polled again, like `pending`.
            pytest.param("202", "queued,reticulating,done", 3, id="unknown_status_waits"),
        ],
    )
    async def test_job_followed_until_done(
        self, rig: Rig, answer: str, job_steps: str, polls: int
    ) -> None:
        expected = alerts_against(rig, 2, answer, jobs=job_steps)
        await deliver(rig, expected, timeout=5, what="job done")
        assert len(rig.posts()) == 1, "the job was not followed to its end"
        assert len(rig.job_polls()) == polls
        assert_exactly_once(rig, expected)

    @pytest.mark.parametrize(
        ("job_steps", "job_timeout", "result"),
        [
            pytest.param("pending,failed", None, "failed", id="failed_job"),
            pytest.param("pending", 0.5, "timeout", id="timeout_counts_as_failed"),
            pytest.param("queued", 0.4, "timeout", id="unknown_status_until_timeout"),
        ],
    )
    async def test_job_not_done_is_resent_identical(
        self, rig: Rig, job_steps: str, job_timeout: float | None, result: str
    ) -> None:
        expected = alerts_against(rig, 3, "202", jobs=job_steps)
        settings = rig.settings(bigpanda={"job_timeout": job_timeout} if job_timeout else {})
        async with delivering(rig, expected, settings, timeout=5, what="resend") as bridge:
            assert metric(bridge, "bridge_jobs_total", result=result) == 1
        posts = rig.posts()
        assert [p.status for p in posts] == [202, 201]
        if job_timeout is not None:
            assert posts[1].at - posts[0].at >= job_timeout - CLOCK_SLACK
        assert_resends_identical(rig)
        assert_exactly_once(rig, expected)

    async def test_jobs_survive_a_restart(self, rig: Rig) -> None:
        expected = alerts_against(rig, 3, "202", jobs="pending,pending,started,done")
        first = rig.settings(bigpanda={"job_poll_interval": 30})
        async with running(first) as bridge:
            await wait_until(lambda: bridge.outbox.counts()["jobs"] == 1, 5, what="a job")
        assert not rig.bigpanda.accepted
        outbox = Outbox.open(first.state.path)
        try:
            (job,) = outbox.jobs()
            assert outbox.counts()["job"] == 3
        finally:
            outbox.close()
        await deliver(rig, expected, timeout=5, what="job done")
        assert len(rig.posts()) == 1, "the restarted bridge resent instead of following the job"
        assert rig.job_polls()[-1].path == job.url.removeprefix(rig.bigpanda_url)
        assert_exactly_once(rig, expected)


class TestFrozenPayload:
    """A retried event goes out with the bytes it was first sent with, timestamp included."""

    async def test_many_retries_same_bytes(self, rig: Rig) -> None:
        expected = alerts_against(rig, 10, "500,reset,429,503,202", jobs="failed")
        await deliver(rig, expected)
        assert len(rig.posts()) == 6
        assert_resends_identical(rig)
        assert_exactly_once(rig, expected)


class TestAnswersThatAreNotSuccess:
    """Only BigPanda's documented answers count as delivered; anything else loses nothing."""

    async def test_html_200_loses_nothing(self, rig: Rig) -> None:
        """A proxy (or a wrong api_url) answering 200 with an HTML page: every alert is kept,
        retried, and delivered once BigPanda itself answers again."""
        expected = alerts_against(rig, 200, "html*")
        settings = rig.settings(bigpanda={"batch_size": 20, "max_in_flight": 2})
        with structlog.testing.capture_logs() as logs:
            async with running(settings) as bridge:
                await wait_until(lambda: len(rig.posts()) >= 6, 8, what="HTML answers")
                assert not rig.bigpanda.accepted
                assert bridge.outbox.counts()["sent"] == 0, "an HTML 200 was taken as delivered"
                rig.bigpanda.clear_script()
                await wait_until(all_delivered(rig, bridge, expected), 15, what="delivery")
                assert not bridge.outbox.dead_letters()
                assert metric(bridge, "bridge_retries_total", target="bigpanda",
                              reason="bad_response") >= 6
        html = [p for p in rig.posts() if p.status == 200]
        assert len(html) >= 6
        for body in {p.body for p in html}:
            assert body in {p.body for p in rig.posts() if p.status == 201}, "resent changed"
        assert_exactly_once(rig, expected)
        warned = [e for e in logs if e["event"] in ("batch.failed", "bigpanda.unavailable")]
        assert warned and all("bigpanda.api_url" in e["error"] for e in warned)

    async def test_job_404_forever_dead_letters_after_give_up(self, rig: Rig) -> None:
        """Every answer a 202 whose job URL answers 404: the batch is resent with backoff, then
        dead-lettered `expired` with the reason once retry.give_up_after has passed."""
        expected = alerts_against(rig, 5, "202*", jobs="404")
        settings = rig.settings(
            retry={"give_up_after": 1.0, "initial_backoff": 0.05, "max_backoff": 0.3},
            bigpanda={"job_poll_interval": 0.05},
        )
        async with running(settings) as bridge:
            await wait_until(lambda: bridge.outbox.counts()["dead"] == 5, 10, what="expiry")
            await wait_until(lambda: settled(bridge), 5, what="settled")
            letters = bridge.outbox.dead_letters()
            assert metric(bridge, "bridge_events_dead_lettered_total", reason="expired") == 5
            assert metric(bridge, "bridge_jobs_total", result="failed") >= 2
        assert {dl.reason for dl in letters} == {"expired"}
        assert sorted(f"panther-{dl.alert_id}" for dl in letters) == sorted(expected)
        assert all("HTTP 404" in dl.detail for dl in letters)
        assert all(dl.payload and dl.attempts >= 1 for dl in letters)
        posts = rig.posts()
        assert len(posts) >= 2 and {p.status for p in posts} == {202}
        assert len({p.body for p in posts}) == 1, "a resend differed"
        # Every job was polled until it answered 404, and none after its batch was dead.
        assert len([r for r in rig.job_polls() if r.status == 404]) == len(posts)
        assert not rig.bigpanda.accepted
