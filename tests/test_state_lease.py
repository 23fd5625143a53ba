"""The PostgreSQL lease and the fencing of state writes by its term (a real server)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from bridge.state.lease import Lease
from bridge.state.postgres import FencedError, PostgresStore
from bridge.state.records import NewEvent


def event(alert_id: str) -> NewEvent:
    return NewEvent(f"{alert_id}:alert", alert_id, "alert", "critical", "k", b"{}", 1.0)


@pytest.fixture
def stores(postgres_url: str, pg_namespace: str):
    """Two replicas' stores and leases on one namespace."""
    a = PostgresStore.open(postgres_url, pg_namespace)
    b = PostgresStore.open(postgres_url, pg_namespace)
    la = Lease(postgres_url, pg_namespace, ttl=2.0, holder="replica-a")
    lb = Lease(postgres_url, pg_namespace, ttl=2.0, holder="replica-b")
    yield a, b, la, lb
    for x in (a, b, la, lb):
        x.close()


def far() -> float:
    return time.monotonic() + 3600


class TestLease:
    def test_one_holder_at_a_time_and_term_grows_on_every_grant(self, stores) -> None:
        _, _, la, lb = stores
        first = la.try_acquire()
        assert first is not None
        assert lb.try_acquire() is None
        assert la.renew(first)
        assert la.release(first)
        second = lb.try_acquire()
        assert second == first + 1
        assert not la.renew(first)  # ours no more
        assert lb.info().holder == "replica-b" and lb.info().term == second

    def test_expiry_by_the_database_clock_frees_the_lease(self, stores) -> None:
        _, _, la, lb = stores
        term = la.try_acquire()
        assert term is not None and lb.try_acquire() is None
        deadline = time.monotonic() + 30
        taken = None
        while taken is None and time.monotonic() < deadline:
            time.sleep(0.2)
            taken = lb.try_acquire()
        assert taken == term + 1
        assert not la.renew(term)  # an expired lease cannot be renewed back
        info = lb.info()
        assert info.valid and info.remaining > 0

    def test_namespaces_have_leases_of_their_own(self, postgres_url: str, pg_namespace) -> None:
        one = Lease(postgres_url, pg_namespace, ttl=5.0)
        other_ns = pg_namespace + "_b"
        PostgresStore.open(postgres_url, pg_namespace).close()
        PostgresStore.open(postgres_url, other_ns).close()
        two = Lease(postgres_url, other_ns, ttl=5.0)
        try:
            assert one.try_acquire() is not None
            assert two.try_acquire() is not None
        finally:
            one.close()
            two.close()


class TestFencing:
    def test_writes_at_a_stale_term_are_refused_and_change_nothing(self, stores) -> None:
        a, b, la, lb = stores
        old = la.try_acquire()
        a.fence("replica-a", old, far)
        a.record([event("x")], watermark=10.0)
        la.expire_now()
        new = lb.try_acquire()
        assert new == old + 1
        b.fence("replica-b", new, far)
        (due,) = a.due(10, now=0)  # reads still answer
        with pytest.raises(FencedError, match=f"term {old} is no longer ours"):
            a.record([event("y")], watermark=20.0)
        with pytest.raises(FencedError):
            a.mark_sent([due.id])
        with pytest.raises(FencedError):
            a.set_meta("sweep:ALERT", "99")
        job_b = b.add_job("http://bp/jobs/1", [due.id], deadline=100.0)
        with pytest.raises(FencedError):
            a.finish_job(job_b, done=True)
        assert b.watermark() == 10.0 and b.known(["y:alert"]) == set()
        assert b.counts()["sent"] == 0 and b.counts()["job"] == 1
        b.finish_job(job_b, done=True)
        assert b.counts()["sent"] == 1

    def test_past_the_local_deadline_nothing_is_written_or_handed_out(self, stores) -> None:
        a, _, la, _ = stores
        term = la.try_acquire()
        a.fence("replica-a", term, far)
        a.record([event("x")])
        a.fence("replica-a", term, lambda: time.monotonic() - 1)  # still ours in the database
        assert a.due(10, now=0) == []
        with pytest.raises(FencedError, match="local deadline"):
            a.record([event("y")], watermark=5.0)
        a.unfence()
        assert a.watermark() is None and len(a.due(10, now=0)) == 1

    def test_a_grant_waits_for_a_fenced_write_in_progress(self, stores, postgres_url) -> None:
        a, _, la, lb = stores
        term = la.try_acquire()
        la.expire_now()
        # A write of the old leader holds the lease row's share lock: the grant queues behind
        # it, so the write commits before the new term exists, never after.
        conn = psycopg.connect(postgres_url, autocommit=True)
        order: list[str] = []
        try:
            with conn.transaction():
                conn.execute(
                    f"SELECT 1 FROM {a.schema}.lease WHERE term = %s FOR SHARE", (term,)
                )
                grant = threading.Thread(target=lambda: order.append(f"grant {lb.try_acquire()}"))
                grant.start()
                time.sleep(0.3)
                order.append("write committed")
            grant.join(10)
        finally:
            conn.close()
        assert order == ["write committed", f"grant {term + 1}"]

    def test_unfenced_store_writes_freely(self, stores) -> None:
        a, _, _, _ = stores  # operators' commands (dlq replay, purge) and single replicas
        a.record([event("x")], watermark=1.0)
        assert a.watermark() == 1.0


class TestSchema:
    def test_replicas_starting_together_migrate_once(self, postgres_url, pg_namespace) -> None:
        errors: list[BaseException] = []

        def start() -> None:
            try:
                PostgresStore.open(postgres_url, pg_namespace).close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        with psycopg.connect(postgres_url) as conn:
            versions = conn.execute(
                f"SELECT version FROM bridge_{pg_namespace}.schema_version"
            ).fetchall()
        assert versions == [(1,)]

    def test_tenants_never_see_each_other(self, postgres_url, pg_namespace) -> None:
        one = PostgresStore.open(postgres_url, pg_namespace)
        two = PostgresStore.open(postgres_url, pg_namespace + "_t2")
        try:
            one.record([event("a")], watermark=5.0)
            assert two.known(["a:alert"]) == set() and two.watermark() is None
            assert two.due(10, now=0) == []
        finally:
            one.close()
            two.close()

    def test_bad_namespace_and_unreachable_server_are_clear_errors(self, pg_namespace) -> None:
        from bridge.errors import StateError

        with pytest.raises(StateError, match=r"state\.namespace"):
            PostgresStore.open("postgresql://u@127.0.0.1:1/x", "Bad-Name")
        with pytest.raises(StateError, match=r"cannot connect") as info:
            PostgresStore.open("postgresql://u:hunter22@127.0.0.1:1/x", pg_namespace)
        assert "hunter22" not in str(info.value) and "u:***@127.0.0.1:1" in str(info.value)
