"""The bridge's state in PostgreSQL: the same interface and meaning as the SQLite `Outbox`.

Several replicas share one namespace; one of them leads (bridge/state/lease.py). While this
store is fenced with the leader's term (`fence`), every write transaction first checks, in the
same transaction and under a share lock of the lease row, that the lease still carries that term
and holder: a leader that lost its lease (paused, partitioned) cannot move a watermark or mark
anything sent, and a grant elsewhere waits for a write in progress to commit. The local deadline
(renew start + ttl - margin, on the monotonic clock) is checked first, without the database.

Calls are synchronous, like the SQLite outbox: every connection is bounded by libpq's
connect_timeout, tcp_user_timeout, keepalives and a statement_timeout well under the lease TTL,
so a cut connection fails the call in about half a lease instead of hanging the event loop.
A broken connection is replaced on the next call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg
import structlog

from bridge.errors import FencedError, StateError
from bridge.state.common import MetaReads, replay_refusal
from bridge.state.postgres_connection import Connection, message, redact_url
from bridge.state.postgres_schema import SCHEMA_VERSION, migrate, schema_name
from bridge.state.records import (
    DEAD,
    IN_JOB,
    PENDING,
    SENT,
    WRITEBACK_KINDS,
    DeadLetter,
    Job,
    NewEvent,
    PendingEvent,
    Rejected,
    TrackedAlert,
)

__all__ = ["PostgresStore", "redact_url"]

ANALYZE_AFTER_ROWS = 1000  # new rows after which fresh planner statistics pay for themselves
# `events` only grows: its statistics are refreshed once it has grown by this share (as
# autovacuum would, but at once), so a long history is not sampled on every burst.
EVENTS_ANALYZE_GROWTH = 0.1

log = structlog.get_logger("bridge.state")


class Fence:
    """The leader's term and its local deadline (time.monotonic) for state writes."""

    def __init__(self, holder: str, term: int, deadline: Callable[[], float]) -> None:
        self.holder = holder
        self.term = term
        self.deadline = deadline

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline()


