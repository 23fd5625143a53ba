"""The dispatcher's rig: a fresh outbox, a real BigPanda client that counts what it has on the
wire, and the BigPanda simulator behind it. Used by the dispatcher's and the job tracker's tests
(through the `make_setup` fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from harness import BIGPANDA_TOKEN, RecordingOutbox, sample_event, wait_until

from bridge.bigpanda.client import Accepted, BigPandaClient
from bridge.dispatch import Dispatcher
from bridge.health import Health
from bridge.metrics import Metrics
from bridge.retry import RetryPolicy
from bridge.sim import serve_app
from bridge.sim.bigpanda import ALERTS_PATH, BigPandaSimulator, RequestRecord


@dataclass(frozen=True)
class Post:
    """One POST as the client saw it: how many were on the wire when it left (itself included)."""

    body: bytes
    on_the_wire: int
    ok: bool


class CountingClient(BigPandaClient):
    """A real client that also counts how many POSTs it has on the wire at once, and records
    each POST (in the order their answers came)."""

    in_flight = 0
    most_in_flight = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[Post] = []

    async def post_alerts(self, body: bytes) -> Accepted:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        on_the_wire, ok = self.in_flight, False
        try:
            accepted = await super().post_alerts(body)
            ok = True
            return accepted
        finally:
            self.in_flight -= 1
            self.calls.append(Post(body, on_the_wire, ok))


@dataclass
class Setup:
    sim: BigPandaSimulator
    outbox: RecordingOutbox
    client: CountingClient
    health: Health
    dispatcher: Dispatcher
    metrics: Metrics
    policy: RetryPolicy

    def add(self, n: int, start: int = 0, **kwargs: Any) -> list[int]:
        fresh = self.outbox.record([sample_event(i, **kwargs) for i in range(start, start + n)])
        self.dispatcher.wake(fresh=True)
        return [int(e.alert_id, 16) for e in fresh]

    def posts(self) -> list[RequestRecord]:
        return [r for r in self.sim.requests if r.path == ALERTS_PATH]

    def delivered(self) -> int:
        return len(self.sim.accepted)

    async def run_until_sent(
        self, total: int, *, timeout: float = 5, what: str = "delivery"
    ) -> None:
        """Run the dispatcher until `total` events are sent, then stop it."""
        async with self.running():
            await wait_until(all_sent(self, total), timeout, what=what)

    async def stop_mid_request(self, timeout: float) -> None:
        """Run the dispatcher until a request is on the wire, then stop it as SIGTERM would."""
        stopping = asyncio.Event()
        task = asyncio.create_task(self.dispatcher.run(stopping))
        await wait_until(lambda: bool(self.posts()), 2, what="a request in flight")
        stopping.set()
        self.dispatcher.wake()
        await asyncio.wait_for(task, timeout)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Event]:
        stopping = asyncio.Event()
        task = asyncio.create_task(self.dispatcher.run(stopping))
        try:
            yield stopping
        finally:
            stopping.set()
            self.dispatcher.wake()
            await asyncio.wait_for(task, 5)


def all_sent(setup: Setup, n: int) -> Callable[[], bool]:
    return lambda: setup.outbox.counts()["sent"] == n


def setup_maker(tmp_path: Path) -> Callable[..., contextlib.AbstractAsyncContextManager[Setup]]:
    """`make_setup(batch_size=..., ...)`: a dispatcher over a fresh outbox and a BigPanda
    simulator, for as long as the `async with` lasts."""

    @contextlib.asynccontextmanager
    async def make(
        *, batch_size: int = 10, max_in_flight: int = 2, timeout: float = 2.0,
        latency: float = 0.0, give_up_after: float = 3600.0, shutdown_grace: float = 5.0,
    ) -> AsyncIterator[Setup]:
        sim = BigPandaSimulator(token=BIGPANDA_TOKEN, latency=latency)
        metrics = Metrics()
        health = Health(poll_interval=1.0)
        outbox = RecordingOutbox.open(tmp_path / "state.db")
        policy = RetryPolicy.from_settings(
            initial_backoff=0.05, max_backoff=0.2, give_up_after=give_up_after,
            max_retry_after=5, rng=random.Random(7),
        )
        try:
            async with serve_app(sim.app) as url, aiohttp.ClientSession() as session:
                client = CountingClient(
                    session, api_url=url, api_token=BIGPANDA_TOKEN, timeout=timeout,
                    metrics=metrics,
                )
                dispatcher = Dispatcher(
                    client, outbox, metrics, health, batch_size=batch_size,
                    max_in_flight=max_in_flight, policy=policy, job_timeout=5.0, linger=0.0,
                    shutdown_grace=shutdown_grace,
                )
                yield Setup(sim, outbox, client, health, dispatcher, metrics, policy)
        finally:
            outbox.close()

    return make
