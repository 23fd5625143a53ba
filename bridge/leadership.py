"""One active replica: the bridge's work runs only while this replica holds the lease.

With the SQLite state the bridge is alone by construction (the state file is locked) and always
leads, at term 0, without a lease. With PostgreSQL every replica runs `Leadership.run`: a standby
tries to take the lease every third of `state.lease_ttl`; the leader renews it as often, runs the
work (poll, sweep, status sync, delivery, jobs) and fences the store's writes with its term.

A leader that cannot renew stops its work *before* its lease can expire elsewhere: a renew that
started at t (monotonic) extends the lease to at least t + ttl on the database's clock, so the work
is cancelled at t + ttl - margin unless a later renew succeeded; the store refuses writes past that
deadline and hands the sender nothing. The lease calls run in a worker thread on a connection of
their own, so a blocked database cannot stop the local deadline from being kept. On a graceful stop
the work finishes (within `server.shutdown_grace`) and the lease is released at once, so a standby
takes over on its next try instead of after the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import structlog

from bridge.errors import BridgeError
from bridge.health import Health
from bridge.metrics import Metrics
from bridge.periodic import pause

log = structlog.get_logger("bridge.leadership")

Work = Callable[[asyncio.Event], Awaitable[None]]


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a daemon thread of its own: unlike `asyncio.to_thread`, a call stuck on a
    dead connection neither holds a pool worker nor keeps the process from exiting."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def target() -> None:
        try:
            result = (True, fn(*args))
        except BaseException as exc:
            result = (False, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, *result)

    threading.Thread(target=target, daemon=True, name="lease").start()
    return await future


def stop_margin(ttl: float) -> float:
    """How long before the lease could expire the work is stopped (room to cancel it)."""
    return max(0.2 * ttl, 0.5)


@dataclass(eq=False)
class Leadership:
    """Run the work only while leader. `lease` None: always leader (SQLite, term 0)."""

    lease: Any  # bridge.state.lease.Lease | None
    store: Any
    metrics: Metrics
    health: Health
    _: KW_ONLY
    ttl: float
    term: int | None = field(default=None, init=False)
    # Monotonic: the work stops here unless the lease is renewed.
    _deadline: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.interval = self.ttl / 3
        self.margin = stop_margin(self.ttl)

    @property
    def deadline(self) -> float:
        return self._deadline

    def is_leader(self) -> bool:
        return self.term is not None and (self.lease is None or time.monotonic() < self._deadline)

    def close(self) -> None:
        if self.lease is not None:
            self.lease.close()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event, work: Work) -> None:
        if self.lease is None:
            self.term = 0
            self._became("leader", 0)
            await work(stopping)
            return
        self._set_role("standby")
        self.store.stand_by(self.lease.holder)
        try:
            while not stopping.is_set():
                term = await self._acquire(stopping)
                if term is None:
                    return
                await self._lead(term, stopping, work)
        finally:
            self._set_role("standby")
            self.metrics.leader.set(0)

    async def _acquire(self, stopping: asyncio.Event) -> int | None:
        """Try for the lease every interval until granted (its term) or stopping (None)."""
        while not stopping.is_set():
            started = time.monotonic()
            term = None
            try:
                term = await asyncio.wait_for(
                    in_thread(self.lease.try_acquire), self.ttl - self.margin
                )
                self.health.lease_error = None
            except (BridgeError, TimeoutError) as exc:
                if isinstance(exc, TimeoutError):
                    self.lease.drop_connection()
                self._lease_failed("leader.acquire_failed", exc)
            if term is not None:
                self._deadline = started + self.ttl - self.margin
                return term
            await pause(stopping, self.interval)
        return None

    async def _lead(self, term: int, stopping: asyncio.Event, work: Work) -> None:
        self.term = term
        self.store.fence(self.lease.holder, term, lambda: self._deadline)
        self._became("leader", term)
        self.metrics.leader_changes.inc()
        term_stopping = asyncio.Event()
        work_task = asyncio.create_task(work(term_stopping), name=f"leader-term-{term}")
        renew_task = asyncio.create_task(self._renew_loop(term), name="lease-renew")
        stop_task = asyncio.create_task(stopping.wait(), name="leader-stopping")
        try:
            await asyncio.wait(
                {work_task, renew_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if renew_task.done():
                # Lost (or about to lose) the lease: stop now, before it can expire elsewhere.
                work_task.cancel()
                with contextlib.suppress(BaseException):
                    await work_task
                log.warning("leader.lost", term=term, holder=self.lease.holder,
                            reason=renew_task.result())
                return
            if stop_task.done():
                # Graceful: the work drains (bounded by its own grace) while the lease is kept.
                term_stopping.set()
                with contextlib.suppress(Exception):
                    await work_task
            elif work_task.exception() is not None:
                exc = work_task.exception()
                log.error("leader.work_failed", term=term, error=str(exc)[:500],
                          error_type=type(exc).__name__)
            renew_task.cancel()
            with contextlib.suppress(BaseException):
                await renew_task
            await self._release(term)
            if not stopping.is_set():
                # The work failed (the database went away, ...): give another replica the first
                # chance, then try again.
                await pause(stopping, self.ttl)
        finally:
            for task in (work_task, renew_task, stop_task):
                task.cancel()
            self.store.stand_by(self.lease.holder)
            self.term = None
            self._set_role("standby")
            self.metrics.leader.set(0)

    async def _renew_loop(self, term: int) -> str:
        """Renew every interval; return why leadership ended (the caller stops the work)."""
        while True:
            wait = self.interval - (time.monotonic() - (self._deadline - self.ttl + self.margin))
            await asyncio.sleep(max(0.0, wait))
            started = time.monotonic()
            left = self._deadline - started
            if left <= 0:
                return "renew deadline passed"
            try:
                ok = await asyncio.wait_for(in_thread(self.lease.renew, term), left)
            except TimeoutError:
                self.lease.drop_connection()
                return f"no lease renewal within {self.ttl - self.margin:.1f}s"
            except BridgeError as exc:
                self._lease_failed("leader.renew_failed", exc)
                # Try again soon: the deadline, not one failure, ends leadership.
                await asyncio.sleep(min(0.2 * self.interval, max(0.0, left - 0.05)))
                continue
            self.metrics.lease_renew_seconds.observe(time.monotonic() - started)
            if not ok:
                return "the lease is no longer ours (expired or taken)"
            self._deadline = started + self.ttl - self.margin
            self.health.lease_error = None

    async def _release(self, term: int) -> None:
        try:
            released = await asyncio.wait_for(
                in_thread(self.lease.release, term), max(self.interval, 1.0)
            )
        except (BridgeError, TimeoutError) as exc:
            log.warning("leader.release_failed", term=term, error=str(exc)[:300],
                        hint="the lease expires by itself within state.lease_ttl")
            return
        log.info("leader.released", term=term, holder=self.lease.holder, released=released)

    # -- reporting -----------------------------------------------------------------------------

    def _became(self, role: str, term: int) -> None:
        self._set_role(role)
        self.metrics.leader.set(1)
        holder = self.lease.holder if self.lease is not None else None
        log.info("leader.acquired", term=term, holder=holder)

    def _set_role(self, role: str) -> None:
        self.health.role = role
        if role == "standby":
            # Intake paused by a state error is the leader's concern: a standby writes nothing,
            # and whoever leads next reports its own.
            self.health.state_problem = None

    def _lease_failed(self, event: str, exc: BaseException) -> None:
        text = str(exc)[:300] or type(exc).__name__
        self.health.lease_error = text
        log.warning(event, error=text, term=self.term)
