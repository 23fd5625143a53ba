"""The bridge's durable state: the embedded SQLite file (default) or PostgreSQL (`state.url`).

`open_state` returns either backend behind one interface: the SQLite `Outbox` (sqlite.py, its
layout in sqlite_schema.py) or the `PostgresStore` (postgres.py, postgres_schema.py), both storing
and returning the records of records.py; what they do alike is written once, in common.py.
PostgreSQL is what lets several replicas share the state, one of them leading (lease.py,
bridge/leadership.py).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from bridge.errors import StateError

if TYPE_CHECKING:
    from bridge.config import Settings, StateSettings
    from bridge.state.lease import Lease


def default_namespace(panther_api_url: str, bigpanda_app_key: str) -> str:
    """A short, stable name for one bridge configuration: its Panther tenant and app key."""
    digest = hashlib.sha256(f"{panther_api_url.rstrip('/')}\n{bigpanda_app_key}".encode())
    return "t" + digest.hexdigest()[:12]


def namespace_of(settings: Settings) -> str:
    return settings.state.namespace or default_namespace(
        settings.panther.api_url, settings.bigpanda.app_key
    )


def state_url(state: StateSettings) -> str | None:
    return state.url.get_secret_value() if state.url is not None else None


def open_state(state: StateSettings, *, namespace: str, exclusive: bool = True) -> Any:
    """Open the configured state: an `Outbox` (SQLite) or a `PostgresStore`."""
    url = state_url(state)
    if url is None:
        from bridge.state.sqlite import Outbox

        return Outbox.open(state.path, exclusive=exclusive)
    try:
        from bridge.state.postgres import PostgresStore
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        raise StateError(
            f"state.url needs the PostgreSQL driver ({exc}); install psycopg[binary]"
        ) from None
    return PostgresStore.open(url, namespace, ttl=state.lease_ttl)


def open_lease(state: StateSettings, *, namespace: str) -> Lease | None:
    """The namespace's lease when the state is shared (PostgreSQL), else None (always leader)."""
    url = state_url(state)
    if url is None:
        return None
    from bridge.state.lease import Lease

    return Lease(url, namespace, ttl=state.lease_ttl)


def shown_state(state: StateSettings) -> str:
    """What logs and messages may show of where the state is (never a password)."""
    url = state_url(state)
    if url is None:
        return str(state.path)
    from bridge.state.postgres_connection import redact_url

    return redact_url(url)
