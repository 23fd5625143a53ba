"""Structured logs: one canonical event per meaningful thing, JSON in containers, pretty on a TTY.

Secrets never reach the output: a processor replaces every registered secret value wherever it
appears (even inside an exception text) and blanks keys that are secrets by name.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
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


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog for the process; `fmt` auto means JSON unless `stream` is a terminal."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrubber,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=stream)
