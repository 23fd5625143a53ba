"""Where the SQLite state used to live: its names, kept for scripts that import them here.

The state is bridge/state/: the records (records.py), the SQLite file (sqlite.py, its layout in
sqlite_schema.py, its errors in sqlite_errors.py) and PostgreSQL (postgres.py).
"""

from bridge.state.records import *  # noqa: F403 - the names scripts import from here
from bridge.state.records import __all__ as _records
from bridge.state.sqlite import AUTOCHECKPOINT_PAGES, SCHEMA_VERSION, Outbox, state_error

__all__ = [*_records, "AUTOCHECKPOINT_PAGES", "SCHEMA_VERSION", "Outbox", "state_error"]
