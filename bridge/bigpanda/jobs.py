"""Follows BigPanda's asynchronous jobs: a 202 with a `Location` to poll (shared/api/BIGPANDA.md).

The dispatcher parks a 202-accepted batch's events as a job in the outbox; the tracker polls each
job to `done` (its events delivered) or `failed` / timed out / gone (404): back to the outbox with a
backoff that grows with each failed job, and dead-lettered `expired` once they have failed for
`give_up_after`, so a job URL that answers 404 forever cannot make the bridge resend the same batch
without end. Jobs live in the outbox, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING

import orjson
import structlog

from bridge.bigpanda.client import BigPandaClient
from bridge.errors import ApiError, BridgeError, StateError
from bridge.metrics import Metrics
from bridge.periodic import every
from bridge.retry import RetryPolicy
from bridge.state.sqlite import Outbox

if TYPE_CHECKING:  # the dispatcher imports this module
    from bridge.dispatch import Dispatcher

log = structlog.get_logger("bridge.dispatch")


@dataclass(eq=False)
class JobTracker:
    """Follows BigPanda 202 jobs to their end; jobs live in the outbox, so they survive restarts."""

    client: BigPandaClient
    outbox: Outbox
    metrics: Metrics
    dispatcher: Dispatcher
    _: KW_ONLY
    poll_interval: float
    policy: RetryPolicy
    clock: Callable[[], float] = time.time

    async def run(self, stopping: asyncio.Event) -> None:
        async for _ in every(self.poll_interval, stopping):
            await self.poll_all()

    async def poll_all(self) -> None:
        try:
            jobs = self.outbox.jobs()
            self.metrics.jobs_in_flight.set(len(jobs))
            for job in jobs:
                await self._poll(job.id, job.url, job.deadline)
            self.metrics.jobs_in_flight.set(len(self.outbox.jobs()))
        except StateError as exc:
            # A job's outcome that cannot be recorded is asked again at the next round: the
            # job stays open in the state, and BigPanda answers the same.
            self.metrics.state_errors.labels(reason=exc.reason).inc()
            log.warning("job.unrecorded", reason=exc.reason, error=str(exc)[:500])

    async def _poll(self, job_id: int, url: str, deadline: float) -> None:
        now = self.clock()
        if now >= deadline:
            self._fail(job_id, "timeout", "job did not finish before bigpanda.job_timeout")
            return
        try:
            state = await self.client.get_job(url)
        except BridgeError as exc:
            if isinstance(exc, ApiError) and exc.status == 404:
                self._fail(job_id, "failed", f"job {url} no longer exists (HTTP 404)")
                return
            log.warning("job.poll_failed", job=job_id, error=str(exc)[:300])
            return
        self.outbox.note_job_poll(job_id, state.status)
        if state.status == "done":
            events = self.outbox.job_events(job_id)
            self.outbox.finish_job(job_id, done=True, now=now)
            self.dispatcher.count_delivered([(s, t) for _, s, t in events], now)
            self.metrics.jobs.labels(result="done").inc()
            log.info("job.done", job=job_id, events=len(events))
        elif state.status == "failed":
            self._fail(job_id, "failed", f"job failed: {orjson.dumps(state.body).decode()[:500]}")
        elif state.status not in ("pending", "started"):
            log.warning("job.unknown_status", job=job_id, status=state.status[:50])

    def _fail(self, job_id: int, result: str, error: str) -> None:
        """A job that did not end `done`: its events back in line with a backoff that grows with
        each failed job, or dead-lettered `expired` once they have failed for `give_up_after`.

        `result` is the `bridge_jobs_total` label: `failed` (the job said so, or its URL answers
        404: a job that can never be read again) or `timeout`.
        """
        now = self.clock()
        attempts, first_failed_at = self.dispatcher.job_batches.pop(job_id, (0, None))
        self.metrics.jobs.labels(result=result).inc()
        if self.policy.expired(first_failed_at, now):
            ids = [i for i, _, _ in self.outbox.job_events(job_id)]
            moved = self.outbox.dead_letter(
                ids, reason="expired", detail=f"still failing after retries: {error}", now=now
            )
            self.outbox.finish_job(job_id, done=False, error=error, now=now)
            if moved:
                self.metrics.events_dead_lettered.labels(reason="expired").inc(moved)
            log.error("job.expired", job=job_id, result=result, events=moved, error=error)
            return
        delay = self.policy.delay(attempts + 1)
        ids = self.outbox.finish_job(
            job_id, done=False, error=error, retry_at=now + delay, now=now
        )
        log.warning(
            "job.failed", job=job_id, result=result, events=len(ids), error=error,
            retry_in_seconds=round(delay, 3),
        )
        self.dispatcher.wake()
