"""Field types shared by the sections: URLs, secrets, CA bundles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    SecretStr,
)
from pydantic_core import PydanticCustomError

ENV_PREFIX = "BRIDGE_"
ENV_DELIMITER = "__"
REDACTED = "**********"  # what pydantic prints for a SecretStr; also what render_effective writes




def _http_url(value: str) -> str:
    """Accept only absolute http(s) URLs, without the trailing slash we later join paths onto."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL: write it like https://api.example.com")
    return value.strip().rstrip("/")


def _blank_to_none(value: object) -> object:
    """`BRIDGE_PANTHER__CONSOLE_URL=` (set but empty) means "no console links", not a bad URL."""
    return None if isinstance(value, str) and not value.strip() else value


def _non_empty(value: SecretStr | str) -> SecretStr | str:
    """Refuse empty values and the redaction placeholder copied back from `check-config` output."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not text.strip():
        raise PydanticCustomError("empty_value", "value is empty")
    if text == REDACTED:
        raise PydanticCustomError("redacted_value", "value is the redaction placeholder")
    return value


def _readable_file(value: str | None) -> str | None:
    """A CA bundle that cannot be read would fail every request: say so when loading instead."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"{value!r} is not a file: give the path of a PEM CA bundle, or null")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{value!r} is not readable by this user")
    return str(path)


def _lowercase(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Secret = Annotated[SecretStr, AfterValidator(_non_empty)]
NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]
CaBundle = Annotated[str | None, BeforeValidator(_blank_to_none), AfterValidator(_readable_file)]
"""An optional PEM file of CA certificates; None means the system's default trust store."""
