"""Durations: `30s` / `5m` / `2h` / `7d` or seconds, each field with a sane range it states."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    PlainSerializer,
)
from pydantic.fields import FieldInfo

SECOND = 1.0
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# Ordered largest first: format_duration walks it in this order, and `ms` must be tried before `m`.
_UNITS: dict[str, float] = {"d": DAY, "h": HOUR, "m": MINUTE, "s": SECOND, "ms": SECOND / 1000}
_NUMBER = r"\d+(?:\.\d+)?"
# Plain seconds may be written in scientific notation (`1e3`): YAML 1.1 reads `1e12` as a string.
_SECONDS = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+")


def parse_duration(value: object) -> float:
    """Seconds from `30`, `30.5`, `"30"`, `"30s"`, `"5m"`, `"2h"`, `"7d"`, `"1m30s"` or `"250ms"`.

    Units are lowercase only: `M` could be read as months. Sign and range are the caller's
    business (see `Duration`), so this stays a pure parser.
    """
    problem = f"{value!r} is not a duration: use seconds or 30s/5m/2h/7d"
    if isinstance(value, bool):  # YAML `yes` is a bool, and bool is an int: refuse it explicitly
        raise ValueError(problem)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(problem)
        return float(value)
    if not isinstance(value, str):
        raise ValueError(problem)
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    if not _DURATION.fullmatch(text):
        raise ValueError(problem)
    # `ms` divides rather than multiplies by 0.001 so that 250ms is exactly 0.25.
    return sum(
        float(number) / 1000 if unit == "ms" else float(number) * _UNITS[unit]
        for number, unit in _DURATION_PART.findall(text)
    )


def format_duration(seconds: float) -> str:
    """The compact form of a duration (`90.0` -> `"1m30s"`) that `parse_duration` reads back.

    Falls back to plain seconds when the value is not a whole number of milliseconds, so that
    rendering never loses precision.
    """
    millis = round(seconds * 1000)
    if millis < 0 or not math.isclose(millis, seconds * 1000, abs_tol=1e-6):
        return repr(seconds)
    if millis == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1000)
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


def _show_seconds(seconds: float) -> str:
    """`1e+20 seconds` for absurd values, `90d` style for the rest."""
    if abs(seconds) >= 1000 * DAY:
        return f"{seconds:.3g} seconds (about {seconds / (365 * DAY):,.0f} years)"
    return format_duration(seconds) if seconds >= 0 else f"{seconds!r} seconds"


@dataclass(frozen=True)
class DurationRange:
    """The sane values of one duration field, stated in every error about it.

    A duration beyond its range is refused when the config is loaded rather than failing later
    (a lookback of 1e12 seconds is a date before year 1; a poll interval of 1e20 never polls).
    """

    low: float
    high: float
    zero_ok: bool = False

    def describe(self) -> str:
        if self.zero_ok:
            return f"0s to {format_duration(self.high)}"
        low = "more than 0s" if self.low <= 0 else f"at least {format_duration(self.low)}"
        return f"{low}, at most {format_duration(self.high)}"

    def __call__(self, value: object) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"{exc} (sane range: {self.describe()})") from None
        too_low = seconds < self.low or (seconds == 0 and not self.zero_ok) or seconds < 0
        if too_low or seconds > self.high:
            raise ValueError(
                f"{_show_seconds(seconds)} is out of range (sane range: {self.describe()})"
            )
        return seconds


def duration_range(field: FieldInfo) -> DurationRange | None:
    """The range of a duration field (README table, doctor), or None if it is no duration."""
    for meta in field.metadata:
        func = getattr(meta, "func", None)
        if isinstance(func, DurationRange):
            return func
    return None


def DurationIn(low: float, high: float, *, zero_ok: bool = False) -> Any:
    """A duration in seconds within `[low, high]` (zero only if `zero_ok`), compact in JSON."""
    return Annotated[float, BeforeValidator(DurationRange(low, high, zero_ok)), _DurationSerializer]


# Durations are floats in Python, compact strings when dumped as JSON (render_effective uses that).
_DurationSerializer = PlainSerializer(format_duration, return_type=str, when_used="json")
# A field declared with plain `Duration` still gets an upper bound: a year is longer than any
# interval, timeout or retention the bridge has a use for.
Duration = Annotated[float, BeforeValidator(DurationRange(0, 365 * DAY)), _DurationSerializer]
"""A duration in seconds, more than zero and at most a year."""
NonNegativeDuration = Annotated[
    float, BeforeValidator(DurationRange(0, 365 * DAY, zero_ok=True)), _DurationSerializer
]
"""A duration in seconds where zero is meaningful (e.g. no overlap), at most a year."""
