"""The leadership supervisor: the work runs only while this replica holds the lease."""

from __future__ import annotations

import asyncio

import pytest
from harness import wait_until

from bridge.health import Health
from bridge.leadership import Leadership
from bridge.metrics import Metrics
from bridge.state.lease import Lease
from bridge.state.postgres import FencedError, PostgresStore

TTL = 1.5


class Replica:
    """A store, a lease and a supervisor, with work that records its terms."""

    def __init__(self, url: str, namespace: str, name: str) -> None:
        self.store = PostgresStore.open(url, namespace, ttl=TTL)
        self.lease = Lease(url, namespace, ttl=TTL, holder=name)
        self.metrics = Metrics()
        self.health = Health(poll_interval=1.0)
        self.health.state_open = True
        self.leadership = Leadership(self.lease, self.store, self.metrics, self.health, ttl=TTL)
        self.stopping = asyncio.Event()
        self.terms: list[int] = []
        self.working = False
        self.task: asyncio.Task | None = None

    async def work(self, stopping: asyncio.Event) -> None:
        self.terms.append(self.leadership.term)
        self.working = True
        try:
            await stopping.wait()
        finally:
            self.working = False

    def start(self) -> Replica:
        self.task = asyncio.create_task(self.leadership.run(self.stopping, self.work))
        return self

    async def stop(self) -> None:
        self.stopping.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)
        self.leadership.close()
        self.store.close()


@pytest.fixture
async def pair(postgres_url: str, pg_namespace: str):
    a = Replica(postgres_url, pg_namespace, "a")
    b = Replica(postgres_url, pg_namespace, "b")
    yield a, b
    for r in (a, b):
        if not r.stopping.is_set():
            await r.stop()


def renewals(replica: Replica) -> float:
    value = replica.metrics.registry.get_sample_value("bridge_lease_renew_seconds_count")
    return value or 0.0


async def leader_and_standby(pair: tuple[Replica, Replica]) -> tuple[Replica, Replica]:
    """Start a, then b once a leads; return them when b stands by."""
    a, b = pair
    a.start()
    await wait_until(lambda: a.working, 10, what="a leads")
    b.start()
    await wait_until(lambda: b.health.role == "standby", 10, what="b stands by")
    return a, b


async def test_one_leads_the_other_stands_by_ready(pair) -> None:
    a, b = await leader_and_standby(pair)
    renewed = renewals(a)
    # Several renewals later, still the same leader.
    await wait_until(lambda: renewals(a) >= renewed + 3, 10, what="three renewals by a")
    assert a.working and not b.working and b.terms == []
    assert a.metrics.leader._value.get() == 1 and b.metrics.leader._value.get() == 0
    ready, details = b.health.readiness()
    assert ready and details["role"] == "standby"
    assert a.health.readiness()[1]["role"] == "leader"
    assert a.metrics.lease_renew_seconds._sum.get() > 0


async def test_graceful_stop_hands_over_at_a_higher_term(pair) -> None:
    a, b = await leader_and_standby(pair)
    await a.stop()
    assert a.lease.info().holder is None  # released, not left to expire
    await wait_until(lambda: b.working, 10, what="b takes over")
    assert b.terms == [a.terms[0] + 1]
    assert b.metrics.leader_changes._value.get() == 1


async def test_a_leader_whose_lease_is_taken_stops_its_work_and_is_fenced(pair) -> None:
    a, b = pair
    a.start()
    await wait_until(lambda: a.working, 10, what="a leads")
    (term,) = a.terms
    a.store.record([], watermark=5.0)  # a leader writes
    b.lease.expire_now()  # as if a had been paused past its lease
    assert b.lease.try_acquire() == term + 1
    await wait_until(lambda: not a.working, 10, what="a stops")
    assert a.health.role == "standby" and a.metrics.leader._value.get() == 0
    with pytest.raises(FencedError):
        a.store.record([], watermark=10.0)
    assert a.store.due(10, now=0) == []
    assert b.store.watermark() == 5.0
    # a keeps trying: when b's lease is released, a leads again at the next term.
    b.lease.release(term + 1)
    await wait_until(lambda: a.working, 10, what="a leads again")
    assert a.terms == [term, term + 2]


async def test_sqlite_is_always_leader_at_term_zero(tmp_path) -> None:
    from bridge.state.sqlite import Outbox

    box = Outbox.open(tmp_path / "b.db")
    metrics, health = Metrics(), Health(poll_interval=1.0)
    leadership = Leadership(None, box, metrics, health, ttl=5.0)
    stopping = asyncio.Event()
    seen: list[int | None] = []

    async def work(stop: asyncio.Event) -> None:
        seen.append(leadership.term)
        stopping.set()

    await asyncio.wait_for(leadership.run(stopping, work), 5)
    box.close()
    assert seen == [0] and leadership.is_leader()
    assert metrics.leader._value.get() == 1 and health.role == "leader"


async def test_a_batch_answered_after_the_lease_was_lost_is_not_recorded(
    postgres_url: str, pg_namespace: str, mock, metrics
) -> None:
    """The sender's batch comes back after this replica lost its term: nothing is written, the
    events stay queued for the new leader, and the sender stops without a crash."""
    import aiohttp

    from bridge.bigpanda.client import BigPandaClient
    from bridge.dispatch import Dispatcher
    from bridge.retry import RetryPolicy
    from bridge.state.records import NewEvent

    store = PostgresStore.open(postgres_url, pg_namespace)
    lease = Lease(postgres_url, pg_namespace, ttl=30.0, holder="old")
    new = Lease(postgres_url, pg_namespace, ttl=30.0, holder="new")
    try:
        term = lease.try_acquire()
        store.fence("old", term, lambda: float("inf"))
        store.record([NewEvent("a:alert", "a", "alert", "critical", "k", b'{"a":1}', 1.0)])

        def take_over(url, **kwargs):  # BigPanda answers after another replica took the lease
            lease.expire_now()
            assert new.try_acquire() == term + 1

        mock.post("http://bp.test/data/v2/alerts", status=201, payload={}, callback=take_over)
        async with aiohttp.ClientSession() as session:
            client = BigPandaClient(session, api_url="http://bp.test", api_token="t" * 20,
                                    timeout=5, metrics=metrics)
            dispatcher = Dispatcher(client, store, metrics, Health(poll_interval=1.0),
                                    batch_size=10, max_in_flight=1,
                                    policy=RetryPolicy(initial_backoff=1, max_backoff=1,
                                                       give_up_after=3600, max_retry_after=5),
                                    job_timeout=60, shutdown_grace=1)
            from structlog.testing import capture_logs

            with capture_logs() as logs:
                assert await dispatcher.step() == 1
                await dispatcher.wait_in_flight()
        events = [entry["event"] for entry in logs]
        assert "batch.fenced" in events and "batch.crashed" not in events
        store.unfence()
        assert store.counts()["pending"] == 1 and store.counts()["sent"] == 0
        (still,) = store.due(10, now=0)
        assert still.attempts == 0  # not even a retry was recorded by the old leader
    finally:
        store.close()
        lease.close()
        new.close()
