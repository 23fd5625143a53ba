"""The SQLite state file's layout, and how a file written by an older bridge is brought to it."""

from __future__ import annotations

import sqlite3

from bridge.state.records import UNDELIVERED

SCHEMA_VERSION = 2

# A commit costs a dirty page (4 KiB of WAL) for every B-tree page it touches, and an entry whose
# key is random (Panther's hex alert ids) touches a page of its own. So the layout keeps random
# keys to the one that must exist (the dedup key) and splits what changes from what does not:
# - `events`: one small row per event ever recorded, written once and updated once (delivered or
#   dead): the dedup keys and what `counts`, the status sync and the tests read;
# - `queue`: the events not delivered yet, with their payloads and retry state. Delivering a batch
#   deletes its rows, which lie side by side (ids are handed out in order): a few pages, however
#   long the history. A delivered payload is not kept (nothing reads it again).
# - `tracked`: keyed by (created_at, alert_id), one B-tree in creation order, which the status
#   sync reads by range and expires from the old end.
_TRACKED = """
CREATE TABLE IF NOT EXISTS tracked (
    alert_id      TEXT NOT NULL,
    created_at    REAL NOT NULL,
    status        TEXT NOT NULL,
    transitions   INTEGER NOT NULL DEFAULT 0,
    alert         BLOB NOT NULL,
    event_count   INTEGER,
    PRIMARY KEY (created_at, alert_id)
) WITHOUT ROWID
"""

_TABLES = """
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
    event_time      REAL NOT NULL,
    recorded_at     REAL NOT NULL,
    state           TEXT NOT NULL,
    done_at         REAL
);
CREATE TABLE IF NOT EXISTS queue (
    id              INTEGER PRIMARY KEY,
    payload         BLOB NOT NULL,
    job_id          INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    first_failed_at REAL,
    last_error      TEXT
);
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

_INDEXES = """
CREATE INDEX IF NOT EXISTS queue_retry ON queue (next_attempt_at);
CREATE INDEX IF NOT EXISTS queue_waiting ON queue (id, next_attempt_at) WHERE job_id IS NULL;
CREATE INDEX IF NOT EXISTS queue_job ON queue (job_id) WHERE job_id IS NOT NULL;
"""


def create(conn: sqlite3.Connection) -> None:
    """Create what is missing (tables, then migrations of older files, then indexes)."""
    conn.executescript(_TABLES)
    conn.execute(_TRACKED)
    migrate(conn)
    conn.executescript(_INDEXES)
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a state file written by an older bridge up to the current layout, in one commit."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else None
    conn.execute("BEGIN IMMEDIATE")
    try:
        tracked = {r[1]: r[5] for r in conn.execute("PRAGMA table_info(tracked)")}
        if "event_count" not in tracked:  # before forward_event_count: the count is unknown
            conn.execute("ALTER TABLE tracked ADD COLUMN event_count INTEGER")
        if tracked.get("alert_id") == 1:
            # Schema 1 keyed tracked alerts by their (random) id alone: a rowid table, its id
            # index and a created_at index. Now one B-tree in creation order.
            conn.execute("ALTER TABLE tracked RENAME TO tracked_v1")
            conn.execute("DROP INDEX IF EXISTS tracked_created")
            conn.execute(_TRACKED)
            conn.execute(
                "INSERT OR IGNORE INTO tracked (alert_id, created_at, status, transitions, alert,"
                " event_count) SELECT alert_id, created_at, status, transitions, alert,"
                " event_count FROM tracked_v1"
            )
            conn.execute("DROP TABLE tracked_v1")
        events = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
        if (version is None or version < 2) and "next_attempt_at" in events:
            # Schema 1 kept payloads and retry state in the events rows, with full indexes over
            # every event ever recorded. The undelivered ones move to the queue; the columns
            # stay (SQLite would rewrite the table to drop them), empty.
            conn.execute(
                "INSERT OR IGNORE INTO queue (id, payload, job_id, attempts, next_attempt_at,"
                " first_failed_at, last_error) SELECT id, coalesce(payload, x''), job_id,"
                " attempts, next_attempt_at, first_failed_at, last_error FROM events"
                f" WHERE state IN {tuple(str(s) for s in UNDELIVERED)!r}"
            )
            conn.execute("UPDATE events SET payload = NULL WHERE payload IS NOT NULL")
            for name in ("events_due", "events_pending", "events_alert", "events_job"):
                conn.execute(f"DROP INDEX IF EXISTS {name}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
