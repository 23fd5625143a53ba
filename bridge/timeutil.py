"""Timestamps in every shape Panther produces, and the epoch seconds BigPanda wants.

Panther writes RFC3339 with anything from no fraction to nanoseconds (`...49.841715953Z`), with `Z`
or an offset (shared/api/PANTHER.md); BigPanda wants an int of epoch *seconds* and misreads
milliseconds (shared/api/BIGPANDA.md). Everything time-shaped goes through here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Epoch numbers above this are milliseconds (year 5138 in seconds is far enough away).
_MS_THRESHOLD = 100_000_000_000
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_timestamp(value: object) -> datetime | None:
    """Aware UTC datetime from RFC3339 text (any fraction, any offset) or epoch s/ms; else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= _MS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if text.lstrip("-").replace(".", "", 1).isdigit():
        try:
            return parse_timestamp(float(text) if "." in text else int(text))
        except ValueError:
            return None
    try:
        # The fast path (sub-microsecond): Python 3.11 reads `Z` and cuts fractions beyond
        # microseconds (never rounds, so a timestamp never moves into the next second).
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = _parse_lenient(text)
        if parsed is None:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_lenient(text: str) -> datetime | None:
    """RFC3339 shapes `fromisoformat` refuses (lowercase `z`, odd fraction lengths)."""
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(r"\1", text, count=1)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def epoch_seconds(value: object) -> int | None:
    """Whole epoch seconds (floored) for anything `parse_timestamp` accepts; else None."""
    parsed = parse_timestamp(value)
    if parsed is None:
        return None
    return int(parsed.timestamp() // 1)


def format_rfc3339(moment: datetime) -> str:
    """RFC3339 in UTC with microseconds and `Z`, the form we send to Panther's query parameters."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> datetime:
    return datetime.now(UTC)
