"""Copy a SQLite state file into a PostgreSQL namespace (`bridge state migrate`).

Everything that decides what is sent or not carries over: every event ever recorded (its dedup
key, state and ids), the queue with its frozen payloads and retry state, open BigPanda jobs, dead
letters, tracked alerts and the meta rows (watermarks, sweep points). Ids are kept, and the
PostgreSQL sequences continue after them. The target namespace must be empty: a second run, or a
run into a namespace a bridge already uses, is refused rather than merged.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import StateError
from bridge.state.postgres import PostgresStore

_TABLES = {
    "meta": ("key", "value"),
    "events": ("id", "dedup_key", "alert_id", "kind", "bp_status", "app_key", "event_time",
               "recorded_at", "state", "done_at"),
    "queue": ("id", "payload", "job_id", "attempts", "next_attempt_at", "first_failed_at",
              "last_error"),
    "jobs": ("id", "url", "created_at", "deadline", "polls", "last_status"),
    "dead_letters": ("id", "dedup_key", "alert_id", "kind", "app_key", "payload", "original",
                     "reason", "detail", "event_time", "dead_at", "attempts"),
    "tracked": ("alert_id", "created_at", "status", "transitions", "alert", "event_count"),
}
_SEQUENCES = {
    "events": "events_id_seq", "jobs": "jobs_id_seq", "dead_letters": "dead_letters_id_seq",
}


@dataclass(frozen=True)
class Copied:
    rows: dict[str, int]


def migrate_sqlite(source: str | Path, url: str, namespace: str, *, batch: int = 5000) -> Copied:
    """Copy the state file at `source` into `namespace` at `url`, in one transaction."""
    source = Path(source)
    if not source.is_file():
        raise StateError(f"--from {source}: no such state file")
    from bridge.state.sqlite import Outbox

    # Opening through the outbox first upgrades an old file to the current layout.
    Outbox.open(source, exclusive=True).close()
    lite = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    store = PostgresStore.open(url, namespace)
    counts: dict[str, int] = {}
    try:
        s = store.schema
        with store._tx() as cur:
            for table in _TABLES:
                cur.execute(f"SELECT count(*) FROM {s}.{table}")
                if cur.fetchone()[0]:
                    raise StateError(
                        f"--to namespace {namespace}: table {table} is not empty; migrate into a"
                        " fresh namespace (state.namespace) and never into a running bridge's"
                    )
            for table, columns in _TABLES.items():
                names = ", ".join(columns)
                marks = ", ".join(["%s"] * len(columns))
                rows = lite.execute(f"SELECT {names} FROM {table}")
                n = 0
                while chunk := rows.fetchmany(batch):
                    cur.executemany(f"INSERT INTO {s}.{table} ({names}) VALUES ({marks})", chunk)
                    n += len(chunk)
                counts[table] = n
            for table, seq in _SEQUENCES.items():
                cur.execute(
                    f"SELECT setval('{s}.{seq}', greatest((SELECT coalesce(max(id), 0)"
                    f" FROM {s}.{table}), 1), (SELECT count(*) > 0 FROM {s}.{table}))"
                )
            cur.execute(
                f"INSERT INTO {s}.meta (key, value) VALUES ('migrated_from', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(source),),
            )
    finally:
        lite.close()
        store.close()
    return Copied(counts)
