"""`bridge state migrate`: a SQLite state file carries over into PostgreSQL with nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main
from bridge.state.postgres import PostgresStore
from bridge.state.records import NewEvent, Rejected, TrackedAlert
from bridge.state.sqlite import Outbox


def ev(alert_id: str, kind: str = "alert", status: str = "critical") -> NewEvent:
    key = f"{alert_id}:alert" if kind == "alert" else f"{alert_id}:status_change:1:{status}"
    return NewEvent(key, alert_id, kind, status, "k", b'{"id":"%s"}' % key.encode(), 5.0)


def test_everything_that_decides_delivery_carries_over(
    tmp_path: Path, postgres_url: str, pg_namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.db"
    box = Outbox.open(path)
    box.record(
        [ev("sent"), ev("retry"), ev("job"), ev("dead"), ev("retry", "status_change", "ok")],
        watermark=1234.5,
        rejected=[Rejected("bad:alert", "bad", "alert", "malformed_alert", "x", b"{}", 4.0)],
        track=[TrackedAlert("sent", 100.0, "OPEN", 0, b'{"id":"sent"}', 3)],
        watermark_key="watermark",
    )
    box.set_meta("sweep:ALERT", "1200.0")
    ids = {e.alert_id: e.id for e in box.due(10, now=0)}
    box.mark_sent([ids["sent"]])
    box.mark_retry([ids["retry"]], next_attempt_at=50.0, error="503", now=9.0)
    job = box.add_job("http://bp/jobs/7", [ids["job"]], deadline=99.0)
    box.dead_letter([ids["dead"]], reason="rejected", detail="400")
    before = (box.counts(), box.backlog(), box.dead_letters(), box.jobs(), box.tracked(),
              box.due(10, now=100.0), box.job_events(job))
    box.close()

    assert main(["state", "migrate", "--from", str(path), "--to", postgres_url,
                 "--namespace", pg_namespace]) == 0
    assert f"namespace {pg_namespace}" in capsys.readouterr().out

    pg = PostgresStore.open(postgres_url, pg_namespace)
    try:
        after = (pg.counts(), pg.backlog(), pg.dead_letters(), pg.jobs(), pg.tracked(),
                 pg.due(10, now=100.0), pg.job_events(job))
        assert after == before
        assert pg.watermark() == 1234.5 and pg.get_meta("sweep:ALERT") == "1200.0"
        assert pg.known(["sent:alert", "bad:alert", "new:alert"]) == {"sent:alert", "bad:alert"}
        # New events and jobs continue after the copied ids, in order.
        (_fresh,) = pg.record([ev("new")])
        due_ids = [e.id for e in pg.due(10, now=100.0)]
        assert due_ids == sorted(due_ids) and max(due_ids) > max(ids.values())
        assert pg.add_job("http://bp/jobs/8", [due_ids[-1]], deadline=1.0) > job
    finally:
        pg.close()

    # A second run would merge two histories: refused, the target left as it is.
    assert main(["state", "migrate", "--from", str(path), "--to", postgres_url,
                 "--namespace", pg_namespace]) == 1
    assert "is not empty" in capsys.readouterr().err


def test_missing_file_and_missing_namespace_are_clear(tmp_path: Path, postgres_url: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["state", "migrate", "--from", str(tmp_path / "nope.db"), "--to", postgres_url,
                 "--namespace", "x1"]) == 1
    assert "no such state file" in capsys.readouterr().err
    assert main(["state", "migrate", "--from", "x", "--to", postgres_url]) == 2
    assert "--namespace" in capsys.readouterr().err
