"""bridge.bigpanda.jobs: BigPanda's 202 jobs followed to their end through the dispatcher's rig.

A job ends `done` (its events delivered), `failed`, gone (404) or past `bigpanda.job_timeout`:
then its events go back in line with a backoff that grows with each failed job, and expire once
they have failed for `give_up_after`. A job still `pending` stays open; nothing is lost when the
outcome cannot be recorded.
"""

from __future__ import annotations

import random
from typing import Any

from structlog.testing import capture_logs

from bridge.bigpanda.jobs import JobTracker
from bridge.errors import StateError
from bridge.retry import RetryPolicy
from bridge.sim.bigpanda import JOBS_PATH


class RecordingPolicy(RetryPolicy):
    """A retry policy that remembers the attempt number of every delay it was asked for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: list[int] = []

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        self.asked.append(attempt)
        return super().delay(attempt, retry_after)


def tracker_of(s: Any, clock: list[float] | None = None) -> JobTracker:
    """The rig's dispatcher's job tracker; with `clock`, both read the time from it."""
    if clock is not None:
        s.dispatcher._clock = lambda: clock[0]
    return s.dispatcher.job_tracker(poll_interval=0.01)


def jobs_total(s: Any, result: str) -> float:
    return s.metrics.registry.get_sample_value("bridge_jobs_total", {"result": result}) or 0.0


def job_polls(s: Any) -> int:
    return sum(1 for r in s.sim.requests if r.path.startswith(JOBS_PATH))


async def park_as_job(s: Any, n: int = 3) -> None:
    """`n` events sent in one batch that BigPanda answers 202: parked as one open job."""
    s.add(n)
    s.sim.script("202")
    assert await s.dispatcher.step() == 1
    await s.dispatcher.wait_in_flight()
    assert s.outbox.counts()["jobs"] == 1


class TestOutcomes:
    async def test_a_pending_job_stays_open_until_done(self, make_setup) -> None:
        async with make_setup(batch_size=10, max_in_flight=1) as s:
            s.sim.job_script("pending,started,done")
            tracker = tracker_of(s)
            await park_as_job(s)
            for polls in (1, 2):
                await tracker.poll_all()
                assert s.outbox.counts()["jobs"] == 1 and s.outbox.counts()["sent"] == 0
                assert [job.polls for job in s.outbox.jobs()] == [polls]
            await tracker.poll_all()
            assert s.outbox.counts()["jobs"] == 0 and s.outbox.counts()["sent"] == 3
            assert s.delivered() == 3
            assert jobs_total(s, "done") == 1 and jobs_total(s, "failed") == 0
            assert s.metrics.registry.get_sample_value("bridge_jobs_in_flight") == 0

    async def test_a_failed_job_puts_its_events_back_with_a_backoff(self, make_setup) -> None:
        async with make_setup(batch_size=10, max_in_flight=1) as s:
            clock = [1_000_000.0]
            s.sim.job_script("failed")
            tracker = tracker_of(s, clock)
            await park_as_job(s)
            with capture_logs() as logs:
                await tracker.poll_all()
            assert s.outbox.counts()["jobs"] == 0 and s.outbox.counts()["pending"] == 3
            assert s.outbox.due(10, now=clock[0]) == [], "retried before its backoff"
            retried = s.outbox.due(10, now=clock[0] + 3600)
            assert [e.attempts for e in retried] == [1, 1, 1]
            assert jobs_total(s, "failed") == 1
            (failed,) = [e for e in logs if e["event"] == "job.failed"]
            assert failed["events"] == 3 and "job failed" in failed["error"]

    async def test_a_job_past_its_deadline_times_out_without_being_asked(
        self, make_setup
    ) -> None:
        async with make_setup(batch_size=10, max_in_flight=1) as s:
            clock = [1_000_000.0]
            s.sim.job_script("pending")
            tracker = tracker_of(s, clock)
            await park_as_job(s)
            (job,) = s.outbox.jobs()
            clock[0] = job.deadline
            await tracker.poll_all()
            assert job_polls(s) == 0
            assert s.outbox.counts()["jobs"] == 0 and s.outbox.counts()["pending"] == 3
            assert jobs_total(s, "timeout") == 1

    async def test_an_unknown_status_is_logged_and_the_job_kept(self, make_setup) -> None:
        async with make_setup(batch_size=10, max_in_flight=1) as s:
            s.sim.job_script("weird,done")
            tracker = tracker_of(s)
            await park_as_job(s)
            with capture_logs() as logs:
                await tracker.poll_all()
            assert [e["status"] for e in logs if e["event"] == "job.unknown_status"] == ["weird"]
            assert s.outbox.counts()["jobs"] == 1
            await tracker.poll_all()
            assert s.outbox.counts()["sent"] == 3

    async def test_an_outcome_that_cannot_be_recorded_is_asked_again(self, make_setup) -> None:
        async with make_setup(batch_size=10, max_in_flight=1) as s:
            s.sim.job_script("done")
            tracker = tracker_of(s)
            await park_as_job(s)
            real = s.outbox.finish_job

            def disk_full(*args: Any, **kwargs: Any) -> list[int]:
                raise StateError("database or disk is full")

            s.outbox.finish_job = disk_full  # type: ignore[method-assign]
            with capture_logs() as logs:
                await tracker.poll_all()
            assert [e["reason"] for e in logs if e["event"] == "job.unrecorded"] == ["state"]
            assert s.metrics.registry.get_sample_value(
                "bridge_state_errors_total", {"reason": "state"}
            ) == 1
            assert s.outbox.counts()["jobs"] == 1, "the job was dropped with its outcome unknown"
            s.outbox.finish_job = real  # type: ignore[method-assign]
            await tracker.poll_all()
            assert s.outbox.counts()["sent"] == 3
            assert s.outbox.counts()["jobs"] == 0


class TestFailedJobs:
    """A job that fails or answers 404 backs off more each time, then expires."""

    async def test_job_404_backs_off_then_expires(self, make_setup) -> None:
        async with make_setup(batch_size=10, max_in_flight=1) as s:
            clock = [1_000_000.0]
            policy = RecordingPolicy(initial_backoff=1.0, max_backoff=60.0, give_up_after=100.0,
                                     max_retry_after=60.0, rng=random.Random(5))
            s.dispatcher._policy = policy
            tracker = tracker_of(s, clock)
            s.add(3)
            s.sim.script("202*")
            s.sim.job_script("404")
            rounds = 0
            while s.outbox.counts()["dead"] < 3:
                rounds += 1
                assert rounds < 20, "the batch was never dead-lettered"
                policy.asked.clear()
                assert await s.dispatcher.step() == 1
                await s.dispatcher.wait_in_flight()
                assert s.outbox.counts()["jobs"] == 1
                await tracker.poll_all()
                assert s.outbox.counts()["jobs"] == 0
                if s.outbox.counts()["dead"]:
                    break
                (queued,) = {e.attempts for e in s.outbox.due(10, now=float("inf"))}
                # Each failed job asks for the delay of one attempt more than the last.
                assert policy.asked == [queued]
                assert queued == rounds
                clock[0] += 30.0  # past any backoff of this policy's early attempts
            letters = s.outbox.dead_letters()
            assert {d.reason for d in letters} == {"expired"} and len(letters) == 3
            assert all("HTTP 404" in d.detail for d in letters)
            # First failure at t0, expired once 100 s had passed since: at the fifth job.
            assert rounds == 5
            assert len(s.posts()) == rounds
            assert s.delivered() == 0
