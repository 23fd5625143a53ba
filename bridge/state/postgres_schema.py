"""The PostgreSQL layout of the bridge's state, versioned, and the migrations between versions.

Each namespace (one bridge configuration, one Panther tenant) lives in a PostgreSQL schema of its
own, `bridge_<namespace>`, so tenants sharing one database never see each other's rows or lease.
Migrations run at start in one transaction under `pg_advisory_xact_lock`: two replicas starting
together take turns, and the second finds the work done. The lock is transaction-scoped, so it
also holds behind PgBouncer's transaction pooling.
"""

from __future__ import annotations

import re
import zlib

SCHEMA_VERSION = 1

NAMESPACE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# Version -> statements that bring the previous version up to it. `{s}` is the schema name.
# dedup keys use the "C" collation: an alert's events are found by the byte range
# "<alert id>:" .. "<alert id>;" of the unique index, which only holds in byte order.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE {s}.meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE SEQUENCE {s}.events_id_seq""",
        """CREATE TABLE {s}.events (
            id          BIGINT PRIMARY KEY,
            dedup_key   TEXT COLLATE "C" NOT NULL UNIQUE,
            alert_id    TEXT NOT NULL,
            kind        TEXT NOT NULL,
            bp_status   TEXT NOT NULL,
            app_key     TEXT NOT NULL,
            event_time  DOUBLE PRECISION NOT NULL,
            recorded_at DOUBLE PRECISION NOT NULL,
            state       TEXT NOT NULL,
            done_at     DOUBLE PRECISION
        )""",
        """CREATE TABLE {s}.queue (
            id              BIGINT PRIMARY KEY,
            payload         BYTEA NOT NULL,
            job_id          BIGINT,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0,
            first_failed_at DOUBLE PRECISION,
            last_error      TEXT
        )""",
        """CREATE INDEX queue_waiting ON {s}.queue (id, next_attempt_at) WHERE job_id IS NULL""",
        """CREATE INDEX queue_retry ON {s}.queue (next_attempt_at) WHERE job_id IS NULL""",
        """CREATE INDEX queue_job ON {s}.queue (job_id) WHERE job_id IS NOT NULL""",
        """CREATE TABLE {s}.jobs (
            id          BIGSERIAL PRIMARY KEY,
            url         TEXT NOT NULL,
            created_at  DOUBLE PRECISION NOT NULL,
            deadline    DOUBLE PRECISION NOT NULL,
            polls       INTEGER NOT NULL DEFAULT 0,
            last_status TEXT
        )""",
        """CREATE TABLE {s}.dead_letters (
            id         BIGSERIAL PRIMARY KEY,
            dedup_key  TEXT NOT NULL,
            alert_id   TEXT NOT NULL,
            kind       TEXT NOT NULL,
            app_key    TEXT NOT NULL,
            payload    BYTEA,
            original   BYTEA,
            reason     TEXT NOT NULL,
            detail     TEXT NOT NULL DEFAULT '',
            event_time DOUBLE PRECISION NOT NULL,
            dead_at    DOUBLE PRECISION NOT NULL,
            attempts   INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE {s}.tracked (
            alert_id    TEXT NOT NULL,
            created_at  DOUBLE PRECISION NOT NULL,
            status      TEXT NOT NULL,
            transitions INTEGER NOT NULL DEFAULT 0,
            alert       BYTEA NOT NULL,
            event_count INTEGER,
            PRIMARY KEY (created_at, alert_id)
        )""",
        # One row: who leads this namespace, until when (the database's clock), and the term,
        # which grows by one on every grant and fences every state write of an older leader.
        """CREATE TABLE {s}.lease (
            id          INTEGER PRIMARY KEY CHECK (id = 1),
            holder      TEXT,
            term        BIGINT NOT NULL DEFAULT 0,
            expires_at  TIMESTAMPTZ NOT NULL DEFAULT 'epoch',
            acquired_at TIMESTAMPTZ,
            renewed_at  TIMESTAMPTZ
        )""",
        """INSERT INTO {s}.lease (id) VALUES (1)""",
    ],
}


def schema_name(namespace: str) -> str:
    """The PostgreSQL schema that holds `namespace` (validated: a safe identifier)."""
    if not NAMESPACE_PATTERN.match(namespace):
        raise ValueError(
            f"state.namespace {namespace!r}: use 1-40 lowercase letters, digits or _,"
            " starting with a letter"
        )
    return f"bridge_{namespace}"


def lock_key(schema: str) -> int:
    """The advisory lock id that serializes migrations of one schema (a signed 64-bit int)."""
    return (0x62726467 << 32) | zlib.crc32(schema.encode())


def migrate(conn, schema: str) -> int:  # conn: psycopg.Connection (autocommit)
    """Create or upgrade `schema` to SCHEMA_VERSION under the lock; return the version found."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema),))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_version (version INTEGER NOT NULL)"
        )
        row = conn.execute(f"SELECT max(version) FROM {schema}.schema_version").fetchone()
        found = int(row[0]) if row and row[0] is not None else 0
        if found > SCHEMA_VERSION:
            from bridge.errors import StateError

            raise StateError(
                f"state.url schema {schema} is at version {found}, newer than this bridge"
                f" understands ({SCHEMA_VERSION}); run the newer bridge version"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement.format(s=schema))
            conn.execute(f"INSERT INTO {schema}.schema_version (version) VALUES (%s)", (version,))
    return found
