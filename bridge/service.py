"""The bridge process: wires config, state, clients and loops, and runs them under one TaskGroup.

`Bridge.run()` is the long-running service; `Bridge.once()` is one full cycle for cron, backfills
and smoke tests. Every loop reads in one screen; the work lives in named methods of the parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import TypeVar

import aiohttp
import structlog
from aiohttp import web

from bridge.bigpanda.client import BigPandaClient
from bridge.bigpanda.incidents import BigPandaIncidents
from bridge.bigpanda.jobs import JobTracker
from bridge.budget import RequestBudget, SweepBudget
from bridge.catalog import Catalog
from bridge.config import Settings
from bridge.dispatch import Dispatcher
from bridge.errors import AuthError, BridgeError, StateError, retry_reason
from bridge.failures import FailureBurst
from bridge.filters import AlertFilter
from bridge.health import Health
from bridge.http import client_session
from bridge.leadership import Leadership
from bridge.logs import scrubber
from bridge.metrics import Metrics
from bridge.normalize import MappingRules
from bridge.panther.client import PantherClient
from bridge.panther.writes import PantherWrites
from bridge.periodic import every
from bridge.poller import Forwarding, Poller, PollResult
from bridge.retry import RetryPolicy
from bridge.routing import Router
from bridge.server import build_app
from bridge.state import namespace_of, open_lease, open_state, shown_state, state_url
from bridge.state.sqlite import Outbox
from bridge.status_sync import StatusSync, SyncResult
from bridge.sync_back import SyncBack, SyncBackResult
from bridge.writeback import WriteBack

log = structlog.get_logger("bridge.service")

_Result = TypeVar("_Result")

GAUGE_INTERVAL = 5.0
# How often the WAL is checkpointed from a worker thread (see Outbox.checkpoint).
CHECKPOINT_INTERVAL = 1.0
# Queued events, in batches, above which the late sweep waits for its interval (sweep_due).
SWEEP_BACKLOG_BATCHES = 10


class Bridge:
    """One bridge: `async with Bridge(settings) as bridge: await bridge.run(stopping)`."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.health = Health(poll_interval=settings.panther.poll_interval, clock=clock)
        self.policy = RetryPolicy.from_settings(settings.retry)
        self.server_url: str | None = None
        self._stack = contextlib.AsyncExitStack()
        self.outbox: Outbox  # or bridge.state.postgres.PostgresStore (same interface)
        self.leadership: Leadership
        self.panther: PantherClient
        self.bigpanda: BigPandaClient
        self.poller: Poller
        self.dispatcher: Dispatcher
        self.jobs: JobTracker
        self.catalog: Catalog | None = None
        self.status_sync: StatusSync
        # One failure record per Panther loop: counted, logged once per burst, backed off.
        self.poll_faults = FailureBurst("poll", self.metrics, self.health, self.policy)
        self.sweep_faults = FailureBurst("sweep", self.metrics, self.health, self.policy)
        self.sync_faults = FailureBurst("status_sync", self.metrics, self.health, self.policy)
        # Two-way sync (only with sync_back.enabled): the reader of BigPanda incidents, the
        # writer to Panther, and the Panther token ids whose changes are the bridge's own.
        self.sync_back: SyncBack | None = None
        self.writeback: WriteBack | None = None
        self.own_actor_ids: set[str] = set()
        self._sync_back_failures = 0

    async def __aenter__(self) -> Bridge:
        """Open the state, the sessions and the parts; whatever a later step fails on, what an
        earlier one took (the state lock, sessions) is released before the error propagates."""
        async with contextlib.AsyncExitStack() as stack:
            await self._open(stack)
            self._stack = stack.pop_all()
        return self

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        s = self.settings
        panther_token = s.panther.api_token.get_secret_value()
        bigpanda_token = s.bigpanda.api_token.get_secret_value()
        scrubber.register([panther_token, bigpanda_token])
        url = state_url(s.state)
        if url is not None:
            from urllib.parse import urlsplit

            scrubber.register([url, urlsplit(url).password])
        namespace = namespace_of(s)
        self.outbox = open_state(s.state, namespace=namespace)
        stack.callback(self.outbox.close)
        self.leadership = Leadership(
            open_lease(s.state, namespace=namespace), self.outbox, self.metrics, self.health,
            ttl=s.state.lease_ttl,
        )
        stack.callback(self.leadership.close)
        self.health.state_open = True
        stack.callback(setattr, self.health, "state_open", False)
        # One session per target (see bridge.http.client_session).
        panther_session = await stack.enter_async_context(client_session(
            s.panther.api_url, s.panther.ca_bundle, limit=max(8, s.panther.backfill_concurrency)
        ))
        bigpanda_session = await stack.enter_async_context(client_session(
            s.bigpanda.api_url, s.bigpanda.ca_bundle, limit=max(8, 2 * s.bigpanda.max_in_flight)
        ))
        self.panther = PantherClient(
            panther_session,
            api_url=s.panther.api_url,
            api_token=panther_token,
            timeout=s.panther.timeout,
            page_size=s.panther.page_size,
            metrics=self.metrics,
            # One budget per tenant: poll, sweep, status sync, catalog and backfill draw from it.
            budget=RequestBudget(s.panther.max_requests_per_second, s.panther.request_burst),
        )
        self.bigpanda = BigPandaClient(
            bigpanda_session,
            api_url=s.bigpanda.api_url,
            api_token=bigpanda_token,
            timeout=s.bigpanda.timeout,
            metrics=self.metrics,
        )
        if s.catalog.enabled:
            self.catalog = Catalog(self.panther, self.metrics, s.catalog)
            # Detection fetches still in flight must not outlive the session.
            stack.callback(self.catalog.close)
        filters = AlertFilter.from_settings(s.panther.filters)
        rules = MappingRules.from_config(s.mapping, console_url=s.panther.console_url)
        router = Router.from_config(
            s.routing, default_app_key=s.bigpanda.app_key, base_rules=rules
        )
        # How an alert is forwarded, decided alike when it is new and when its status changes.
        forwarding = Forwarding(
            router.app_key_for, rules, router, self.catalog, filters, s.panther.track_for
        )
        self.poller = Poller(
            self.panther,
            self.outbox,
            self.metrics,
            forwarding,
            initial_lookback=s.panther.initial_lookback,
            overlap=s.panther.overlap,
            clock=self.clock,
            backfill_concurrency=s.panther.backfill_concurrency,
            # Every store of new alerts (head poll, catch-up group, sweep) wakes the sender.
            on_recorded=lambda: self.dispatcher.wake(fresh=True),
            sweep_budget=SweepBudget(
                per_minute=s.panther.sweep_requests_per_minute, share=s.panther.sweep_share
            ),
            late_sweep_interval=s.panther.late_sweep_interval,
        )
        self.status_sync = StatusSync(
            self.panther, self.outbox, self.metrics, forwarding, clock=self.clock,
            own_actor_ids=self.own_actor_ids,
        )
        if s.sync_back.enabled:
            self._wire_sync_back(bigpanda_session)
        self.dispatcher = Dispatcher(
            self.bigpanda,
            self.outbox,
            self.metrics,
            self.health,
            batch_size=s.bigpanda.batch_size,
            max_in_flight=s.bigpanda.max_in_flight,
            policy=self.policy,
            job_timeout=s.bigpanda.job_timeout,
            shutdown_grace=None,  # the service bounds the whole shutdown (_bound_shutdown)
            clock=self.clock,
        )
        self.jobs = self.dispatcher.job_tracker(s.bigpanda.job_poll_interval)
        self.refresh_gauges()
        watermark = self.outbox.watermark()
        if watermark is not None:
            self.metrics.watermark.set(watermark)

    def _wire_sync_back(self, bigpanda_session: aiohttp.ClientSession) -> None:
        s = self.settings
        assert s.sync_back.api_key is not None and s.sync_back.environment_id  # validated
        api_key = s.sync_back.api_key.get_secret_value()
        scrubber.register([api_key])
        incidents = BigPandaIncidents(
            bigpanda_session,
            api_url=s.bigpanda.api_url,
            api_key=api_key,
            environment_id=s.sync_back.environment_id,
            timeout=s.bigpanda.timeout,
            rate=s.sync_back.rate_limit,
            metrics=self.metrics,
        )
        self.sync_back = SyncBack(
            incidents, self.outbox, self.metrics, s.sync_back, clock=self.clock
        )
        writes = PantherWrites(self.panther)
        self.writeback = WriteBack(
            writes, self.outbox, self.metrics, self.health, self.policy,
            own_actor_ids=self.own_actor_ids, clock=self.clock,
        )

    async def sync_back_cycle(self) -> SyncBackResult | None:
        """Read changed BigPanda incidents and record their write-backs (two-way sync)."""
        if self.sync_back is None:
            return None
        try:
            result = await self.sync_back.sync()
        except BridgeError as exc:
            self._sync_back_failures += 1
            reason = retry_reason(exc)
            self.metrics.retries.labels(target="bigpanda", reason=reason).inc()
            if isinstance(exc, AuthError):
                self.health.sync_back_refused = str(exc)[:500]
            if self._sync_back_failures == 1:
                log.warning("sync_back.failed", error=str(exc)[:500], reason=reason)
            return None
        if self._sync_back_failures:
            log.info("sync_back.recovered", failures=self._sync_back_failures)
        self._sync_back_failures = 0
        self.health.sync_back_refused = None
        if result.new_events and self.writeback is not None:
            self.writeback.wake()
        log.info("sync_back.completed", incidents=result.incidents,
                 activities=result.activities, new_writebacks=result.new_events,
                 requests=result.requests)
        return result

    async def _sync_back_loop(self, stopping: asyncio.Event) -> None:
        interval = self.settings.sync_back.interval

        def delay() -> float:
            if not self._sync_back_failures:
                return interval
            return interval + self.policy.delay(self._sync_back_failures - 1)

        async for _ in every(delay, stopping):
            await self._unless_stopping(self.sync_back_cycle(), stopping)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    # -- one Panther cycle -------------------------------------------------------------------------

    async def poll_cycle(self) -> PollResult | None:
        """Read new alerts into the outbox; on failure log, count, and leave the watermark alone."""
        started = self.clock()
        result = await self._intake_cycle(self.poll_faults, self.poller.poll_head)
        if result is None:
            return None
        self._state_recovered()
        self.poller.polled(result.pages)
        self.health.poll_succeeded()
        self.metrics.last_successful_poll.set(self.clock())
        log.info(
            "poll.completed", **result.log_fields(), seconds=round(self.clock() - started, 3)
        )
        return result

    def poll_delay(self) -> float:
        """The wait before the next poll: the interval, longer after repeated failures (full
        jitter, at least a 429's Retry-After)."""
        return self.poll_faults.delay(self.settings.panther.poll_interval)

    async def sweep_cycle(self) -> PollResult | None:
        """Re-read the overlap behind the watermarks for late-indexed alerts (its own cadence)."""
        result = await self._intake_cycle(self.sweep_faults, self.poller.sweep_overlap)
        if result is None:
            return None
        if result.new_events:  # the poller woke the dispatcher as it stored them
            log.info("sweep.found_late_alerts", new_events=result.new_events, pages=result.pages)
        return result

    async def sync_cycle(self) -> SyncResult | None:
        """Find status changes of tracked alerts and record them as events."""
        result = await self._intake_cycle(self.sync_faults, self.status_sync.sync)
        if result is None:
            return None
        self.poller.polled(result.pages + result.fetched)  # the sweep's share counts these too
        if result.new_events:
            self.dispatcher.wake(fresh=True)
        log.info(
            "status_sync.completed", tracked=result.tracked, pages=result.pages,
            fetched=result.fetched, changes=result.changes, expired=result.expired,
        )
        return result

    async def _intake_cycle(
        self, faults: FailureBurst, work: Callable[[], Awaitable[_Result]]
    ) -> _Result | None:
        """One run of a Panther loop's `work`, unless the state refuses writes; None when it
        failed: logged, counted and backed off by the loop's `faults` (named like the loop)."""
        if self._intake_paused():
            return None
        try:
            result = await work()
        except StateError as exc:
            self._state_failed(faults.name, exc)
            return None
        except BridgeError as exc:  # AuthError included: FailureBurst takes readiness down
            faults.failed(exc)
            return None
        faults.succeeded()
        return result

    # -- the state file refusing writes (disk full, ...) ----------------------------------------

    def _state_failed(self, loop: str, exc: StateError) -> None:
        """Intake could not store what it read: nothing moved (the page and its watermark are one
        transaction), so it pauses, reports not ready, and tries again each interval. Delivery
        of what is queued goes on."""
        self.metrics.state_errors.labels(reason=exc.reason).inc()
        message = str(exc)[:1000]
        first = self.health.state_problem is None
        self.health.state_problem = message
        if first:
            log.error("state.intake_paused", loop=loop, reason=exc.reason, error=message)
        else:
            log.debug("state.intake_paused", loop=loop, reason=exc.reason)

    def _state_recovered(self) -> None:
        if self.health.state_problem is not None:
            self.health.state_problem = None
            log.info("state.intake_resumed")

    def _intake_paused(self) -> bool:
        """While the state cannot be written, a loop asks nothing of Panther until one small
        write succeeds (space is back, ...): pages it could not store would be read for nothing."""
        if self.health.state_problem is None:
            return False
        try:
            self.outbox.set_meta("state_probe", repr(self.clock()))
        except StateError as exc:
            self.metrics.state_errors.labels(reason=exc.reason).inc()
            return True
        return False

    async def _panther_loop(
        self,
        cycle: Callable[[], Coroutine[object, object, object]],
        delay: Callable[[], float],
        stopping: asyncio.Event,
    ) -> None:
        """Run `cycle` every `delay()` seconds until stopping (the first run after one delay)."""
        async for _ in every(delay, stopping, first=False):
            await self._unless_stopping(cycle(), stopping)

    # -- the service ---------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event, *, serve: bool = True) -> None:
        """Poll, deliver, track jobs and serve metrics until `stopping` is set; then drain."""
        runner = await self._start_server() if serve else None
        log.info(
            "bridge.started",
            panther=self.settings.panther.api_url,
            bigpanda=self.settings.bigpanda.api_url,
            state=shown_state(self.settings.state),
            metrics=f"{self.server_url}/metrics" if self.server_url else None,
        )
        try:
            # Only the leader works; with SQLite that is always this process.
            await self.leadership.run(stopping, self._work)
        finally:
            counts: dict[str, int] = {}
            with contextlib.suppress(BridgeError):  # reported already, or a shared state away
                self.refresh_gauges()
                counts = self.outbox.counts()
            if runner is not None:
                await runner.cleanup()
            log.info("bridge.stopped", **counts)

    async def _work(self, stopping: asyncio.Event) -> None:
        """The leader's loops, until `stopping` (a stop, or the end of this replica's term)."""
        async with asyncio.TaskGroup() as tg:
            loops = [
                tg.create_task(self._poll_loop(stopping), name="poll"),
                tg.create_task(self._deliver(stopping), name="dispatch"),
                tg.create_task(self.jobs.run(stopping), name="jobs"),
                tg.create_task(self._housekeeping(stopping), name="housekeeping"),
                tg.create_task(self._checkpoints(stopping), name="checkpoint"),
                tg.create_task(self._sync_loop(stopping), name="status-sync"),
            ]
            if self.sync_back is not None and self.writeback is not None:
                loops.append(tg.create_task(self._sync_back_loop(stopping), name="sync-back"))
                loops.append(tg.create_task(self.writeback.run(stopping), name="writeback"))
            if self.catalog is not None:
                loops.append(tg.create_task(
                    self._unless_stopping(self.catalog.run(stopping), stopping),
                    name="catalog",
                ))
            tg.create_task(self._bound_shutdown(stopping, loops), name="shutdown-grace")

    async def _bound_shutdown(self, stopping: asyncio.Event, loops: list[asyncio.Task]) -> None:
        """Once stopping, give the loops `server.shutdown_grace` to finish, then cancel the rest.

        Cancelling is safe: SQLite writes are synchronous, so a cancelled batch leaves its events
        pending and they are resent byte-identical on the next start (BigPanda answers 204).
        """
        await stopping.wait()
        grace = self.settings.server.shutdown_grace
        _done, late = await asyncio.wait(loops, timeout=grace)
        if late:
            log.warning(
                "bridge.shutdown_grace_expired",
                grace_seconds=grace,
                cancelled=sorted(t.get_name() for t in late),
            )
            for task in late:
                task.cancel()

    async def _poll_loop(self, stopping: asyncio.Event) -> None:
        """Head poll, then the late sweep whenever it is due (at start, then by its budget):
        a late alert waits for the next poll, not for a sweep interval."""
        sweep_retry_at = 0.0
        async for _ in every(self.poll_delay, stopping):
            await self._unless_stopping(self.poll_cycle(), stopping)
            if (
                not stopping.is_set()
                and self.clock() >= sweep_retry_at
                and self.poller.sweep_due(busy=self._delivery_backlog())
            ):
                await self._unless_stopping(self.sweep_cycle(), stopping)
                if self.sweep_faults.failures:
                    sweep_retry_at = self.clock() + self.sweep_faults.delay(0.0)

    def _delivery_backlog(self) -> bool:
        """More events queued than a few rounds of batches: the sweep waits (see sweep_due)."""
        bp = self.settings.bigpanda
        return self.outbox.backlog()["pending"] > SWEEP_BACKLOG_BATCHES * bp.batch_size

    async def _sync_loop(self, stopping: asyncio.Event) -> None:
        interval = self.settings.panther.status_sync_interval
        await self._panther_loop(self.sync_cycle, lambda: self.sync_faults.delay(interval),
                                 stopping)

    @staticmethod
    async def _unless_stopping(
        work: Coroutine[object, object, object], stopping: asyncio.Event
    ) -> None:
        """Run `work`, cancelling it if stopping is set first: intake stops at once on SIGTERM.

        A poll cancelled mid-page loses nothing: a page and its watermark are one transaction.
        """
        task = asyncio.create_task(work)
        stopped = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()
                log.info("poll.cancelled", reason="stopping")
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver(self, stopping: asyncio.Event) -> None:
        """The dispatcher, with in-flight batches given `shutdown_grace` to finish on stop."""
        wake_on_stop = asyncio.create_task(self._wake_dispatcher_on(stopping))
        try:
            await self.dispatcher.run(stopping)
        finally:
            wake_on_stop.cancel()

    async def _wake_dispatcher_on(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        self.dispatcher.wake()

    async def _housekeeping(self, stopping: asyncio.Event) -> None:
        async for _ in every(GAUGE_INTERVAL, stopping):
            with contextlib.suppress(StateError):  # the gauges wait; the loops report it
                self.refresh_gauges()

    async def _checkpoints(self, stopping: asyncio.Event) -> None:
        async for _ in every(CHECKPOINT_INTERVAL, stopping, first=False):
            await asyncio.to_thread(self.outbox.checkpoint)

    def refresh_gauges(self) -> None:
        counts = self.outbox.backlog()
        self.metrics.outbox_events.set(counts["pending"] + counts["job"])
        self.metrics.dead_letter_events.set(counts["dead_letters"])
        self.metrics.jobs_in_flight.set(counts["jobs"])

    async def _start_server(self) -> web.AppRunner:
        runner = web.AppRunner(build_app(self.metrics, self.health), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.server.host, self.settings.server.port)
        await site.start()
        server = site._server  # aiohttp offers no public accessor for the port
        port = server.sockets[0].getsockname()[1] if server and server.sockets else 0
        host = self.settings.server.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self.server_url = f"http://{shown}:{port}"
        return runner

    # -- one full cycle --------------------------------------------------------------------------

    async def once(self, *, timeout: float = 120.0, progress: Progress | None = None) -> bool:
        """Poll, sweep and sync once, deliver, wait for jobs; True when the Panther side worked
        and nothing is pending."""
        if self.catalog is not None:
            await self.catalog.refresh()
        polled = await self.poll_cycle()
        swept = await self.sweep_cycle()
        synced = await self.sync_cycle()
        if self.sync_back is not None:
            await self.sync_back_cycle()
        drained = await self.drain(timeout=timeout, progress=progress)
        return None not in (polled, swept, synced) and drained

    async def backfill(
        self,
        since: float,
        until: float,
        *,
        timeout: float = 300.0,
        progress: Progress | None = None,
    ) -> bool:
        """Re-read [since, until) and deliver what was never recorded; the watermark stays put."""
        if self.catalog is not None:
            await self.catalog.refresh()
        try:
            result = await self.poller.backfill(since, until)
        except BridgeError as exc:  # a StateError included: its message says what to do
            log.error("backfill.failed", error=str(exc)[:500])
            return False
        log.info("backfill.read", **result.log_fields())
        return await self.drain(timeout=timeout, progress=progress)

    async def drain(self, *, timeout: float, progress: Progress | None = None) -> bool:
        """Deliver until nothing is pending and no job is open, or `timeout` passes.

        `progress(backlog, seconds_left)` is called every PROGRESS_EVERY seconds while events
        wait, so that a command waiting on an unreachable BigPanda says so instead of hanging.
        """
        deadline = self.clock() + timeout
        reported_at: float | None = None
        while True:
            await self.dispatcher.step()
            await self.dispatcher.wait_in_flight()
            await self.jobs.poll_all()
            if self.writeback is not None:
                await self.writeback.step()
            counts = self.outbox.backlog()
            if counts["pending"] == 0 and counts["jobs"] == 0:
                break
            now = self.clock()
            if now >= deadline:
                break
            if progress is not None and (
                reported_at is None or now - reported_at >= PROGRESS_EVERY
            ):
                reported_at = now
                progress(counts, deadline - now)
            next_due = self.outbox.next_due_at()
            wait = self.settings.bigpanda.job_poll_interval if counts["jobs"] else 1.0
            if next_due is not None and counts["pending"]:
                wait = min(wait, max(0.0, next_due - now), self.dispatcher.paused_for(now) or wait)
            await asyncio.sleep(min(max(wait, 0.01), max(0.0, deadline - now)))
        self.refresh_gauges()
        counts = self.outbox.counts()
        log.info("drain.completed", **counts)
        return counts["pending"] == 0 and counts["jobs"] == 0


PROGRESS_EVERY = 5.0  # seconds between two progress reports of a draining `once`/`backfill`
Progress = Callable[[Mapping[str, int], float], None]
"""Called with the outbox backlog (`pending`, `jobs`) and the seconds left before the timeout."""
