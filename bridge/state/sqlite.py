"""The durable state between the two APIs: one SQLite file in WAL mode (the default backend).

It holds the poll watermark, every event ever recorded (a small row with its dedup key, forever),
the queue of events not delivered yet (with their frozen payloads), the Panther alerts being
tracked for status changes, BigPanda jobs and dead letters. Everything that must not be lost or
repeated is decided by a transaction here: a page's events and the watermark that passes them are
written in the same commit, so a crash can only ever replay a page, never skip one, and replays
are absorbed by the dedup keys.

Calls are synchronous: each is one short transaction (well under a millisecond in WAL mode with
synchronous=NORMAL), cheaper than handing it to a thread. synchronous=NORMAL keeps every commit
across a process crash (SIGKILL); only a power loss can drop the last commits.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bridge.errors import StateAccessError, StateCorruptError, StateError
from bridge.state.common import MetaReads, replay_refusal
from bridge.state.records import (
    DEAD,
    IN_JOB,
    PENDING,
    SENT,
    UNDELIVERED,
    WRITEBACK_KINDS,
    DeadLetter,
    Job,
    NewEvent,
    PendingEvent,
    Rejected,
    TrackedAlert,
)
from bridge.state.sqlite_errors import corrupt_message, lock, state_error
from bridge.state.sqlite_schema import SCHEMA_VERSION, create

# WAL pages after which a commit checkpoints by itself (SQLite's default is 1,000). The service
# checkpoints from a worker thread every second (`checkpoint`), so the event loop does not copy
# the WAL back and fsync the database inside a page's commit; this is only the safety net.
AUTOCHECKPOINT_PAGES = 10_000

__all__ = ["AUTOCHECKPOINT_PAGES", "SCHEMA_VERSION", "Outbox", "state_error"]


class Outbox(MetaReads):
    """The bridge's state file. Open with `Outbox.open(path)`; one writer process at a time."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lock_fd: int | None) -> None:
        self._conn = conn
        self.path = path
        self._lock_fd = lock_fd
        # Whether write-backs may be queued: until one is, `due` / `next_due_at` keep their
        # original SQL (no join with events on the dispatcher's hot path).
        self._writebacks = conn.execute(
            "SELECT 1 FROM queue AS q JOIN events AS e ON e.id = q.id"
            f" WHERE e.kind IN {_in(WRITEBACK_KINDS)} LIMIT 1"
        ).fetchone() is not None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, exclusive: bool = True) -> Outbox:
        """Open (creating if needed) the state at `path`.

        `exclusive` takes an advisory lock next to the file so that two bridges (say `run` and a
        `backfill`) never write the same state: the second one is refused with a clear message.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateAccessError(
                f"state.path {path}: cannot create directory {path.parent}: {exc.strerror}; "
                "set state.path to a writable location"
            ) from None
        if path.is_dir():
            raise StateAccessError(
                f"state.path {path} is a directory: set state.path to a file inside it"
                f" (e.g. {path / 'bridge.db'})"
            )
        lock_fd = lock(path) if exclusive else None
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # Before anything writes to it: a damaged file is refused, not run on (and the
            # switch to WAL below would already write to it).
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                conn.close()
                raise StateCorruptError(corrupt_message(path, "; ".join(problems)))
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            conn.execute("PRAGMA foreign_keys=ON")
            create(conn)
        except (sqlite3.Error, StateError) as exc:
            if lock_fd is not None:
                os.close(lock_fd)
            if isinstance(exc, StateError):
                raise
            raise state_error(exc, path, "opening the state database") from None
        return cls(conn, path, lock_fd)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def checkpoint(self) -> None:
        """Copy committed WAL pages back into the database file, for a worker thread.

        PASSIVE: it neither waits for nor blocks the writer. It uses a connection of its own,
        opened and closed here, so it shares nothing with the event loop's connection (sqlite3
        releases the GIL while it works: the copy and its fsync run beside the loop).
        """
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=1.0)
        except sqlite3.Error:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # busy or closing: the next one (or the autocheckpoint) catches up
        finally:
            conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            # SQLite may have rolled back by itself (a full disk, an I/O error): then there is
            # nothing to roll back, and the error to report is the one that got us here.
            if self._conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            raise
        else:
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise

    # -- meta: watermark and friends ---------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- intake ------------------------------------------------------------------------------

    def record(
        self,
        events: Sequence[NewEvent],
        *,
        watermark: float | None = None,
        rejected: Sequence[Rejected] = (),
        track: Sequence[TrackedAlert] = (),
        untrack: Sequence[TrackedAlert] = (),
        now: float | None = None,
        watermark_key: str = "watermark",
    ) -> list[NewEvent]:
        """Store a page's outcome in ONE transaction; return the events that were new.

        The watermark only ever moves forward, and only together with the events it passes.
        """
        now = time.time() if now is None else now
        fresh: list[NewEvent] = []  # stays empty without events
        if not self._writebacks and any(ev.kind in WRITEBACK_KINDS for ev in events):
            self._writebacks = True
        with self._tx() as conn:
            if events:
                # One batch insert; a key already recorded (or twice in the batch) is ignored by
                # its unique index, and the ids that did go in say which events are new. The ids
                # are handed out here (one writer), so the queue rows can follow in one batch.
                first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM events").fetchone()[0]
                before = conn.total_changes
                conn.executemany(
                    "INSERT OR IGNORE INTO events (id, dedup_key, alert_id, kind, bp_status,"
                    " app_key, event_time, recorded_at, state)"
                    f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{PENDING}')",
                    [
                        (first + i, ev.dedup_key, ev.alert_id, ev.kind, ev.bp_status, ev.app_key,
                         ev.event_time, now)
                        for i, ev in enumerate(events)
                    ],
                )
                if conn.total_changes - before == len(events):
                    fresh = list(events)
                    ids: Iterable[int] = range(first, first + len(events))
                else:
                    inserted = {
                        r[0] for r in conn.execute("SELECT id FROM events WHERE id >= ?", (first,))
                    }
                    ids = [first + i for i in range(len(events)) if first + i in inserted]
                    fresh = [events[i - first] for i in ids]
                conn.executemany(
                    "INSERT INTO queue (id, payload) VALUES (?, ?)",
                    [(i, ev.payload) for i, ev in zip(ids, fresh, strict=True)],
                )
            for rej in rejected:
                # The dedup key is claimed too, so a bad alert is dead-lettered once, not per poll.
                cur = conn.execute(
                    "INSERT OR IGNORE INTO events (dedup_key, alert_id, kind, bp_status, app_key,"
                    " event_time, recorded_at, state, done_at) VALUES (?, ?, ?, '', ?, ?, ?, ?, ?)",
                    (rej.dedup_key, rej.alert_id, rej.kind, rej.app_key, rej.event_time, now,
                     DEAD, now),
                )
                if cur.rowcount:
                    conn.execute(
                        "INSERT INTO dead_letters (dedup_key, alert_id, kind, app_key, payload,"
                        " original, reason, detail, event_time, dead_at)"
                        " VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
                        (rej.dedup_key, rej.alert_id, rej.kind, rej.app_key, rej.original,
                         rej.reason, rej.detail, rej.event_time, now),
                    )
            if track:
                conn.executemany(
                    "INSERT INTO tracked (alert_id, created_at, status, transitions, alert,"
                    " event_count) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (created_at, alert_id) DO UPDATE SET"
                    " status = excluded.status, transitions = excluded.transitions,"
                    " alert = excluded.alert, event_count = excluded.event_count",
                    track,
                )
            if untrack:
                conn.executemany(
                    "DELETE FROM tracked WHERE created_at = ? AND alert_id = ?",
                    [(t.created_at, t.alert_id) for t in untrack],
                )
            if watermark is not None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                    " WHERE CAST(meta.value AS REAL) < CAST(excluded.value AS REAL)",
                    (watermark_key, repr(float(watermark))),
                )
        return fresh

    def known(self, dedup_keys: Iterable[str]) -> set[str]:
        """Which of these dedup keys are already recorded (so a poll can skip normalizing them)."""
        keys = list(dedup_keys)
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT dedup_key FROM events WHERE dedup_key IN ({marks})", chunk
            )
            found.update(r[0] for r in rows)
        return found

    # -- tracked alerts (status sync) --------------------------------------------------------

    def app_keys_of(self, dedup_keys: Iterable[str]) -> dict[str, str]:
        """The app key each of these events was recorded with (dedup key -> app key)."""
        keys = list(dedup_keys)
        found: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT dedup_key, app_key FROM events WHERE dedup_key IN ({marks})", chunk
            )
            found.update((key, app_key) for key, app_key in rows)
        return found

    def tracked(self, *, created_after: float | None = None) -> list[TrackedAlert]:
        sql = (
            "SELECT alert_id, created_at, status, transitions, alert, event_count FROM tracked"
        )
        args: tuple = ()
        if created_after is not None:
            sql += " WHERE created_at >= ?"
            args = (created_after,)
        rows = self._conn.execute(sql + " ORDER BY created_at", args)
        return [TrackedAlert(*row) for row in rows]

    def expire_tracked(self, older_than: float) -> int:
        with self._tx() as conn:
            return conn.execute("DELETE FROM tracked WHERE created_at < ?", (older_than,)).rowcount

    def tracked_count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM tracked").fetchone()[0]

    # -- delivery ----------------------------------------------------------------------------

    def due(
        self,
        limit: int,
        *,
        now: float,
        exclude: Iterable[int] = (),
        app_key: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> list[PendingEvent]:
        """Queued events whose next attempt is due, oldest first, minus those already in flight.

        At most `limit` rows are read: the in-flight ids are excluded inside SQLite (as a JSON
        array, one parameter however many) rather than fetched and dropped here, so a dispatcher
        holds about one batch of payloads in memory however long the queue grows during an outage.
        `app_key` restricts the result to one app key (a batch never mixes them). `kinds`
        restricts it to those event kinds; without it write-backs (WRITEBACK_KINDS) are left out.

        Events of one Panther alert leave in the order they were recorded: an event waits while
        an earlier event of the same alert is still undelivered (queued, in flight, retrying or
        in a job), so a `resolved` can never overtake the `critical` it resolves.
        """
        excluded = sorted(set(exclude))
        # Walked in id order (queue_waiting: ids and due times only, so events waiting out a
        # backoff are skipped without reading their payloads), the scan stops at `limit` due
        # events: the checks below run on those few rows only (through queue_retry it would
        # check every due row, then sort them).
        sql = (
            "SELECT q.id, e.alert_id, e.kind, e.bp_status, e.app_key, q.payload, e.event_time,"
            " q.attempts, q.first_failed_at"
            " FROM queue AS q INDEXED BY queue_waiting JOIN events AS e ON e.id = q.id"
            " WHERE q.job_id IS NULL AND q.next_attempt_at <= ?"
            # An alert's own event is the first of its events (status changes follow only
            # forwarded alerts): only the later ones need the look back. An alert's events are
            # found by their dedup keys, which all start with "<alert id>:" (a range of the
            # dedup index: no index of its own to keep up on every insert).
            " AND (e.kind = 'alert' OR NOT EXISTS (SELECT 1 FROM events AS earlier"
            " JOIN queue AS waiting ON waiting.id = earlier.id"
            " WHERE earlier.dedup_key > e.alert_id || ':' AND earlier.dedup_key < e.alert_id || ';'"
            " AND earlier.id < e.id))"
        )
        args: list[object] = [now]
        if app_key is not None:
            sql += " AND e.app_key = ?"
            args.append(app_key)
        if kinds is not None:
            sql += f" AND e.kind IN {_in(kinds)}"
        elif self._writebacks:
            sql += f" AND e.kind NOT IN {_in(WRITEBACK_KINDS)}"
        if excluded:
            sql += " AND q.id NOT IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(excluded))
        rows = self._conn.execute(sql + " ORDER BY q.id LIMIT ?", (*args, limit)).fetchall()
        return [PendingEvent(*row) for row in rows]

    def next_due_at(
        self, *, after: float | None = None, kinds: Sequence[str] | None = None
    ) -> float | None:
        """The earliest next attempt time of a queued event not in a job (only later than
        `after`); of `kinds` only, else of all but write-backs."""
        sql = "SELECT min(next_attempt_at) FROM queue WHERE job_id IS NULL"
        if kinds is not None or self._writebacks:
            wanted = f"IN {_in(kinds)}" if kinds is not None else f"NOT IN {_in(WRITEBACK_KINDS)}"
            sql = (
                "SELECT min(q.next_attempt_at) FROM queue AS q JOIN events AS e ON e.id = q.id"
                f" WHERE q.job_id IS NULL AND e.kind {wanted}"
            )
            if after is None:
                return self._conn.execute(sql).fetchone()[0]
            return self._conn.execute(
                sql + " AND q.next_attempt_at > ?", (after,)
            ).fetchone()[0]
        if after is None:
            return self._conn.execute(sql).fetchone()[0]
        return self._conn.execute(sql + " AND next_attempt_at > ?", (after,)).fetchone()[0]

    def mark_sent(self, ids: Sequence[int], *, now: float | None = None) -> None:
        """Delivered: the events leave the queue (payload and all); their rows say when."""
        now = time.time() if now is None else now
        as_json = json.dumps(list(ids))
        with self._tx() as conn:
            conn.execute(
                f"UPDATE events SET state = '{SENT}', done_at = ?"
                f" WHERE id IN (SELECT value FROM json_each(?)) AND state IN {_in(UNDELIVERED)}",
                (now, as_json),
            )
            conn.execute(
                "DELETE FROM queue WHERE id IN (SELECT value FROM json_each(?))", (as_json,)
            )

    def mark_retry(
        self, ids: Sequence[int], *, next_attempt_at: float, error: str, now: float | None = None,
        count_attempt: bool = True,
    ) -> None:
        """Put events back in line, due at `next_attempt_at`, with the error that sent them back.

        `count_attempt=False` is for failures that are not the events' fault (our credentials
        refused, a pause that cut a bisection short): neither the attempt counter nor the
        `give_up_after` clock moves, so a long credentials outage never expires anything.
        """
        now = time.time() if now is None else now
        counted = int(count_attempt)
        with self._tx() as conn:
            conn.executemany(
                "UPDATE queue SET attempts = attempts + ?, next_attempt_at = ?, last_error = ?,"
                " first_failed_at = CASE WHEN ? THEN coalesce(first_failed_at, ?)"
                " ELSE first_failed_at END, job_id = NULL WHERE id = ?",
                [(counted, next_attempt_at, error[:2000], counted, now, i) for i in ids],
            )
            conn.execute(
                f"UPDATE events SET state = '{PENDING}'"
                f" WHERE id IN (SELECT value FROM json_each(?)) AND state = '{IN_JOB}'",
                (json.dumps(list(ids)),),
            )

    def dead_letter(
        self, ids: Sequence[int], *, reason: str, detail: str, now: float | None = None
    ) -> int:
        """Move events to the dead-letter table with why; returns how many moved."""
        now = time.time() if now is None else now
        moved = 0
        with self._tx() as conn:
            for i in ids:
                row = conn.execute(
                    "SELECT e.dedup_key, e.alert_id, e.kind, e.app_key, q.payload, e.event_time,"
                    " q.attempts FROM queue AS q JOIN events AS e ON e.id = q.id WHERE q.id = ?",
                    (i,),
                ).fetchone()
                if row is None:
                    continue
                conn.execute(
                    "INSERT INTO dead_letters (dedup_key, alert_id, kind, app_key, payload,"
                    " original, reason, detail, event_time, dead_at, attempts)"
                    " VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
                    (*row[:5], reason, detail[:8000], row[5], now, row[6]),
                )
                conn.execute("DELETE FROM queue WHERE id = ?", (i,))
                conn.execute(
                    f"UPDATE events SET state = '{DEAD}', done_at = ? WHERE id = ?", (now, i)
                )
                moved += 1
        return moved

    # -- jobs --------------------------------------------------------------------------------

    def add_job(
        self, url: str, ids: Sequence[int], *, deadline: float, now: float | None = None
    ) -> int:
        """Park events as one BigPanda job (a 202 answer), in the same commit as the job row."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            job_id = conn.execute(
                "INSERT INTO jobs (url, created_at, deadline) VALUES (?, ?, ?)",
                (url, now, deadline),
            ).lastrowid
            as_json = json.dumps(list(ids))
            conn.execute(
                "UPDATE queue SET job_id = ?"
                " WHERE id IN (SELECT value FROM json_each(?)) AND job_id IS NULL",
                (job_id, as_json),
            )
            conn.execute(
                f"UPDATE events SET state = '{IN_JOB}'"
                f" WHERE id IN (SELECT value FROM json_each(?)) AND state = '{PENDING}'",
                (as_json,),
            )
        return int(job_id)

    def jobs(self) -> list[Job]:
        rows = self._conn.execute(
            "SELECT id, url, created_at, deadline, polls FROM jobs ORDER BY id"
        )
        return [Job(*r) for r in rows]

    def job_events(self, job_id: int) -> list[tuple[int, str, float]]:
        """(event id, BigPanda status, event time) of the events a job carries."""
        return self._conn.execute(
            "SELECT q.id, e.bp_status, e.event_time FROM queue AS q JOIN events AS e"
            " ON e.id = q.id WHERE q.job_id = ? ORDER BY q.id",
            (job_id,),
        ).fetchall()

    def note_job_poll(self, job_id: int, status: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET polls = polls + 1, last_status = ? WHERE id = ?", (status, job_id)
            )

    def finish_job(self, job_id: int, *, done: bool, error: str = "", retry_at: float = 0.0,
                   now: float | None = None) -> list[int]:
        """Close a job: its events are delivered (`done`) or back in line; returns the ids."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            ids = [
                r[0] for r in conn.execute(
                    "SELECT id FROM queue WHERE job_id = ? ORDER BY id", (job_id,)
                )
            ]
            as_json = json.dumps(ids)
            if done:
                conn.execute(
                    f"UPDATE events SET state = '{SENT}', done_at = ?"
                    " WHERE id IN (SELECT value FROM json_each(?))",
                    (now, as_json),
                )
                conn.execute("DELETE FROM queue WHERE job_id = ?", (job_id,))
            else:
                conn.execute(
                    "UPDATE queue SET job_id = NULL, attempts = attempts + 1,"
                    " next_attempt_at = ?, last_error = ?, first_failed_at ="
                    " coalesce(first_failed_at, ?) WHERE job_id = ?",
                    (retry_at, error[:2000], now, job_id),
                )
                conn.execute(
                    f"UPDATE events SET state = '{PENDING}'"
                    " WHERE id IN (SELECT value FROM json_each(?))",
                    (as_json,),
                )
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return ids

    # -- dead letters ------------------------------------------------------------------------

    def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        rows = self._conn.execute(
            "SELECT id, dedup_key, alert_id, kind, app_key, payload, original, reason, detail,"
            " event_time, dead_at, attempts FROM dead_letters ORDER BY id LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [DeadLetter(*r) for r in rows]

    def dead_letter_by_id(self, dl_id: int) -> DeadLetter | None:
        row = self._conn.execute(
            "SELECT id, dedup_key, alert_id, kind, app_key, payload, original, reason, detail,"
            " event_time, dead_at, attempts FROM dead_letters WHERE id = ?",
            (dl_id,),
        ).fetchone()
        return DeadLetter(*row) if row else None

    def replay_dead_letters(self, ids: Sequence[int] | None) -> tuple[list[int], list[str]]:
        """Put dead letters back in the queue unchanged (same payload, same timestamp).

        Returns (replayed ids, problems). A dead letter without a payload (an alert that never
        became one) cannot be replayed: it is named in the problems and left where it is.
        """
        replayed: list[int] = []
        problems: list[str] = []
        with self._tx() as conn:
            if ids is None:
                ids = [r[0] for r in conn.execute("SELECT id FROM dead_letters ORDER BY id")]
            for dl_id in ids:
                row = conn.execute(
                    "SELECT dedup_key, payload FROM dead_letters WHERE id = ?", (dl_id,)
                ).fetchone()
                if (problem := replay_refusal(dl_id, row)) is not None:
                    problems.append(problem)
                    continue
                dedup_key, payload = row
                event = conn.execute(
                    f"UPDATE events SET state = '{PENDING}', done_at = NULL WHERE dedup_key = ?"
                    " RETURNING id",
                    (dedup_key,),
                ).fetchone()
                if event is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO queue (id, payload) VALUES (?, ?)",
                        (event[0], payload),
                    )
                conn.execute("DELETE FROM dead_letters WHERE id = ?", (dl_id,))
                replayed.append(dl_id)
        if replayed:
            self._writebacks = True  # a replayed dead letter may be one: filter from now on
        return replayed, problems

    def purge_dead_letters(self, *, older_than: float | None = None) -> int:
        with self._tx() as conn:
            if older_than is None:
                return conn.execute("DELETE FROM dead_letters").rowcount
            return conn.execute(
                "DELETE FROM dead_letters WHERE dead_at < ?", (older_than,)
            ).rowcount

    # -- gauges and reports ------------------------------------------------------------------

    def tracked_statuses(self, alert_ids: Iterable[str]) -> dict[str, str]:
        """The Panther status the status sync last saw for each of these tracked alerts."""
        wanted = set(alert_ids)
        if not wanted:
            return {}
        rows = self._conn.execute(
            "SELECT alert_id, status FROM tracked WHERE alert_id IN"
            " (SELECT value FROM json_each(?))",
            (json.dumps(sorted(wanted)),),
        )
        return dict(rows.fetchall())

    def backlog(self) -> dict[str, int]:
        """Undelivered events (pending, in a job), dead letters and jobs: what the gauges show.

        Counted in the queue and its indexes: the cost of the backlog, not of the history.
        """
        conn = self._conn
        queued = conn.execute("SELECT count(*) FROM queue").fetchone()[0]
        in_jobs = conn.execute(
            "SELECT count(*) FROM queue WHERE job_id IS NOT NULL"
        ).fetchone()[0]
        return {
            str(PENDING): queued - in_jobs,
            str(IN_JOB): in_jobs,
            "dead_letters": conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0],
            "jobs": conn.execute("SELECT count(*) FROM jobs").fetchone()[0],
        }

    def counts(self) -> dict[str, int]:
        """Events by state (a scan of every event ever recorded), plus dead letters and jobs:
        what `once` and the stop log report. The periodic gauges use `backlog`."""
        out = {str(state): 0 for state in (PENDING, IN_JOB, SENT, DEAD)}
        for state, n in self._conn.execute("SELECT state, count(*) FROM events GROUP BY state"):
            out[state] = n
        out["dead_letters"] = self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        out["jobs"] = self._conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        return out


def _in(kinds: Iterable[str]) -> str:
    """An SQL `(...)` list of event kinds, which are identifiers of ours, never user input."""
    names = list(kinds)
    if not all(name.replace("_", "").isalnum() for name in names):
        raise ValueError(f"invalid event kinds {names!r}")
    return "(" + ", ".join(f"'{name}'" for name in names) + ")" if names else "('')"


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _typed_state_errors(method: _Method) -> _Method:
    """Raise a `StateError` saying what to do instead of a raw `sqlite3.Error`."""
    doing = method.__name__.replace("_", " ")

    @functools.wraps(method)
    def wrapper(self: Outbox, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.InterfaceError, sqlite3.ProgrammingError):
            raise  # a bug of the bridge (a value SQLite cannot bind), not trouble with the file
        except sqlite3.Error as exc:
            raise state_error(exc, self.path, doing) from exc

    return wrapper  # type: ignore[return-value]


# Every public method of the outbox (but the lifecycle ones, which handle their own) raises
# typed errors: the callers (loops, CLI) then decide by type, as for HTTP errors.
for _name, _member in list(vars(Outbox).items()):
    if not _name.startswith("_") and _name not in ("open", "close", "checkpoint") and callable(
        _member
    ):
        setattr(Outbox, _name, _typed_state_errors(_member))
del _name, _member
