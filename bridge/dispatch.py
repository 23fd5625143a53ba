"""Delivery: outbox -> BigPanda, in batches, with retries, bisection and job tracking.

The outbox accumulates; this module only sends (the aiokafka split). A batch is the frozen payloads
of up to `batch_size` events of one app key, joined byte for byte, so a resend of the same events is
a byte-identical request that BigPanda drops with 204 (shared/api/BIGPANDA.md).

How a failure is handled is decided by its type (`bridge.failures.action_for`):
- retriable (408, 429, 5xx but 501, transport errors): the events get a next attempt time from
  the retry policy; a 429 also pauses the whole sender, since every other batch would hit the
  same limit; so do `CIRCUIT_THRESHOLD` retriable failures in a row (BigPanda down or
  unreachable): the sender pauses for a growing backoff, then probes with one batch at a time
  until one gets through, instead of every queued batch retrying on its own clock and competing
  with intake for the whole outage;
- permanent (other 4xx): the batch is bisected until the offending events are isolated; each goes
  to dead letters once, with the response body, and the rest are delivered;
- auth (401/403): nothing is dropped, sending stops, readiness goes down, and a probe retries later.
A 202 with `Location` parks the batch's events as a job; the job tracker (`bridge.bigpanda.jobs`)
polls it to `done` (delivered) or `failed` / timed out / gone (404): back to the outbox with a
backoff that grows with each failed job, and dead-lettered `expired` once they have failed for
`give_up_after`, so a job URL that answers 404 forever cannot make the bridge resend the same
batch without end.

Nothing about a batch lives only in memory: events stay `pending` in the outbox until an answer is
recorded, so a crash (or a batch cancelled at the end of the shutdown grace) means a byte-identical
resend after the restart, never a loss. The in-memory `_in_flight` set only stops two concurrent
batches from taking the same events. Memory stays at about `max_in_flight` batches whatever the
backlog: the outbox is read one batch at a time (`Outbox.due(limit)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence

import orjson
import structlog

from bridge.bigpanda.client import BigPandaClient
from bridge.bigpanda.jobs import JobTracker
from bridge.errors import ApiError, AuthError, BridgeError, FencedError, StateError, retry_reason
from bridge.failures import Action, action_for, retry_after_of, status_of
from bridge.health import Health
from bridge.metrics import Metrics
from bridge.retry import RetryPolicy
from bridge.state.records import PendingEvent
from bridge.state.sqlite import Outbox

log = structlog.get_logger("bridge.dispatch")

MAX_BATCH_BYTES = 1024 * 1024
AUTH_PROBE_MAX = 300.0
# The longest the idle loop sleeps without being woken: a safety net, not the schedule.
IDLE_MAX = 1.0
# Consecutive retriable failures (5xx, timeouts, transport errors), any batch, that pause the
# whole sender: one flaky answer is the batch's problem, three in a row are BigPanda's.
CIRCUIT_THRESHOLD = 3


def encode_batch(app_key: str, payloads: Sequence[bytes]) -> bytes:
    """`{"app_key": ..., "alerts": [...]}` from frozen payloads, without re-encoding them."""
    return b'{"app_key":' + orjson.dumps(app_key) + b',"alerts":[' + b",".join(payloads) + b"]}"


class Dispatcher:
    """Drains the outbox into BigPanda with up to `max_in_flight` concurrent batch requests."""

    def __init__(
        self,
        client: BigPandaClient,
        outbox: Outbox,
        metrics: Metrics,
        health: Health,
        *,
        batch_size: int,
        max_in_flight: int,
        policy: RetryPolicy,
        job_timeout: float,
        linger: float = 0.05,
        shutdown_grace: float | None = 20.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._metrics = metrics
        self._health = health
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._policy = policy
        self._job_timeout = job_timeout
        self._linger = linger
        self._shutdown_grace = shutdown_grace
        self._clock = clock
        self._wake = asyncio.Event()
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0
        self._auth_failures = 0
        # Retriable failures in a row, whatever the batch; at CIRCUIT_THRESHOLD the sender pauses
        # and then sends one batch at a time (a probe) until one succeeds.
        self._failures = 0
        self._fresh = False
        # Whether the last batch taken was full (by count or bytes): more are waiting.
        self._backlog = False
        self._stopping: asyncio.Event | None = None
        # Retry state of the batches parked as jobs (job id -> attempts, first failure), so a
        # failed job backs off and expires like a failed send. Only a hint: the durable values
        # are in the outbox and come back with the batch on its next send.
        self.job_batches: dict[int, tuple[int, float | None]] = {}
        self._state_failing = False

    def job_tracker(self, poll_interval: float) -> JobTracker:
        """The tracker of the 202 jobs this dispatcher parks. It shares the dispatcher's client,
        state, retry policy and clock: a failed job backs off and expires like a failed send."""
        return JobTracker(
            self._client, self._outbox, self._metrics, self,
            poll_interval=poll_interval, policy=self._policy, clock=self._clock,
        )

    # -- signals from the rest of the bridge --------------------------------------------------

    def wake(self, *, fresh: bool = False) -> None:
        """Look at the outbox now rather than at the next timer (`fresh`: new events arrived)."""
        self._fresh = self._fresh or fresh
        self._wake.set()

    def paused_for(self, now: float) -> float:
        """Seconds the sender stays paused (rate limit or refused credentials); 0 when not."""
        return max(0.0, self._paused_until - now)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Send until `stopping` is set; then give in-flight batches `shutdown_grace` to finish
        (None: as long as they take, when the caller bounds the whole shutdown, as the service
        does with one grace timer for every loop).

        If this loop is itself cancelled (the service's own grace ran out first), the batches it
        started are cancelled with it rather than left running against a closing session and a
        closed outbox.
        """
        self._stopping = stopping
        try:
            while not stopping.is_set():
                try:
                    started = await self.step()
                except StateError as exc:  # the queue cannot be read: wait, do not spin
                    self._on_state_error((), exc)
                    started = 0
                if not started:
                    await self._idle(stopping)
            await self.finish_in_flight(self._shutdown_grace)
        finally:
            await self._cancel_in_flight()

    async def _cancel_in_flight(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def step(self) -> int:
        """Start as many batches as there is room and due work for; return how many started."""
        now = self._clock()
        if now < self._paused_until:
            return 0
        started = 0
        room = 1 if self._failures >= CIRCUIT_THRESHOLD else self._max_in_flight
        while len(self._tasks) < room:
            batch = self._next_batch(now)
            if not batch:
                break
            self._in_flight.update(e.id for e in batch)
            task = asyncio.create_task(self._send(batch), name=f"send-{batch[0].id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def wait_in_flight(self) -> None:
        """Wait for every batch in flight to get its answer recorded."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def finish_in_flight(self, grace: float | None) -> None:
        """Wait up to `grace` seconds for in-flight batches, then cancel the rest.

        A cancelled batch has nothing recorded, so its events are still `pending` and go out again,
        byte-identical, after the restart (BigPanda drops the copy it may already have with 204).
        """
        if not self._tasks:
            return
        timeout = None if grace is None else max(grace, 0.0)
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
        if late:
            log.warning(
                "dispatch.shutdown_cancelled", batches=len(late),
                hint="their events stay pending and are resent on the next start",
            )
            await self._cancel_in_flight()

    async def _idle(self, stopping: asyncio.Event) -> None:
        """Sleep until new events, a finished batch, the next due retry, or the end of a pause.

        Events due now but not started are either in flight (their batch's end wakes us) or wait
        for a free slot (same), so the timer only needs the next retry due strictly *later*;
        counting the in-flight ones would make a retry behind a slow batch wait for IDLE_MAX.
        """
        now = self._clock()
        timeout = IDLE_MAX
        if now < self._paused_until:
            timeout = min(timeout, self._paused_until - now)
        else:
            next_due = self._outbox.next_due_at(after=now)
            if next_due is not None:
                timeout = min(timeout, next_due - now)
        if not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(timeout, 0.001))
        self._wake.clear()
        if self._fresh and self._linger and not stopping.is_set():
            # New events just arrived: a short linger lets the rest of the page land, so batches
            # go out full instead of one event at a time.
            self._fresh = False
            await asyncio.sleep(self._linger)

    def _next_batch(self, now: float) -> list[PendingEvent]:
        """The oldest due events of one app key, at most `batch_size` and MAX_BATCH_BYTES."""
        next_due = self._outbox.next_due_at()
        if next_due is None or next_due > now:
            return []  # nothing due: skip the walk over a queue waiting out its backoff
        due = self._outbox.due(self._batch_size, now=now, exclude=self._in_flight)
        self._backlog = False
        if not due:
            return []
        app_key = due[0].app_key
        if any(e.app_key != app_key for e in due):
            # Mixed app keys: the oldest event's key decides, and the batch is filled with it.
            due = self._outbox.due(
                self._batch_size, now=now, exclude=self._in_flight, app_key=app_key
            )
        batch: list[PendingEvent] = []
        size = 64 + len(app_key)
        for event in due:
            if batch and size + len(event.payload) + 1 > MAX_BATCH_BYTES:
                break
            batch.append(event)
            size += len(event.payload) + 1
            if len(batch) >= self._batch_size:
                break
        self._backlog = len(batch) >= self._batch_size or len(batch) < len(due)
        return batch

    # -- one batch -------------------------------------------------------------------------------

    async def _send(self, batch: list[PendingEvent]) -> None:
        """Deliver `batch`, then, while full batches wait and all is well, the next ones.

        Going on in the same task saves the round through the dispatcher loop (wake it, take
        a batch, start a task) between two batches of a backlog: under a catch-up, each of
        those event-loop turns waits behind the pagers' work.
        """
        try:
            while batch:
                try:
                    await self._deliver(batch)
                except FencedError as exc:  # this replica lost its lease: stop sending
                    log.warning("batch.fenced", events=len(batch), error=str(exc)[:300])
                    return
                except StateError as exc:
                    self._on_state_error(batch, exc)
                except Exception:  # a bug in one batch must not stop delivery
                    log.exception("batch.crashed", events=len(batch), first_event=batch[0].id)
                    self._schedule_retry(batch, None, "internal error while sending")
                finally:
                    self._in_flight.difference_update(e.id for e in batch)
                batch = self._next_of_backlog()
        finally:
            self._wake.set()

    def _next_of_backlog(self) -> list[PendingEvent]:
        """The next full batch for a slot that just finished one, or [] (the loop decides)."""
        if not self._backlog or self._failures or self._auth_failures:
            return []
        now = self._clock()
        if now < self._paused_until or (self._stopping is not None and self._stopping.is_set()):
            return []
        batch = self._next_batch(now)
        if batch and not self._backlog:
            return []  # a short batch: the loop's linger may fill it
        self._in_flight.update(e.id for e in batch)
        return batch

    async def _deliver(self, batch: list[PendingEvent]) -> None:
        app_key = batch[0].app_key
        body = encode_batch(app_key, [e.payload for e in batch])
        try:
            accepted = await self._client.post_alerts(body)
        except BridgeError as exc:
            action = action_for(exc)
            if action is Action.REFUSED and isinstance(exc, AuthError):
                self._on_auth_error(batch, exc)
            elif action is Action.REJECTED and isinstance(exc, ApiError):
                await self._on_rejected(batch, exc)
            else:  # RETRY, PAUSE; HALT cannot come from a request, and is not the events' fault
                self._on_retriable(batch, exc)
            return
        self._auth_failures = 0
        if self._failures >= CIRCUIT_THRESHOLD:
            log.info("bigpanda.recovered", failures=self._failures)
        self._failures = 0
        if self._health.bigpanda_refused:
            log.info("bigpanda.credentials_accepted")
        self._health.bigpanda_refused = None
        now = self._clock()
        if accepted.job_url:
            job_id = self._outbox.add_job(
                accepted.job_url, [e.id for e in batch], deadline=now + self._job_timeout, now=now
            )
            failed_at = [e.first_failed_at for e in batch if e.first_failed_at is not None]
            self.job_batches[job_id] = (
                max(e.attempts for e in batch), min(failed_at) if failed_at else None
            )
            self._metrics.jobs_in_flight.inc()
            self._state_recorded()
            log.info("batch.accepted_as_job", job=job_id, events=len(batch), app_key=app_key)
            return
        if accepted.status == 202:
            log.warning(
                "batch.accepted_without_location",
                events=len(batch),
                hint="BigPanda answered 202 without a Location header; counted as delivered",
            )
        self._outbox.mark_sent([e.id for e in batch], now=now)
        self._state_recorded()
        self.count_delivered([(e.bp_status, e.event_time) for e in batch], now)
        log.debug("batch.delivered", events=len(batch), status=accepted.status, app_key=app_key)

    def count_delivered(self, events: Sequence[tuple[str, float]], now: float) -> None:
        for status, n in Counter(status for status, _ in events).items():
            self._metrics.events_sent.labels(status=status).inc(n)
        observe = self._metrics.delivery_latency.observe
        for _, event_time in events:
            observe(max(0.0, now - event_time))

    def _on_retriable(self, batch: list[PendingEvent], exc: BridgeError) -> None:
        retry_after = retry_after_of(exc)
        status = status_of(exc)
        reason = retry_reason(exc)
        self._metrics.retries.labels(target="bigpanda", reason=reason).inc()
        if action_for(exc) is Action.PAUSE:
            pause = self._policy.delay(min(e.attempts for e in batch), retry_after)
            self._paused_until = max(self._paused_until, self._clock() + pause)
            log.warning("bigpanda.rate_limited", pause_seconds=round(pause, 3), status=status)
        elif (failures := self._failures + 1) >= CIRCUIT_THRESHOLD:
            self._failures = failures
            # Backoff grows with each failed probe (capped by retry.max_backoff), jittered over
            # its upper half: a pause near zero would be no pause at all.
            attempt = failures - CIRCUIT_THRESHOLD
            ceiling = min(
                self._policy.max_backoff, self._policy.initial_backoff * 2 ** min(attempt, 30)
            )
            pause = max(self._policy.delay(attempt, retry_after), ceiling / 2)
            self._paused_until = max(self._paused_until, self._clock() + pause)
            fields = {"pause_seconds": round(pause, 3), "status": status,
                      "consecutive_failures": failures, "error": str(exc)[:300]}
            if failures == CIRCUIT_THRESHOLD:
                log.warning("bigpanda.unavailable", **fields)
            else:
                log.debug("bigpanda.still_unavailable", **fields)
        else:
            self._failures = failures
            log.warning(
                "batch.failed", events=len(batch), status=status, error=str(exc)[:300],
                will_retry=True,
            )
        self._schedule_retry(batch, retry_after, str(exc))

    def _schedule_retry(
        self, batch: Sequence[PendingEvent], retry_after: float | None, error: str
    ) -> None:
        now = self._clock()
        expired = [e for e in batch if self._policy.expired(e.first_failed_at, now)]
        if expired:
            self._dead_letter(expired, "expired", f"still failing after retries: {error}")
        alive = [e for e in batch if e not in expired]
        if not alive:
            return
        attempt = max(e.attempts for e in alive)
        next_at = max(now + self._policy.delay(attempt, retry_after), self._paused_until)
        self._outbox.mark_retry(
            [e.id for e in alive], next_attempt_at=next_at, error=error, now=now
        )

    def _on_auth_error(self, batch: list[PendingEvent], exc: AuthError) -> None:
        """Refused credentials are nobody's event's fault: keep everything, pause, probe later."""
        self._auth_failures += 1
        probe = min(AUTH_PROBE_MAX, self._policy.delay(self._auth_failures))
        probe = max(probe, self._policy.initial_backoff)
        now = self._clock()
        self._paused_until = max(self._paused_until, now + probe)
        self._health.bigpanda_refused = f"HTTP {exc.status}: {exc}"[:500]
        self._metrics.retries.labels(target="bigpanda", reason=exc.reason).inc()
        log.error(
            "bigpanda.credentials_refused", status=exc.status, error=str(exc)[:500],
            next_probe_seconds=round(probe, 1),
        )
        # Not the events' fault: no attempt counted, nothing expires or is dropped.
        self._outbox.mark_retry(
            [e.id for e in batch], next_attempt_at=self._paused_until, error=str(exc), now=now,
            count_attempt=False,
        )

    async def _on_rejected(self, batch: list[PendingEvent], exc: ApiError) -> None:
        """Bisect a rejected batch until the bad events stand alone; deliver the rest."""
        if len(batch) == 1:
            event = batch[0]
            self._dead_letter(batch, "rejected", f"HTTP {exc.status}: {exc.body}")
            # Not `event=`: structlog takes the event name through that argument.
            log.error(
                "event.rejected", event_id=event.id, alert_id=event.alert_id, status=exc.status,
                body=exc.body[:500],
            )
            return
        log.warning("batch.rejected", events=len(batch), status=exc.status, body=exc.body[:300])
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            if self._clock() < self._paused_until:
                # A 429 or refused credentials (here or in another batch) paused the sender: the
                # rest of the bisection waits in the outbox rather than sending during the pause.
                self._requeue_until_pause_ends(half, f"bisection of a {exc.status} paused")
            else:
                await self._deliver(half)

    def _on_state_error(self, batch: Sequence[PendingEvent], exc: StateError) -> None:
        """The state file refused to record an answer (disk full, ...).

        The batch may well have been delivered; its events stay pending in the file, so they go
        out again, byte-identical, once their answer can be recorded (BigPanda drops the copy it
        has with 204). Meanwhile the sender pauses rather than resending in a tight loop.
        """
        pause = max(self._policy.delay(1), self._policy.initial_backoff)
        self._paused_until = max(self._paused_until, self._clock() + pause)
        self._metrics.state_errors.labels(reason=exc.reason).inc()
        fields = {"events": len(batch), "reason": exc.reason, "error": str(exc)[:500],
                  "pause_seconds": round(pause, 3)}
        if not self._state_failing:
            self._state_failing = True
            log.error("batch.unrecorded", **fields)
        else:
            log.debug("batch.unrecorded", **fields)

    def _state_recorded(self) -> None:
        if self._state_failing:
            self._state_failing = False
            log.info("state.writable_again", hint="delivery records its results again")

    def _requeue_until_pause_ends(self, events: Sequence[PendingEvent], why: str) -> None:
        self._outbox.mark_retry(
            [e.id for e in events], next_attempt_at=self._paused_until, error=why,
            now=self._clock(), count_attempt=False,
        )

    def _dead_letter(self, events: Sequence[PendingEvent], reason: str, detail: str) -> None:
        moved = self._outbox.dead_letter([e.id for e in events], reason=reason, detail=detail)
        if moved:
            self._metrics.events_dead_lettered.labels(reason=reason).inc(moved)
