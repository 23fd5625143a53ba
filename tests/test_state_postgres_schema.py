"""bridge.state.postgres_schema: a PostgreSQL schema per namespace, migrated once, under a lock."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from bridge.errors import StateError
from bridge.state.postgres_schema import SCHEMA_VERSION, lock_key, migrate, schema_name

TABLES = {"meta", "events", "queue", "jobs", "dead_letters", "tracked", "lease", "schema_version"}


@pytest.fixture
def conn(postgres_url: str, pg_namespace: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres_url, autocommit=True) as c:
        yield c
        c.execute(f"DROP SCHEMA IF EXISTS {schema_name(pg_namespace)} CASCADE")


def tables(conn: psycopg.Connection, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    ).fetchall()
    return {r[0] for r in rows}


class TestNames:
    """A namespace is a safe identifier; its schema and lock id follow from it."""

    @pytest.mark.parametrize("namespace", ["prod", "a", "tenant_2", "x" * 40])
    def test_valid(self, namespace: str) -> None:
        assert schema_name(namespace) == f"bridge_{namespace}"

    @pytest.mark.parametrize(
        "namespace", ["", "Prod", "2tenant", "_x", "a-b", "a;drop", "x" * 41, "ünï"]
    )
    def test_refused_with_the_rule(self, namespace: str) -> None:
        with pytest.raises(ValueError, match="1-40 lowercase letters, digits or _"):
            schema_name(namespace)

    def test_lock_key_is_stable_distinct_and_a_bigint(self) -> None:
        one, two = lock_key("bridge_one"), lock_key("bridge_two")
        assert one == lock_key("bridge_one") and one != two
        assert all(-(2**63) <= k < 2**63 for k in (one, two))


class TestMigrate:
    """The first start creates every table; later starts find the version and change nothing."""

    def test_creates_then_finds_the_schema(self, conn: psycopg.Connection, pg_namespace: str):
        schema = schema_name(pg_namespace)
        assert migrate(conn, schema) == 0
        assert tables(conn, schema) == TABLES
        assert conn.execute(f"SELECT holder, term FROM {schema}.lease").fetchall() == [(None, 0)]
        assert migrate(conn, schema) == SCHEMA_VERSION
        versions = conn.execute(f"SELECT version FROM {schema}.schema_version").fetchall()
        assert versions == [(SCHEMA_VERSION,)]
        assert conn.execute(f"SELECT count(*) FROM {schema}.lease").fetchone() == (1,)

    def test_newer_schema_is_refused(self, conn: psycopg.Connection, pg_namespace: str) -> None:
        schema = schema_name(pg_namespace)
        migrate(conn, schema)
        conn.execute(f"INSERT INTO {schema}.schema_version VALUES (%s)", (SCHEMA_VERSION + 1,))
        with pytest.raises(StateError, match="newer than this bridge understands"):
            migrate(conn, schema)

    def test_dedup_keys_sort_bytewise(self, conn: psycopg.Connection, pg_namespace: str) -> None:
        """An alert's events are found by the byte range "<id>:" .. "<id>;" of dedup_key."""
        schema = schema_name(pg_namespace)
        migrate(conn, schema)
        for i, key in enumerate(["a:alert", "a:status_change:1:ok", "a;", "A:alert", "a_b:alert"]):
            conn.execute(
                f"INSERT INTO {schema}.events VALUES (%s, %s, 'a', 'alert', 'ok', 'k', 0, 0,"
                " 'sent', NULL)", (i, key),
            )
        rows = conn.execute(
            f"SELECT dedup_key FROM {schema}.events WHERE dedup_key >= 'a:' AND dedup_key < 'a;'"
            " ORDER BY dedup_key"
        ).fetchall()
        assert [r[0] for r in rows] == ["a:alert", "a:status_change:1:ok"]

    def test_namespaces_are_apart(
        self, conn: psycopg.Connection, pg_namespace: str
    ) -> None:
        one, two = schema_name(pg_namespace), schema_name(pg_namespace + "_2")
        try:
            migrate(conn, one)
            migrate(conn, two)
            conn.execute(f"INSERT INTO {one}.meta VALUES ('watermark', '1')")
            assert conn.execute(f"SELECT count(*) FROM {two}.meta").fetchone() == (0,)
        finally:
            conn.execute(f"DROP SCHEMA IF EXISTS {two} CASCADE")
