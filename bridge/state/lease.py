"""Leadership of one namespace: a lease row in PostgreSQL with a holder, an expiry and a term.

The expiry is the database's clock (`now()`), so replicas' clocks never matter. A grant goes
only to a lease that has expired (or was released) and always raises the term by one; a renew
only extends a lease this holder still holds at its term. The term fences state writes (see
bridge/state/postgres.py). The lease uses a connection of its own, so a renew never waits behind
the store's work, and its calls run in a worker thread (see bridge/leadership.py).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime

from bridge.state.postgres_connection import Connection
from bridge.state.postgres_schema import schema_name


def holder_id() -> str:
    """This replica's name in the lease row: host, process and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class LeaseInfo:
    """The lease row as it stands, read for `bridge status`."""

    holder: str | None
    term: int
    expires_at: datetime
    acquired_at: datetime | None
    renewed_at: datetime | None
    valid: bool  # not expired by the database's clock
    remaining: float  # seconds until expiry by the database's clock (negative: expired)


class Lease:
    """The lease of one namespace, held (or wanted) by `holder`."""

    def __init__(self, url: str, namespace: str, *, ttl: float, holder: str | None = None):
        self.namespace = namespace
        self.schema = schema_name(namespace)
        self.ttl = float(ttl)
        self.holder = holder or holder_id()
        self._url = url
        self._db = Connection(url, ttl=ttl)

    def close(self) -> None:
        self._db.close()

    def drop_connection(self) -> None:
        """Abandon the connection (a call on it is stuck): the next call opens a new one, and
        the stuck call keeps the old one to itself until it fails."""
        self._db = Connection(self._url, ttl=self.ttl)

    def _one(self, sql: str, args: tuple) -> tuple | None:
        db = self._db
        with db.errors():
            cur = db.get().execute(sql, args)
            return cur.fetchone() if cur.description is not None else None

    def try_acquire(self) -> int | None:
        """Take the lease if it is free or expired; the new term, or None (someone holds it)."""
        row = self._one(
            f"UPDATE {self.schema}.lease SET holder = %s, term = term + 1,"
            " expires_at = now() + make_interval(secs => %s), acquired_at = now(),"
            " renewed_at = now() WHERE id = 1 AND (holder IS NULL OR expires_at <= now())"
            " RETURNING term",
            (self.holder, self.ttl),
        )
        return int(row[0]) if row else None

    def renew(self, term: int) -> bool:
        """Extend our lease at `term` by ttl from now; False when it is no longer ours."""
        row = self._one(
            f"UPDATE {self.schema}.lease SET expires_at = now() + make_interval(secs => %s),"
            " renewed_at = now() WHERE id = 1 AND holder = %s AND term = %s"
            " AND expires_at > now() RETURNING term",
            (self.ttl, self.holder, term),
        )
        return row is not None

    def release(self, term: int) -> bool:
        """Give the lease up at once (graceful stop): a standby can take it on its next try."""
        row = self._one(
            f"UPDATE {self.schema}.lease SET holder = NULL, expires_at = now()"
            " WHERE id = 1 AND holder = %s AND term = %s RETURNING term",
            (self.holder, term),
        )
        return row is not None

    def expire_now(self) -> None:
        """Mark whatever lease stands as expired (tests, and operators after a hard stop)."""
        self._one(f"UPDATE {self.schema}.lease SET expires_at = now() WHERE id = 1", ())

    def info(self) -> LeaseInfo:
        row = self._one(
            "SELECT holder, term, expires_at, acquired_at, renewed_at, expires_at > now(),"
            " extract(epoch FROM expires_at - now())::float8"
            f" FROM {self.schema}.lease WHERE id = 1",
            (),
        )
        assert row is not None  # the migration inserts the one row
        remaining = row[6] if row[6] is not None else float("-inf")
        return LeaseInfo(row[0], int(row[1]), row[2], row[3], row[4], bool(row[5]), remaining)
