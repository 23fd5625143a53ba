"""bridge.state.records: the event states and kinds both backends store, as one set of names."""

from __future__ import annotations

from pathlib import Path

from harness import sample_event

from bridge import sync_back
from bridge.state.records import DEAD, IN_JOB, PENDING, SENT, WRITEBACK_KINDS, EventState
from bridge.state.sqlite import Outbox


def stored_states(box: Outbox) -> set[str]:
    return {row[0] for row in box._conn.execute("SELECT DISTINCT state FROM events")}


def test_an_event_lives_through_the_states_the_enum_names(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path / "state.db")
    try:
        fresh = box.record([sample_event(i) for i in range(4)], now=100.0)
        assert stored_states(box) == {PENDING}
        due = box.due(4, now=100.0)
        job = box.add_job("https://bp/job/1", [due[0].id], deadline=200.0, now=100.0)
        box.mark_sent([due[1].id], now=101.0)
        box.dead_letter([due[2].id], reason="rejected", detail="400", now=101.0)
        assert stored_states(box) == {PENDING, IN_JOB, SENT, DEAD} == set(EventState)
        counts = box.counts()
        assert {s: counts[s] for s in EventState} == {"pending": 1, "job": 1, "sent": 1,
                                                     "dead": 1}
        assert len(fresh) == 4 and job > 0
    finally:
        box.close()


def test_write_back_kinds_are_the_sync_backs() -> None:
    # The dispatcher leaves these kinds to the writer: a kind the sync-back records that is not
    # listed here would be posted to BigPanda as an alert.
    assert set(WRITEBACK_KINDS) == {sync_back.KIND_STATUS, sync_back.KIND_COMMENT}


def test_states_compare_as_the_strings_in_the_database() -> None:
    assert [str(s) for s in EventState] == ["pending", "job", "sent", "dead"]
    assert PENDING == "pending" and f"{IN_JOB}" == "job"