class PostgresStore(MetaReads):
    """The state of one namespace in PostgreSQL. Open with `PostgresStore.open(url, namespace)`."""

    backend = "postgresql"

    def __init__(self, conn: Connection, namespace: str, schema: str) -> None:
        self._db = conn
        self.namespace = namespace
        self.schema = schema
        self.path = conn.shown  # what logs show for "state" (never the password)
        self._fence: Fence | None = None
        # Rows added to each table since its planner statistics were last refreshed, and its
        # size then: a burst that multiplies the queue makes stale statistics pick a plan that
        # sorts the whole queue on every `due` (tens of milliseconds instead of a fraction of
        # one). Both tables count: `due` joins them.
        self._unanalyzed = {"queue": 0, "events": 0}
        self._analyzed_rows = {"queue": 0, "events": 0}
        s = schema
        self._q_fence = (
            f"SELECT 1 FROM {s}.lease WHERE id = 1 AND term = %s AND holder = %s FOR SHARE"
        )
        self._q_due = (
            "SELECT q.id, e.alert_id, e.kind, e.bp_status, e.app_key, q.payload, e.event_time,"
            " q.attempts, q.first_failed_at"
            f" FROM {s}.queue AS q JOIN {s}.events AS e ON e.id = q.id"
            " WHERE q.job_id IS NULL AND q.next_attempt_at <= %(now)s"
            " AND (e.kind = 'alert' OR NOT EXISTS (SELECT 1 FROM "
            f"{s}.events AS earlier JOIN {s}.queue AS waiting ON waiting.id = earlier.id"
            " WHERE earlier.dedup_key > e.alert_id || ':'"
            " AND earlier.dedup_key < e.alert_id || ';' AND earlier.id < e.id))"
        )

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, namespace: str, *, ttl: float = 5.0) -> PostgresStore:
        try:
            schema = schema_name(namespace)
        except ValueError as exc:
            raise StateError(str(exc)) from None
        conn = Connection(url, ttl=ttl)
        try:
            with conn.errors():
                migrate(conn.get(), schema)
        except psycopg.Error as exc:
            conn.close()
            raise StateError(
                f"state.url {conn.shown}: cannot prepare schema {schema}: {message(exc, url)}"
            ) from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, namespace, schema)

    def close(self) -> None:
        self._db.close()

    def checkpoint(self) -> None:
        """Nothing to do: PostgreSQL checkpoints by itself (kept for the service's loop)."""

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    # -- fencing -----------------------------------------------------------------------------

    def fence(self, holder: str, term: int, deadline: Callable[[], float]) -> None:
        """From now on every write must prove that `holder` still holds the lease at `term`."""
        self._fence = Fence(holder, term, deadline)

    def unfence(self) -> None:
        """No fence: operators' commands and a bridge that is alone write freely."""
        self._fence = None

    def stand_by(self, holder: str) -> None:
        """A standby (or a leader that lost its term) writes nothing and is handed nothing."""
        self._fence = Fence(holder, -1, lambda: float("-inf"))

    @property
    def term(self) -> int | None:
        return self._fence.term if self._fence else None

    def _check_deadline(self) -> None:
        fence = self._fence
        if fence is not None and fence.expired():
            raise FencedError(
                f"lease term {fence.term} is past its local deadline: this replica stopped"
                " writing before its lease could expire elsewhere"
            )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor]:
        self._check_deadline()
        with self._db.errors():
            conn = self._db.get()
            with conn.transaction(), conn.cursor() as cur:
                fence = self._fence
                if fence is not None:
                    cur.execute(self._q_fence, (fence.term, fence.holder))
                    if cur.fetchone() is None:
                        raise FencedError(
                            f"lease term {fence.term} is no longer ours in namespace"
                            f" {self.namespace}: another replica leads; nothing was written"
                        )
                yield cur

    def _read(self, sql: str, args: Any = None) -> list[tuple]:
        with self._db.errors():
            return self._db.get().execute(sql, args).fetchall()

    def _write(self, sql: str, args: Any = None) -> int:
        """One statement in a fenced transaction of its own; the rows it touched."""
        with self._tx() as cur:
            cur.execute(sql, args)
            return cur.rowcount

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._read(f"SELECT value FROM {self.schema}.meta WHERE key = %s", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            f"INSERT INTO {self.schema}.meta (key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

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
        """Store a page's outcome in ONE transaction; return the events that were new."""
        now = time.time() if now is None else now
        s = self.schema
        fresh: list[NewEvent] = []
        with self._tx() as cur:
            if events:
                # The first of repeated keys in the batch wins (as in the SQLite outbox); the
                # ids are taken from the sequence in batch order, so `due` keeps that order.
                seen: set[str] = set()
                unique = [
                    ev for ev in events
                    if not (ev.dedup_key in seen or seen.add(ev.dedup_key))  # type: ignore[func-returns-value]
                ]
                cur.execute(
                    f"SELECT nextval('{s}.events_id_seq') FROM generate_series(1, %s) AS g"
                    " ORDER BY g",
                    (len(unique),),
                )
                ids = [r[0] for r in cur.fetchall()]
                cur.execute(
                    f"INSERT INTO {s}.events (id, dedup_key, alert_id, kind, bp_status, app_key,"
                    " event_time, recorded_at, state)"
                    f" SELECT i, d, a, k, b, ak, t, %s, '{PENDING}' FROM unnest("
                    "%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
                    " %s::float8[]) AS u(i, d, a, k, b, ak, t) ORDER BY i"
                    " ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
                    (
                        now, ids, [e.dedup_key for e in unique], [e.alert_id for e in unique],
                        [e.kind for e in unique], [e.bp_status for e in unique],
                        [e.app_key for e in unique], [e.event_time for e in unique],
                    ),
                )
                inserted = {r[0] for r in cur.fetchall()}
                pairs = [(i, ev) for i, ev in zip(ids, unique, strict=True) if i in inserted]
                fresh = [ev for _, ev in pairs]
                if pairs:
                    # %b: payload arrays go in binary; as text every byte is hex-escaped and
                    # parsed again (a third of a page's commit time).
                    cur.execute(
                        f"INSERT INTO {s}.queue (id, payload)"
                        " SELECT * FROM unnest(%s::bigint[], %b::bytea[])",
                        ([i for i, _ in pairs], [ev.payload for _, ev in pairs]),
                    )
                    self._unanalyzed["queue"] += len(pairs)
                    self._unanalyzed["events"] += len(pairs)
            for rej in rejected:
                cur.execute(
                    f"INSERT INTO {s}.events (id, dedup_key, alert_id, kind, bp_status, app_key,"
                    " event_time, recorded_at, state, done_at)"
                    f" VALUES (nextval('{s}.events_id_seq'), %s, %s, %s, '', %s, %s, %s, %s, %s)"
                    " ON CONFLICT (dedup_key) DO NOTHING",
                    (rej.dedup_key, rej.alert_id, rej.kind, rej.app_key, rej.event_time, now,
                     DEAD, now),
                )
                if cur.rowcount:
                    cur.execute(
                        f"INSERT INTO {s}.dead_letters (dedup_key, alert_id, kind, app_key,"
                        " payload, original, reason, detail, event_time, dead_at)"
                        " VALUES (%s, %s, %s, %s, NULL, %s, %s, %s, %s, %s)",
                        (rej.dedup_key, rej.alert_id, rej.kind, rej.app_key, rej.original,
                         rej.reason, rej.detail, rej.event_time, now),
                    )
            if track:
                # One statement for the batch; a row given twice keeps the last, as row-by-row
                # upserts would (one INSERT may not update the same row twice).
                rows = list({(t.created_at, t.alert_id): t for t in track}.values())
                cur.execute(
                    f"INSERT INTO {s}.tracked (alert_id, created_at, status, transitions, alert,"
                    " event_count) SELECT * FROM unnest(%s::text[], %s::float8[], %s::text[],"
                    " %s::int[], %b::bytea[], %s::int[])"
                    " ON CONFLICT (created_at, alert_id) DO UPDATE SET"
                    " status = excluded.status, transitions = excluded.transitions,"
                    " alert = excluded.alert, event_count = excluded.event_count",
                    (
                        [t.alert_id for t in rows], [t.created_at for t in rows],
                        [t.status for t in rows], [t.transitions for t in rows],
                        [t.alert for t in rows], [t.event_count for t in rows],
                    ),
                )
            if untrack:
                cur.executemany(
                    f"DELETE FROM {s}.tracked WHERE created_at = %s AND alert_id = %s",
                    [(t.created_at, t.alert_id) for t in untrack],
                )
            if watermark is not None:
                cur.execute(
                    f"INSERT INTO {s}.meta AS m (key, value) VALUES (%s, %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                    " WHERE CAST(m.value AS DOUBLE PRECISION)"
                    " < CAST(excluded.value AS DOUBLE PRECISION)",
                    (watermark_key, repr(float(watermark))),
                )
        if self._unanalyzed["queue"] >= max(ANALYZE_AFTER_ROWS, self._analyzed_rows["queue"]):
            # The queue has doubled (a burst): its statistics, and those of `events` if it has
            # grown by a tenth meanwhile (during a burst it grows with the queue).
            events_grew = self._unanalyzed["events"] >= max(
                ANALYZE_AFTER_ROWS, EVENTS_ANALYZE_GROWTH * self._analyzed_rows["events"]
            )
            self._refresh_statistics(["queue", "events"] if events_grew else ["queue"])
        return fresh

    def _refresh_statistics(self, tables: Sequence[str]) -> None:
        """ANALYZE these tables now rather than when autovacuum next wakes (up to a minute
        later, after a burst): PostgreSQL's own advice after a bulk load. The queue whenever it
        has doubled (its size swings), `events` with it once it has grown by a tenth (it only
        grows, and ANALYZE samples up to 30,000 pages of it). A few times per burst: each
        ANALYZE runs on the event loop. Best effort: a failure only costs speed, so it is
        logged once and not tried again."""
        s = self.schema
        try:
            with self._db.errors():
                conn = self._db.get()
                conn.execute(f"ANALYZE {', '.join(f'{s}.{table}' for table in tables)}")
                for table in tables:
                    self._unanalyzed[table] = 0
                    # What ANALYZE just estimated: no count(*) over a long history.
                    self._analyzed_rows[table] = int(conn.execute(
                        "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                        (f"{s}.{table}",),
                    ).fetchone()[0])
        except (StateError, psycopg.Error) as exc:
            for table in tables:  # do not try again in this process
                self._unanalyzed[table] = 0
                self._analyzed_rows[table] = 1 << 62
            log.warning("state.analyze_failed", schema=s, error=str(exc)[:300])

    def _matching(self, select: str, table: str, column: str, values: Iterable[str]) -> list[tuple]:
        """`select` of the rows of `table` whose `column` is one of `values` (one array
        parameter, whatever their number); no round trip when there are none."""
        wanted = list(values)
        if not wanted:
            return []
        return self._read(
            f"SELECT {select} FROM {self.schema}.{table} WHERE {column} = ANY(%s)", (wanted,)
        )

    def known(self, dedup_keys: Iterable[str]) -> set[str]:
        return {key for (key,) in self._matching("dedup_key", "events", "dedup_key", dedup_keys)}

    # -- tracked alerts ----------------------------------------------------------------------

    def app_keys_of(self, dedup_keys: Iterable[str]) -> dict[str, str]:
        return dict(self._matching("dedup_key, app_key", "events", "dedup_key", dedup_keys))

    def tracked(self, *, created_after: float | None = None) -> list[TrackedAlert]:
        sql = (
            "SELECT alert_id, created_at, status, transitions, alert, event_count"
            f" FROM {self.schema}.tracked"
        )
        args: tuple = ()
        if created_after is not None:
            sql += " WHERE created_at >= %s"
            args = (created_after,)
        return [TrackedAlert(*row) for row in self._read(sql + " ORDER BY created_at", args)]

    def expire_tracked(self, older_than: float) -> int:
        return self._write(
            f"DELETE FROM {self.schema}.tracked WHERE created_at < %s", (older_than,)
        )

    def tracked_count(self) -> int:
        return self._read(f"SELECT count(*) FROM {self.schema}.tracked")[0][0]

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
        """Queued events whose next attempt is due, oldest first, minus those in flight; an
        event waits while an earlier event of the same alert is undelivered. `kinds` restricts
        the result to those event kinds; without it write-backs (WRITEBACK_KINDS) are left out.

        A fenced store past its local lease deadline answers nothing: the sender asks here
        before each batch, so a leader that could not renew stops sending in time.
        """
        fence = self._fence
        if fence is not None and fence.expired():
            return []
        sql = self._q_due
        args: dict[str, object] = {"now": now, "limit": limit}
        if app_key is not None:
            sql += " AND e.app_key = %(app_key)s"
            args["app_key"] = app_key
        if kinds is not None:
            sql += " AND e.kind = ANY(%(kinds)s)"
            args["kinds"] = list(kinds)
        else:
            sql += " AND e.kind <> ALL(%(kinds)s)"
            args["kinds"] = list(WRITEBACK_KINDS)
        excluded = sorted(set(exclude))
        if excluded:
            sql += " AND q.id <> ALL(%(excluded)s)"
            args["excluded"] = excluded
        rows = self._read(sql + " ORDER BY q.id LIMIT %(limit)s", args)
        return [PendingEvent(*row) for row in rows]

    def next_due_at(
        self, *, after: float | None = None, kinds: Sequence[str] | None = None
    ) -> float | None:
        """The earliest next attempt time of a queued event not in a job (only later than
        `after`); of `kinds` only, else of all but write-backs."""
        wanted = "= ANY(%s)" if kinds is not None else "<> ALL(%s)"
        sql = (
            f"SELECT min(q.next_attempt_at) FROM {self.schema}.queue AS q"
            f" JOIN {self.schema}.events AS e ON e.id = q.id"
            f" WHERE q.job_id IS NULL AND e.kind {wanted}"
        )
        args: list[object] = [list(kinds) if kinds is not None else list(WRITEBACK_KINDS)]
        if after is not None:
            sql += " AND q.next_attempt_at > %s"
            args.append(after)
        return self._read(sql, args)[0][0]

    def mark_sent(self, ids: Sequence[int], *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        ids = list(ids)
        s = self.schema
        with self._tx() as cur:
            cur.execute(
                f"UPDATE {s}.events SET state = '{SENT}', done_at = %s"
                f" WHERE id = ANY(%s) AND state IN ('{PENDING}', '{IN_JOB}')",
                (now, ids),
            )
            cur.execute(f"DELETE FROM {s}.queue WHERE id = ANY(%s)", (ids,))

    def mark_retry(
        self, ids: Sequence[int], *, next_attempt_at: float, error: str, now: float | None = None,
        count_attempt: bool = True,
    ) -> None:
        now = time.time() if now is None else now
        ids = list(ids)
        counted = int(count_attempt)
        s = self.schema
        with self._tx() as cur:
            cur.execute(
                f"UPDATE {s}.queue SET attempts = attempts + %s, next_attempt_at = %s,"
                " last_error = %s, first_failed_at = CASE WHEN %s THEN"
                " coalesce(first_failed_at, %s) ELSE first_failed_at END, job_id = NULL"
                " WHERE id = ANY(%s)",
                (counted, next_attempt_at, error[:2000], bool(counted), now, ids),
            )
            cur.execute(
                f"UPDATE {s}.events SET state = '{PENDING}'"
                f" WHERE id = ANY(%s) AND state = '{IN_JOB}'",
                (ids,),
            )

    def dead_letter(
        self, ids: Sequence[int], *, reason: str, detail: str, now: float | None = None
    ) -> int:
        now = time.time() if now is None else now
        s = self.schema
        with self._tx() as cur:
            cur.execute(
                "SELECT q.id, e.dedup_key, e.alert_id, e.kind, e.app_key, q.payload,"
                f" e.event_time, q.attempts FROM {s}.queue AS q JOIN {s}.events AS e"
                " ON e.id = q.id WHERE q.id = ANY(%s)",
                (list(ids),),
            )
            by_id = {r[0]: r for r in cur.fetchall()}
            rows = [by_id[i] for i in ids if i in by_id]
            for r in rows:
                cur.execute(
                    f"INSERT INTO {s}.dead_letters (dedup_key, alert_id, kind, app_key, payload,"
                    " original, reason, detail, event_time, dead_at, attempts)"
                    " VALUES (%s, %s, %s, %s, %s, NULL, %s, %s, %s, %s, %s)",
                    (*r[1:6], reason, detail[:8000], r[6], now, r[7]),
                )
            moved = [r[0] for r in rows]
            if moved:
                cur.execute(f"DELETE FROM {s}.queue WHERE id = ANY(%s)", (moved,))
                cur.execute(
                    f"UPDATE {s}.events SET state = '{DEAD}', done_at = %s WHERE id = ANY(%s)",
                    (now, moved),
                )
        return len(moved)

    # -- jobs --------------------------------------------------------------------------------

    def add_job(
        self, url: str, ids: Sequence[int], *, deadline: float, now: float | None = None
    ) -> int:
        now = time.time() if now is None else now
        ids = list(ids)
        s = self.schema
        with self._tx() as cur:
            cur.execute(
                f"INSERT INTO {s}.jobs (url, created_at, deadline) VALUES (%s, %s, %s)"
                " RETURNING id",
                (url, now, deadline),
            )
            job_id = cur.fetchone()[0]
            cur.execute(
                f"UPDATE {s}.queue SET job_id = %s WHERE id = ANY(%s) AND job_id IS NULL",
                (job_id, ids),
            )
            cur.execute(
                f"UPDATE {s}.events SET state = '{IN_JOB}'"
                f" WHERE id = ANY(%s) AND state = '{PENDING}'",
                (ids,),
            )
        return int(job_id)

    def jobs(self) -> list[Job]:
        rows = self._read(
            f"SELECT id, url, created_at, deadline, polls FROM {self.schema}.jobs ORDER BY id"
        )
        return [Job(*r) for r in rows]

    def job_events(self, job_id: int) -> list[tuple[int, str, float]]:
        s = self.schema
        return self._read(
            f"SELECT q.id, e.bp_status, e.event_time FROM {s}.queue AS q JOIN {s}.events AS e"
            " ON e.id = q.id WHERE q.job_id = %s ORDER BY q.id",
            (job_id,),
        )

    def note_job_poll(self, job_id: int, status: str) -> None:
        self._write(
            f"UPDATE {self.schema}.jobs SET polls = polls + 1, last_status = %s WHERE id = %s",
            (status, job_id),
        )

    def finish_job(self, job_id: int, *, done: bool, error: str = "", retry_at: float = 0.0,
                   now: float | None = None) -> list[int]:
        now = time.time() if now is None else now
        s = self.schema
        with self._tx() as cur:
            cur.execute(f"SELECT id FROM {s}.queue WHERE job_id = %s ORDER BY id", (job_id,))
            ids = [r[0] for r in cur.fetchall()]
            if done:
                cur.execute(
                    f"UPDATE {s}.events SET state = '{SENT}', done_at = %s WHERE id = ANY(%s)",
                    (now, ids),
                )
                cur.execute(f"DELETE FROM {s}.queue WHERE job_id = %s", (job_id,))
            else:
                cur.execute(
                    f"UPDATE {s}.queue SET job_id = NULL, attempts = attempts + 1,"
                    " next_attempt_at = %s, last_error = %s, first_failed_at ="
                    " coalesce(first_failed_at, %s) WHERE job_id = %s",
                    (retry_at, error[:2000], now, job_id),
                )
                cur.execute(
                    f"UPDATE {s}.events SET state = '{PENDING}' WHERE id = ANY(%s)", (ids,)
                )
            cur.execute(f"DELETE FROM {s}.jobs WHERE id = %s", (job_id,))
        return ids

    # -- dead letters ------------------------------------------------------------------------

    _DL_COLUMNS = (
        "id, dedup_key, alert_id, kind, app_key, payload, original, reason, detail,"
        " event_time, dead_at, attempts"
    )

    def dead_letters(self, *, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        rows = self._read(
            f"SELECT {self._DL_COLUMNS} FROM {self.schema}.dead_letters ORDER BY id"
            " LIMIT %s OFFSET %s",
            (limit, offset),
        )
        return [DeadLetter(*r) for r in rows]

    def dead_letter_by_id(self, dl_id: int) -> DeadLetter | None:
        rows = self._read(
            f"SELECT {self._DL_COLUMNS} FROM {self.schema}.dead_letters WHERE id = %s", (dl_id,)
        )
        return DeadLetter(*rows[0]) if rows else None

    def replay_dead_letters(self, ids: Sequence[int] | None) -> tuple[list[int], list[str]]:
        replayed: list[int] = []
        problems: list[str] = []
        s = self.schema
        with self._tx() as cur:
            if ids is None:
                cur.execute(f"SELECT id FROM {s}.dead_letters ORDER BY id")
                ids = [r[0] for r in cur.fetchall()]
            for dl_id in ids:
                cur.execute(
                    f"SELECT dedup_key, payload FROM {s}.dead_letters WHERE id = %s", (dl_id,)
                )
                row = cur.fetchone()
                if (problem := replay_refusal(dl_id, row)) is not None:
                    problems.append(problem)
                    continue
                dedup_key, payload = row
                cur.execute(
                    f"UPDATE {s}.events SET state = '{PENDING}', done_at = NULL"
                    " WHERE dedup_key = %s RETURNING id",
                    (dedup_key,),
                )
                event = cur.fetchone()
                if event is not None:
                    cur.execute(
                        f"INSERT INTO {s}.queue (id, payload) VALUES (%s, %s)"
                        " ON CONFLICT (id) DO UPDATE SET payload = excluded.payload,"
                        " job_id = NULL, attempts = 0, next_attempt_at = 0,"
                        " first_failed_at = NULL, last_error = NULL",
                        (event[0], payload),
                    )
                cur.execute(f"DELETE FROM {s}.dead_letters WHERE id = %s", (dl_id,))
                replayed.append(dl_id)
        return replayed, problems

    def purge_dead_letters(self, *, older_than: float | None = None) -> int:
        if older_than is None:
            return self._write(f"DELETE FROM {self.schema}.dead_letters")
        return self._write(
            f"DELETE FROM {self.schema}.dead_letters WHERE dead_at < %s", (older_than,)
        )

    # -- gauges and reports ------------------------------------------------------------------

    def tracked_statuses(self, alert_ids: Iterable[str]) -> dict[str, str]:
        """The Panther status the status sync last saw for each of these tracked alerts."""
        return dict(self._matching("alert_id, status", "tracked", "alert_id", set(alert_ids)))

    def backlog(self) -> dict[str, int]:
        s = self.schema
        queued, in_jobs, dead, jobs = self._read(
            f"SELECT (SELECT count(*) FROM {s}.queue),"
            f" (SELECT count(*) FROM {s}.queue WHERE job_id IS NOT NULL),"
            f" (SELECT count(*) FROM {s}.dead_letters), (SELECT count(*) FROM {s}.jobs)"
        )[0]
        return {
            str(PENDING): queued - in_jobs, str(IN_JOB): in_jobs, "dead_letters": dead, "jobs": jobs
        }

    def counts(self) -> dict[str, int]:
        s = self.schema
        out = {str(state): 0 for state in (PENDING, IN_JOB, SENT, DEAD)}
        for state, n in self._read(f"SELECT state, count(*) FROM {s}.events GROUP BY state"):
            out[state] = n
        dead, jobs = self._read(
            f"SELECT (SELECT count(*) FROM {s}.dead_letters), (SELECT count(*) FROM {s}.jobs)"
        )[0]
        out["dead_letters"] = dead
        out["jobs"] = jobs
        return out
