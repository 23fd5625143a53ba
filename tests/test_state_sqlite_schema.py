"""bridge.state.sqlite_schema: a state file from an older bridge opens current, with nothing
lost and nothing resent (the schema-1 layout below is kept as those bridges wrote it)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from harness import keyed_event as event

from bridge.state.sqlite import Outbox

# The layout bridges before the queue table wrote (schema 1), as they wrote it.
SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id              INTEGER PRIMARY KEY,
    dedup_key       TEXT NOT NULL UNIQUE,
    alert_id        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    bp_status       TEXT NOT NULL,
    app_key         TEXT NOT NULL,
    payload         BLOB,
    event_time      REAL NOT NULL,
    recorded_at     REAL NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    first_failed_at REAL,
    last_error      TEXT,
    job_id          INTEGER,
    done_at         REAL
);
CREATE INDEX IF NOT EXISTS events_due ON events (state, next_attempt_at, id);
CREATE INDEX IF NOT EXISTS events_pending ON events (state, id, next_attempt_at);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_alert ON events (alert_id, id);
CREATE TABLE IF NOT EXISTS tracked (
    alert_id      TEXT PRIMARY KEY,
    created_at    REAL NOT NULL,
    status        TEXT NOT NULL,
    transitions   INTEGER NOT NULL DEFAULT 0,
    alert         BLOB NOT NULL,
    event_count   INTEGER
);
CREATE INDEX IF NOT EXISTS tracked_created ON tracked (created_at);
CREATE TABLE IF NOT EXISTS jobs (
    id         INTEGER PRIMARY KEY,
    url        TEXT NOT NULL,
    created_at REAL NOT NULL,
    deadline   REAL NOT NULL,
    polls      INTEGER NOT NULL DEFAULT 0,
    last_status TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id            INTEGER PRIMARY KEY,
    dedup_key     TEXT NOT NULL,
    alert_id      TEXT NOT NULL,
    kind          TEXT NOT NULL,
    app_key       TEXT NOT NULL,
    payload       BLOB,
    original      BLOB,
    reason        TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '',
    event_time    REAL NOT NULL,
    dead_at       REAL NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0
);
"""


def old_state_file(tmp_path: Path, script: str) -> Path:
    """A state file as an older bridge left it: `script` run by plain sqlite3."""
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(script)
    return path


class TestSchema1Upgrade:
    """A state file from an older bridge opens with nothing lost, nothing resent."""

    def test_queue_jobs_dedup_and_tracking_carry_over(self, tmp_path: Path) -> None:
        path = old_state_file(tmp_path, SCHEMA_1)
        conn = sqlite3.connect(path)
        conn.executemany(
            "INSERT INTO events (id, dedup_key, alert_id, kind, bp_status, app_key, payload,"
            " event_time, recorded_at, state, attempts, next_attempt_at, first_failed_at,"
            " last_error, job_id, done_at) VALUES (?, ?, ?, 'alert', 'critical', 'k', ?, 1.0,"
            " 1.0, ?, ?, 0, ?, ?, ?, ?)",
            [
                (1, "sent:alert", "sent", b'{"s":1}', "sent", 0, None, None, None, 5.0),
                (2, "retry:alert", "retry", b'{"r":1}', "pending", 2, 3.0, "503", None, None),
                (3, "job:alert", "job", b'{"j":1}', "job", 0, None, None, 1, None),
                (4, "dead:alert", "dead", None, "dead", 0, None, None, None, 6.0),
            ],
        )
        conn.execute("INSERT INTO jobs (id, url, created_at, deadline) VALUES (1, 'u', 1, 99)")
        conn.execute(
            "INSERT INTO tracked VALUES ('retry', 1.0, 'OPEN', 0, '{\"id\": \"retry\"}', 4)"
        )
        conn.execute("INSERT INTO meta VALUES ('watermark', '123.0')")
        conn.commit()
        conn.close()

        box = Outbox.open(path)
        try:
            (due,) = box.due(10, now=0)
            assert (due.alert_id, due.payload, due.attempts, due.first_failed_at) == (
                "retry", b'{"r":1}', 2, 3.0,
            )
            assert box.job_events(1) == [(3, "critical", 1.0)]
            assert box.backlog() == {"pending": 1, "job": 1, "dead_letters": 0, "jobs": 1}
            assert box.counts()["sent"] == 1 and box.counts()["dead"] == 1
            keys = ["sent:alert", "retry:alert", "job:alert", "dead:alert"]
            assert box.record([event(k.split(":")[0]) for k in keys]) == []
            (tracked,) = box.tracked()
            assert (tracked.alert_id, tracked.event_count) == ("retry", 4)
            assert box.watermark() == 123.0
            assert box.finish_job(1, done=True) == [3]
            box.mark_sent([due.id])
            assert box.backlog()["pending"] == 0 and box.counts()["sent"] == 3
        finally:
            box.close()
        box = Outbox.open(path)  # opened again: already current, nothing moves twice
        try:
            assert box.due(10, now=0) == [] and box.counts()["sent"] == 3
        finally:
            box.close()

    def test_old_state_file_gains_the_event_count_column(self, tmp_path: Path) -> None:
        path = old_state_file(
            tmp_path,
            "CREATE TABLE tracked (alert_id TEXT PRIMARY KEY, created_at REAL NOT NULL,"
            " status TEXT NOT NULL, transitions INTEGER NOT NULL DEFAULT 0,"
            " alert BLOB NOT NULL);"
            " INSERT INTO tracked VALUES ('a', 1.0, 'OPEN', 0, '{\"eventCount\": 3}');",
        )
        with contextlib.closing(Outbox.open(path)) as outbox:
            (row,) = outbox.tracked()
            assert row.alert_id == "a" and row.event_count is None
            outbox.record([], track=[row._replace(event_count=4)])
            assert outbox.tracked()[0].event_count == 4
        # Opening again: the column is there, nothing to add.
        with contextlib.closing(Outbox.open(path)) as outbox:
            assert outbox.tracked()[0].event_count == 4
