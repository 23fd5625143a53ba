"""bridge.state.postgres_connection: a PostgreSQL connection that fails within about half a lease
and whose errors name the server but never the password."""

from __future__ import annotations

import socket

import psycopg
import pytest

from bridge.errors import StateError
from bridge.state.postgres_connection import Connection, connect_kwargs, message, redact_url

SECRET = "s3cr3t-pw-0123"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestRedactUrl:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            (f"postgresql://bridge:{SECRET}@db.internal:5432/bridge",
             "postgresql://bridge:***@db.internal:5432/bridge"),
            (f"postgresql://bridge:{SECRET}@with@at@db/bridge", "postgresql://bridge:***@db/bridge"),
            ("postgresql://bridge@db/bridge", "postgresql://bridge@db/bridge"),
            ("postgresql:///bridge?host=/run/postgresql", "postgresql:///bridge?host=/run/postgresql"),
        ],
    )
    def test_the_password_is_replaced(self, url: str, shown: str) -> None:
        assert redact_url(url) == shown

    def test_an_unparseable_url_is_not_echoed(self) -> None:
        assert redact_url(f"postgresql://u:{SECRET}@[::1") == "<unparseable state.url>"


class TestBounds:
    def test_every_wait_is_about_half_the_lease(self) -> None:
        kwargs = connect_kwargs(10.0)
        assert kwargs["tcp_user_timeout"] == 5000
        assert "statement_timeout=5000" in kwargs["options"]
        assert "lock_timeout=5000" in kwargs["options"]
        assert kwargs["connect_timeout"] == 5
        assert kwargs["keepalives"] == 1

    def test_short_leases_keep_a_floor(self) -> None:
        kwargs = connect_kwargs(0.2)
        assert kwargs["tcp_user_timeout"] == 500 and kwargs["connect_timeout"] == 2
        assert "statement_timeout=500" in kwargs["options"]


class TestErrors:
    def test_a_server_that_is_not_there_says_so_without_the_password(self) -> None:
        url = f"postgresql://bridge:{SECRET}@127.0.0.1:{closed_port()}/bridge"
        with pytest.raises(StateError) as caught:
            Connection(url, ttl=5.0).get()
        text = str(caught.value)
        assert "cannot connect to PostgreSQL" in text and "127.0.0.1" in text
        assert "bridge:***@" in text and SECRET not in text
        assert "BRIDGE_STATE_PASSWORD" in text

    def test_a_failed_call_drops_the_connection_and_the_next_reconnects(
        self, postgres_url: str
    ) -> None:
        conn = Connection(postgres_url, ttl=5.0)
        first = conn.get()
        with pytest.raises(StateError, match="the PostgreSQL connection failed"):
            with conn.errors():
                raise psycopg.OperationalError("server closed the connection unexpectedly")
        assert first.closed
        second = conn.get()
        assert second is not first and second.execute("SELECT 1").fetchone() == (1,)
        conn.close()
        assert second.closed

    def test_a_statement_is_cut_at_the_bound(self, postgres_url: str) -> None:
        conn = Connection(postgres_url, ttl=1.0)  # statement_timeout 500 ms
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.get().execute("SELECT pg_sleep(30)")
        conn.close()

    def test_message_keeps_the_first_line_without_the_password(self) -> None:
        exc = psycopg.OperationalError(
            f'connection failed: password authentication failed for "{SECRET}"\nDETAIL: more'
        )
        text = message(exc, f"postgresql://bridge:{SECRET}@db/bridge")
        assert text == 'connection failed: password authentication failed for "***"'
        assert len(message(psycopg.OperationalError("x" * 1000), "postgresql://db/b")) == 300
        assert message(psycopg.OperationalError(""), "postgresql://db/b") == "OperationalError"
