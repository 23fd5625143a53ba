"""What the state stores and hands back, whichever backend holds it (SQLite or PostgreSQL).

The event states are the life of one event: `pending` (queued, maybe waiting out a backoff),
`job` (in a BigPanda job that has not finished), then `sent` or `dead` (a dead letter).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "DEAD", "IN_JOB", "PENDING", "SENT", "UNDELIVERED", "WRITEBACK_KINDS", "DeadLetter",
    "EventState", "Job", "NewEvent", "PendingEvent", "Rejected", "TrackedAlert",
]


class EventState(enum.StrEnum):
    """An event's state, as stored in `events.state` and counted by `counts()`."""

    PENDING = "pending"
    IN_JOB = "job"
    SENT = "sent"
    DEAD = "dead"


PENDING = EventState.PENDING
IN_JOB = EventState.IN_JOB
SENT = EventState.SENT
DEAD = EventState.DEAD
UNDELIVERED = (PENDING, IN_JOB)

# Write-backs of the two-way sync (bridge.writeback) share the queue with the BigPanda events but
# are delivered to Panther by their own loop: `due()` / `next_due_at()` leave them out unless asked.
WRITEBACK_KINDS = ("writeback_status", "writeback_comment")


# The three records below are built once per alert (or per due row) on the hot path: named
# tuples, which cost a fraction of a frozen dataclass to construct.


class NewEvent(NamedTuple):
    """An event to record: its dedup key decides whether it is new."""

    dedup_key: str
    alert_id: str
    kind: str
    bp_status: str
    app_key: str
    payload: bytes
    event_time: float


@dataclass(frozen=True, slots=True)
class Rejected:
    """Something that could not become an event (malformed alert, ...): straight to dead letters."""

    dedup_key: str
    alert_id: str
    kind: str
    reason: str
    detail: str
    original: bytes
    event_time: float
    app_key: str = ""


class TrackedAlert(NamedTuple):
    """A forwarded Panther alert whose status changes the bridge still follows.

    `alert` is the alert as first forwarded (routing decides on it), as JSON: the fields the
    status sync reads (id, type, status, severity, createdAt, eventCount, detection), or the
    whole alert in rows written by older bridges; `event_count` is the
    `eventCount` the bridge last forwarded (None: unknown, a row from before the column).
    """

    alert_id: str
    created_at: float
    status: str
    transitions: int
    alert: bytes
    event_count: int | None = None


class PendingEvent(NamedTuple):
    """An event due for delivery, with the frozen payload that is sent byte-identical every time."""

    id: int
    alert_id: str
    kind: str
    bp_status: str
    app_key: str
    payload: bytes
    event_time: float
    attempts: int
    first_failed_at: float | None


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    url: str
    created_at: float
    deadline: float
    polls: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    dedup_key: str
    alert_id: str
    kind: str
    app_key: str
    payload: bytes | None
    original: bytes | None
    reason: str
    detail: str
    event_time: float
    dead_at: float
    attempts: int
