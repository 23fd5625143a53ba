"""Tolerant models of what Panther returns.

Only `id`, `type` and `status` are required (shared/api/PANTHER.md); anything else may be missing or
null, and fields outside the published spec appear in real payloads, so unknown fields are ignored,
never rejected. Timestamps come with up to nanoseconds and any offset: parsed by `bridge.timeutil`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SkipValidation
from pydantic.alias_generators import to_camel

from bridge.timeutil import parse_timestamp

Timestamp = Annotated[datetime | None, BeforeValidator(parse_timestamp)]


# Text fields: numbers where text is expected are kept as text rather than rejected
# (`coerce_numbers_to_str` on the models, done inside pydantic-core: no Python call per field).
Text = str | None


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        coerce_numbers_to_str=True,
    )


class DetectionRef(_Model):
    """`alert.detection`: which rule, scheduled rule or policy fired."""

    id: Text = None
    type: Text = None


class Actor(_Model):
    """`assignee` / `updatedBy`: a user, API token or the system."""

    id: Text = None
    type: Text = None


class Alert(_Model):
    """One Panther alert as listed by `GET /alerts` or read by `GET /alerts/{id}`."""

    id: Annotated[str, Field(min_length=1)]
    type: str
    status: str
    severity: Text = None
    title: Text = None
    description: Text = None
    reference: Text = None
    runbook: Text = None
    created_at: Timestamp = None
    first_event_occurred_at: Timestamp = None
    last_received_event_at: Timestamp = None
    event_count: int | None = None
    detection: DetectionRef | None = None
    context: Any = None
    assignee: Actor | None = None
    updated_by: Actor | None = None
    system_error: dict[str, Any] | None = None
    context_tags: list[Any] | None = None
    quality: Text = None


class AlertPage(_Model):
    """One page of `GET /alerts`: the raw alert objects and the cursor of the next page.

    `results` stays raw (dicts) so a single malformed alert can be set aside with its original
    body instead of failing the whole page.
    """

    # Not validated again: the client has checked that each is a JSON object (a copy of every
    # alert dict per page, for nothing, otherwise).
    results: SkipValidation[list[dict[str, Any]]]
    next: str | None = None
