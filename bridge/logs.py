"""Structured logs: one canonical event per meaningful thing, JSON in containers, pretty on a TTY.

Bursts of identical warnings and errors are collapsed (`BurstLimiter`), so an outage logs its
first failures and then a `suppressed` count rather than one line per failed request.

Secrets never reach the output: a processor replaces every registered secret value wherever it
appears (even inside an exception text) and blanks keys that are secrets by name.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "**********"
_SECRET_KEYS = frozenset({"authorization", "x-api-key", "api_token", "token", "password"})
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class SecretScrubber:
    """A structlog processor that removes known secret values from every event."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def register(self, secrets: Iterable[str | None]) -> None:
        # Very short values would blank innocent text; real tokens are long.
        self._secrets.update(s for s in secrets if s and len(s) >= 6)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {
                k: REDACTED if str(k).lower() in _SECRET_KEYS else self.scrub(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        return value

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
        for key in list(event):
            if key.lower() in _SECRET_KEYS:
                event[key] = REDACTED
            else:
                event[key] = self.scrub(event[key])
        return event


scrubber = SecretScrubber()


class _StreamLoggerFactory:
    """Print loggers on `stream`; for the default stderr, whatever sys.stderr is at log time.

    Resolving late keeps logging working when the stream object is swapped (test capture,
    a demo run inside another program) instead of writing to a closed file.
    """

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def __call__(self, *_args: Any) -> structlog.PrintLogger:
        return structlog.PrintLogger(self._stream or sys.stderr)


class BurstLimiter:
    """A structlog processor that collapses bursts of identical warnings and errors.

    An outage makes every batch and every poll fail the same way; thousands of identical lines
    hide the first one, which is the useful one. Per (logger, level, event) key, the first `burst`
    events of each `window` seconds pass; the rest are dropped and counted, and the first event of
    the key after the window carries `suppressed=N` (how many were dropped since the last one
    shown). Debug and info events always pass: they are not what floods in an outage.
    """

    LIMITED_LEVELS = frozenset({"warning", "error", "critical", "exception"})

    def __init__(
        self, *, window: float = 10.0, burst: int = 3, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.burst = burst
        self._clock = clock
        # key -> [window start, events passed in the window, events suppressed since last shown]
        self._seen: dict[tuple[str, str, str], list[float]] = {}

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> Any:
        level = str(event.get("level") or name).lower()
        if level not in self.LIMITED_LEVELS:
            return event
        key = (
            str(event.get("logger") or getattr(logger, "name", "")),
            level,
            str(event.get("event")),
        )
        now = self._clock()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window:
            suppressed = int(state[2]) if state else 0
            self._seen[key] = [now, 1, 0]
            if len(self._seen) > 10_000:  # event names are bounded; this only guards a bug
                self._seen = {key: self._seen[key]}
            if suppressed:
                event["suppressed"] = suppressed
            return event
        if state[1] < self.burst:
            state[1] += 1
            return event
        state[2] += 1
        raise structlog.DropEvent


def configure(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    *,
    limiter: BurstLimiter | None = None,
) -> None:
    """Set up structlog for the process; `fmt` auto means JSON unless `stream` is a terminal."""
    shown_on = stream or sys.stderr
    limiter = limiter or BurstLimiter()
    if fmt == "auto":
        fmt = "console" if shown_on.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=shown_on.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            limiter,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrubber,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=_StreamLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=shown_on)
