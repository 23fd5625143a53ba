"""The SQLite state: watermark, dedup, delivery states, jobs, dead letters, locking."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import RecordingOutbox, sample_event
from harness import keyed_event as event

from bridge.errors import StateError
from bridge.state.records import NewEvent, Rejected, TrackedAlert
from bridge.state.sqlite import Outbox


@pytest.fixture(params=["sqlite", "postgresql"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path):
    """Each test below runs against both backends of the state."""
    if request.param == "sqlite":
        box = Outbox.open(tmp_path / "state" / "bridge.db")
    else:
        from bridge.state.postgres import PostgresStore

        box = PostgresStore.open(
            request.getfixturevalue("postgres_url"), request.getfixturevalue("pg_namespace")
        )
    yield box
    box.close()


@pytest.fixture
def sqlite_outbox(tmp_path: Path) -> Iterator[Outbox]:
    """The SQLite backend alone, for what only its tables can show."""
    with contextlib.closing(Outbox.open(tmp_path / "s.db")) as box:
        yield box


def _write_errors(box) -> tuple[type[BaseException], ...]:
    """What a failed write raises on this backend (the driver's own error type)."""
    if isinstance(box, Outbox):
        return (sqlite3.Error,)
    import psycopg

    return (psycopg.Error,)


class TestIntake:
    """Events and the watermark are recorded together, once."""

    def test_record_returns_only_new_events(self, outbox: Outbox) -> None:
        assert len(outbox.record([event("a"), event("b")], watermark=10.0)) == 2
        fresh = outbox.record([event("b"), event("c")], watermark=11.0)
        assert [e.alert_id for e in fresh] == ["c"]
        assert outbox.counts()["pending"] == 3

    def test_repeats_within_a_batch_and_known_keys_leave_the_new_ones_in_order(
        self, outbox: Outbox
    ) -> None:
        outbox.record([event("b")])
        batch = [event("a", payload=b"1"), event("b"), event("a", payload=b"2"), event("c")]
        fresh = outbox.record(batch)
        assert [(e.alert_id, e.payload) for e in fresh] == [("a", b"1"), ("c", batch[3].payload)]
        due = outbox.due(10, now=0)
        assert [(e.alert_id, e.payload) for e in due] == [
            ("b", event("b").payload), ("a", b"1"), ("c", batch[3].payload),
        ]

    def test_watermark_never_moves_back(self, outbox: Outbox) -> None:
        outbox.record([], watermark=100.5)
        outbox.record([], watermark=50.0)
        assert outbox.watermark() == 100.5

    def test_failed_transaction_keeps_neither_events_nor_watermark(self, outbox: Outbox) -> None:
        outbox.record([event("a")], watermark=10.0)
        good = event("x")
        unbindable = NewEvent("y:alert", "y", "alert", "ok", "k", b"{}", object())  # type: ignore[arg-type]
        with pytest.raises(_write_errors(outbox)):
            outbox.record([good, unbindable], watermark=99.0)
        assert outbox.watermark() == 10.0
        assert outbox.known(["x:alert"]) == set()

    def test_rejected_alerts_go_to_dead_letters_once(self, outbox: Outbox) -> None:
        rej = Rejected("bad:alert", "bad", "alert", "malformed_alert", "type: missing", b"{}", 5.0)
        outbox.record([], rejected=[rej])
        outbox.record([], rejected=[rej])
        letters = outbox.dead_letters()
        assert len(letters) == 1 and letters[0].reason == "malformed_alert"
        assert letters[0].original == b"{}"

    def test_state_survives_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "bridge.db"
        box = Outbox.open(path)
        box.record([event("a")], watermark=42.0)
        box.close()
        box = Outbox.open(path)
        try:
            assert box.watermark() == 42.0
            assert box.known(["a:alert", "b:alert"]) == {"a:alert"}
        finally:
            box.close()

    def test_tracked_alerts(self, outbox: Outbox) -> None:
        outbox.record([event("a")], track=[TrackedAlert("a", 100.0, "OPEN", 0, b"{}")])
        assert [t.alert_id for t in outbox.tracked()] == ["a"]
        assert outbox.expire_tracked(older_than=200.0) == 1
        assert outbox.tracked_count() == 0


class TestDelivery:
    """Due events, retries, sends and dead letters move events between states."""

    def test_due_excludes_in_flight_and_future(self, outbox: Outbox) -> None:
        outbox.record([event("a"), event("b"), event("c")])
        ids = [e.id for e in outbox.due(10, now=0)]
        assert len(ids) == 3
        outbox.mark_retry([ids[0]], next_attempt_at=500.0, error="500")
        due = outbox.due(10, now=100.0, exclude=[ids[1]])
        assert [e.id for e in due] == [ids[2]]
        assert outbox.next_due_at() == 0.0

    def test_events_of_one_alert_leave_in_order(self, outbox: Outbox) -> None:
        first = event("a")
        change = NewEvent("a:status_change:1:ok", "a", "status_change", "ok", "k", b"{}", 2.0)
        outbox.record([first, change, event("b")])
        due = outbox.due(10, now=0)
        assert [e.kind for e in due] == ["alert", "alert"]  # the change waits for its alert
        alert_a = next(e for e in due if e.alert_id == "a")
        outbox.mark_retry([alert_a.id], next_attempt_at=100.0, error="500")
        assert [e.alert_id for e in outbox.due(10, now=0)] == ["b"]  # still waits while retrying
        outbox.mark_sent([alert_a.id])
        assert {(e.alert_id, e.kind) for e in outbox.due(10, now=0)} == {
            ("a", "status_change"),
            ("b", "alert"),
        }

    def test_retry_keeps_payload_and_counts_attempts(self, outbox: Outbox) -> None:
        outbox.record([event("a")])
        (pending,) = outbox.due(10, now=0)
        outbox.mark_retry([pending.id], next_attempt_at=0, error="boom", now=7.0)
        outbox.mark_retry([pending.id], next_attempt_at=0, error="boom", now=9.0)
        (again,) = outbox.due(10, now=0)
        assert again.payload == pending.payload
        assert again.attempts == 2 and again.first_failed_at == 7.0

    def test_sent_events_are_not_due_and_stay_deduplicated(self, outbox: Outbox) -> None:
        outbox.record([event("a")])
        (pending,) = outbox.due(10, now=0)
        outbox.mark_sent([pending.id])
        assert outbox.due(10, now=0) == []
        assert outbox.record([event("a")]) == []
        assert outbox.counts()["sent"] == 1 and outbox.backlog()["pending"] == 0

    def test_dead_letter_and_replay_unchanged(self, outbox: Outbox) -> None:
        outbox.record([event("a")])
        (pending,) = outbox.due(10, now=0)
        assert outbox.dead_letter([pending.id], reason="rejected", detail="400: bad") == 1
        assert outbox.due(10, now=0) == []
        (letter,) = outbox.dead_letters()
        assert letter.payload == pending.payload and letter.detail == "400: bad"
        replayed, problems = outbox.replay_dead_letters([letter.id])
        assert replayed == [letter.id] and problems == []
        (back,) = outbox.due(10, now=0)
        assert back.payload == pending.payload and back.attempts == 0

    def test_replay_of_payloadless_letter_is_refused(self, outbox: Outbox) -> None:
        rej = Rejected("bad:alert", "bad", "alert", "malformed_alert", "x", b"{}", 5.0)
        outbox.record([], rejected=[rej])
        replayed, problems = outbox.replay_dead_letters(None)
        assert replayed == [] and "no payload" in problems[0]
        assert outbox.replay_dead_letters([999])[1] == ["dead letter 999: no such dead letter"]

    def test_purge(self, outbox: Outbox) -> None:
        outbox.record([event("a"), event("b")])
        ids = [e.id for e in outbox.due(10, now=0)]
        outbox.dead_letter(ids[:1], reason="rejected", detail="", now=100.0)
        outbox.dead_letter(ids[1:], reason="rejected", detail="", now=200.0)
        assert outbox.purge_dead_letters(older_than=150.0) == 1
        assert outbox.purge_dead_letters() == 1


class TestOneBatchAtATime:
    """The outbox reads exactly one batch at a time and keeps dedup keys after delivery."""

    def test_due_limits_excludes_and_filters_in_sqlite(self, tmp_path: Path) -> None:
        with contextlib.closing(RecordingOutbox.open(tmp_path / "s.db")) as outbox:
            outbox.record([sample_event(i, app_key="a" if i % 2 else "b") for i in range(50)])
            first = outbox.due(10, now=0, app_key="a")
            assert len(first) == 10 and {e.app_key for e in first} == {"a"}
            second = outbox.due(10, now=0, app_key="a", exclude=[e.id for e in first])
            assert len(second) == 10 and not {e.id for e in first} & {e.id for e in second}
            assert outbox.most_loaded == 10

    def test_delivery_drops_payload_but_not_dedup_key(self, sqlite_outbox: Outbox) -> None:
        sqlite_outbox.record([sample_event(1)])
        (pending,) = sqlite_outbox.due(10, now=0)
        sqlite_outbox.mark_sent([pending.id], now=1000.0)
        conn = sqlite_outbox._conn
        assert conn.execute("SELECT count(*) FROM queue").fetchone()[0] == 0
        (state, done_at) = conn.execute("SELECT state, done_at FROM events").fetchone()
        assert (state, done_at) == ("sent", 1000.0)
        assert sqlite_outbox.record([sample_event(1)]) == [], "a delivered event was accepted again"

    def test_uncounted_retry_does_not_start_the_give_up_clock(self, outbox: Outbox) -> None:
        outbox.record([sample_event(1)])
        (pending,) = outbox.due(10, now=0)
        outbox.mark_retry([pending.id], next_attempt_at=0, error="401", count_attempt=False)
        (again,) = outbox.due(10, now=0)
        assert again.attempts == 0 and again.first_failed_at is None
        outbox.mark_retry([pending.id], next_attempt_at=0, error="500", now=5.0)
        (third,) = outbox.due(10, now=0)
        assert third.attempts == 1 and third.first_failed_at == 5.0


class TestJobs:
    """A 202 job parks events until it is done (delivered) or failed (back to pending)."""

    def test_done_job_delivers(self, outbox: Outbox) -> None:
        outbox.record([event("a"), event("b")])
        ids = [e.id for e in outbox.due(10, now=0)]
        job = outbox.add_job("http://bp/jobs/1", ids, deadline=100.0)
        assert outbox.due(10, now=0) == [] and outbox.counts()["job"] == 2
        assert sorted(outbox.finish_job(job, done=True)) == sorted(ids)
        assert outbox.counts()["sent"] == 2 and outbox.jobs() == []

    def test_failed_job_returns_events(self, outbox: Outbox) -> None:
        outbox.record([event("a")])
        ids = [e.id for e in outbox.due(10, now=0)]
        job = outbox.add_job("http://bp/jobs/1", ids, deadline=100.0)
        outbox.finish_job(job, done=False, error="job failed", retry_at=0.0)
        (back,) = outbox.due(10, now=0)
        assert back.attempts == 1

    def test_jobs_survive_reopen(self, tmp_path: Path) -> None:
        box = Outbox.open(tmp_path / "b.db")
        box.record([event("a")])
        box.add_job("http://bp/jobs/9", [e.id for e in box.due(1, now=0)], deadline=5.0)
        box.close()
        box = Outbox.open(tmp_path / "b.db")
        try:
            assert [j.url for j in box.jobs()] == ["http://bp/jobs/9"]
        finally:
            box.close()


class TestLocking:
    """Two writers on one state file are refused with a clear message."""

    def test_second_exclusive_open_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "bridge.db"
        first = Outbox.open(path)
        try:
            with pytest.raises(StateError, match="in use by another bridge process"):
                Outbox.open(path)
            Outbox.open(path, exclusive=False).close()  # readers (dlq list) are fine
        finally:
            first.close()
        Outbox.open(path).close()

    def test_unwritable_directory(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(StateError, match="cannot create directory"):
            Outbox.open(blocker / "sub" / "bridge.db")
