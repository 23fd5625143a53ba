"""The writer: delivers the two-way sync's write-backs from the outbox to Panther.

Write-backs are outbox events of their own kinds (`bridge.sync_back`), so they have the forward
path's guarantees: durable, retried with the shared `RetryPolicy` (a time stored with the event,
not a sleep), dead-lettered with the reason on a permanent error (visible in `bridge dlq`), and
marked sent in the commit after Panther's answer. A crash between the answer and that commit
leaves the write-back pending: a status is written again (no change: the alert has it), and a
comment is first looked for among the alert's comments by this token (`GET /alert-comments`), so
it is not posted twice: once in effect for both.

Status write-backs due together are grouped by target status into `PATCH /alerts` calls of at
most 25 ids; comments are one `POST /alert-comments` each. Nothing is written before the bridge
knows its own Panther token (`GET /api-tokens/self`): the status sync needs that id to recognise
the changes these writes cause and not send them back to BigPanda.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, MutableSet, Sequence
from dataclasses import KW_ONLY, dataclass, field

import orjson
import structlog

from bridge.errors import AuthError, BridgeError, retry_reason
from bridge.health import Health
from bridge.metrics import Metrics
from bridge.panther.writes import PantherWrites
from bridge.retry import RetryPolicy
from bridge.state.records import WRITEBACK_KINDS, PendingEvent
from bridge.state.sqlite import Outbox
from bridge.sync_back import KIND_COMMENT, KIND_STATUS

log = structlog.get_logger("bridge.writeback")

BATCH = 100
IDLE_MAX = 5.0


@dataclass(eq=False)
class WriteBack:
    """One loop delivering due write-backs to Panther."""

    writes: PantherWrites
    outbox: Outbox
    metrics: Metrics
    health: Health
    policy: RetryPolicy
    _: KW_ONLY
    own_actor_ids: MutableSet[str]
    clock: Callable[[], float] = time.time
    token_id: str | None = field(default=None, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _identity_failures: int = field(default=0, init=False, repr=False)

    def wake(self) -> None:
        self._wake.set()

    async def identify(self) -> bool:
        """Learn the bridge's own Panther token id once; False (and logged) while it fails."""
        if self.token_id is not None:
            return True
        try:
            token = await self.writes.token_self()
        except BridgeError as exc:
            self._identity_failures += 1
            if self._identity_failures == 1:
                log.warning("writeback.token_unknown", error=str(exc)[:500])
            return False
        token_id = token.get("id")
        if not isinstance(token_id, str) or not token_id:
            log.warning("writeback.token_unknown", error="GET /api-tokens/self returned no id")
            return False
        self.token_id = token_id
        self.own_actor_ids.add(token_id)
        log.info("writeback.token_known", token_id=token_id, name=token.get("name"))
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self.step()
            now = self.clock()
            timeout = IDLE_MAX
            next_due = self.outbox.next_due_at(after=now, kinds=WRITEBACK_KINDS)
            if next_due is not None:
                timeout = min(timeout, max(0.01, next_due - now))
            if self.token_id is None:
                timeout = min(timeout, self.policy.delay(self._identity_failures))
            stop = asyncio.create_task(stopping.wait())
            wake = asyncio.create_task(self._wake.wait())
            try:
                await asyncio.wait({stop, wake}, timeout=max(timeout, 0.01),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (stop, wake):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self._wake.clear()

    async def step(self) -> int:
        """Deliver what is due now; returns how many write-backs succeeded."""
        now = self.clock()
        due = self.outbox.due(BATCH, now=now, kinds=WRITEBACK_KINDS)
        if not due or not await self.identify():
            return 0
        written = 0
        by_status: dict[str, list[PendingEvent]] = defaultdict(list)
        for event in due:
            if event.kind == KIND_STATUS:
                by_status[event.bp_status].append(event)
        for status, events in by_status.items():
            for start in range(0, len(events), 25):
                written += await self._status(status, events[start : start + 25])
        for event in due:
            if event.kind == KIND_COMMENT:
                written += await self._comment(event)
        return written

    async def _status(self, status: str, events: Sequence[PendingEvent]) -> int:
        ids = [e.alert_id for e in events]
        try:
            await self.writes.update_alerts(list(dict.fromkeys(ids)), status)
        except BridgeError as exc:
            if not exc.retriable and not isinstance(exc, AuthError) and len(events) > 1:
                # One unknown alert fails the whole PATCH: find it by writing them one by one.
                return sum([await self._status(status, [e]) for e in events])
            self._failed(events, exc)
            return 0
        self._done(events, KIND_STATUS)
        log.info("writeback.status_written", status=status, alerts=len(ids))
        return len(events)

    async def _comment(self, event: PendingEvent) -> int:
        payload = orjson.loads(event.payload)
        body = str(payload["body"])
        try:
            if await self._already_commented(event.alert_id, body):
                self.outbox.mark_sent([event.id], now=self.clock())
                self.metrics.writebacks.labels(
                    kind=KIND_COMMENT, outcome="skipped_already_written"
                ).inc()
                log.info("writeback.comment_already_written", alert_id=event.alert_id)
                return 1
            await self.writes.add_comment(event.alert_id, body)
        except BridgeError as exc:
            self._failed([event], exc)
            return 0
        self._done([event], KIND_COMMENT)
        return 1

    async def _already_commented(self, alert_id: str, body: str) -> bool:
        """Whether this token already left this comment on the alert (written before a crash
        kept the bridge from recording it): comments are few, so one listing each is cheap."""
        for comment in await self.writes.list_comments(alert_id):
            author = comment.get("createdBy")
            if (
                comment.get("body") == body
                and isinstance(author, dict)
                and author.get("id") in self.own_actor_ids
            ):
                return True
        return False

    def _done(self, events: Sequence[PendingEvent], kind: str) -> None:
        self.outbox.mark_sent([e.id for e in events], now=self.clock())
        self.metrics.writebacks.labels(kind=kind, outcome="written").inc(len(events))
        self.health.panther_write_refused = None

    def _failed(self, events: Sequence[PendingEvent], exc: BridgeError) -> None:
        now = self.clock()
        kind = events[0].kind
        ids = [e.id for e in events]
        message = str(exc)[:2000]
        if isinstance(exc, AuthError):
            # Our permission, not the write-backs' fault: keep them, no attempt counted.
            self.health.panther_write_refused = message
            self.outbox.mark_retry(ids, next_attempt_at=now + self.policy.delay(3),
                                    error=message, now=now, count_attempt=False)
            self.metrics.writebacks.labels(kind=kind, outcome="refused").inc(len(ids))
            log.error("writeback.refused", status=getattr(exc, "status", 0), error=message)
            return
        if not exc.retriable:
            moved = self.outbox.dead_letter(ids, reason="rejected", detail=message, now=now)
            self.metrics.writebacks.labels(kind=kind, outcome="dead_lettered").inc(moved)
            self.metrics.events_dead_lettered.labels(reason="rejected").inc(moved)
            log.error("writeback.dead_lettered", alert_ids=[e.alert_id for e in events],
                      error=message)
            return
        expired = [e.id for e in events if self.policy.expired(e.first_failed_at, now)]
        if expired:
            self.outbox.dead_letter(expired, reason="expired", detail=message, now=now)
            self.metrics.writebacks.labels(kind=kind, outcome="dead_lettered").inc(len(expired))
            self.metrics.events_dead_lettered.labels(reason="expired").inc(len(expired))
        rest = [e for e in events if e.id not in set(expired)]
        if rest:
            attempt = min(e.attempts for e in rest)
            delay = self.policy.delay(attempt, getattr(exc, "retry_after", None))
            self.outbox.mark_retry([e.id for e in rest], next_attempt_at=now + delay,
                                    error=message, now=now)
            self.metrics.writebacks.labels(kind=kind, outcome="retried").inc(len(rest))
            self.metrics.retries.labels(target="panther", reason=retry_reason(exc)).inc()
            log.warning("writeback.retry", kind=kind, events=len(rest), error=message,
                        delay_seconds=round(delay, 3))
