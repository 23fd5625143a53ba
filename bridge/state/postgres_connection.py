"""One connection to the PostgreSQL state, bounded so that a dead server or a cut network fails
a call within about half a lease instead of hanging the event loop; its errors never carry the
password. Shared by the store (postgres.py) and the lease (lease.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bridge.errors import StateError


def redact_url(url: str) -> str:
    """`url` with its password (if any) replaced by ***, for logs and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable state.url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def connect_kwargs(ttl: float) -> dict[str, Any]:
    """libpq settings that make a dead server or a cut connection fail within about ttl/2."""
    half_ms = max(500, int(ttl * 500))
    return {
        "connect_timeout": max(2, int(ttl / 2)),
        "tcp_user_timeout": half_ms,
        "keepalives": 1,
        "keepalives_idle": 1,
        "keepalives_interval": 1,
        "keepalives_count": 2,
        "options": f"-c statement_timeout={half_ms} -c lock_timeout={half_ms}",
        "application_name": "panther-bigpanda-bridge",
    }


class Connection:
    """One lazily (re)opened autocommit connection; errors become StateError without secrets."""

    def __init__(self, url: str, *, ttl: float) -> None:
        self.url = url
        self.shown = redact_url(url)
        self._kwargs = connect_kwargs(ttl)
        self._conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            with contextlib.suppress(Exception):
                if conn is not None:
                    conn.close()
            self._conn = None
            try:
                conn = psycopg.connect(self.url, autocommit=True, **self._kwargs)
            except psycopg.Error as exc:
                raise StateError(
                    f"state.url {self.shown}: cannot connect to PostgreSQL:"
                    f" {message(exc, self.url)}; check the server is up and the URL, user and"
                    " password (BRIDGE_STATE_PASSWORD or PGPASSWORD) are right"
                ) from None
            self._conn = conn
        return conn

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            self.drop()
            raise StateError(
                f"state.url {self.shown}: the PostgreSQL connection failed:"
                f" {message(exc, self.url)}"
            ) from None

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self.drop()


def message(exc: BaseException, url: str) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    password = urlsplit(url).password
    if password:
        text = text.replace(password, "***")
    return text[:300]
