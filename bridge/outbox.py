"""Where the SQLite state used to live: its names, kept for scripts that import them here.

The state is bridge/state/: the records (records.py), the SQLite file (sqlite.py, its layout in
sqlite_schema.py, its errors in sqlite_errors.py) and PostgreSQL (postgres.py).
"""

from bridge.state.records import (
    DEAD,
    IN_JOB,
    PENDING,
    SENT,
    WRITEBACK_KINDS,
    DeadLetter,
    EventState,
    Job,
    NewEvent,
    PendingEvent,
    Rejected,
    TrackedAlert,
)
from bridge.state.sqlite import AUTOCHECKPOINT_PAGES, SCHEMA_VERSION, Outbox, state_error

__all__ = [
    "AUTOCHECKPOINT_PAGES", "DEAD", "IN_JOB", "PENDING", "SCHEMA_VERSION", "SENT",
    "WRITEBACK_KINDS", "DeadLetter", "EventState", "Job", "NewEvent", "Outbox", "PendingEvent",
    "Rejected", "TrackedAlert", "state_error",
]
