"""The bridge's configuration: one YAML file, overridable key by key from the environment.

Priority, highest first: keyword arguments > `BRIDGE_<SECTION>__<KEY>` environment variables >
the YAML file > defaults. `${VAR}` and `${VAR:-default}` in YAML string values expand from the
environment, so the file can be committed without its secrets.

`load_config` never lets a pydantic or YAML exception escape: every problem becomes one line of
a `ConfigError`, `key.path: what is wrong and how to fix it`, and all problems are reported at
once so an operator fixes the file in one pass. Secret values never appear in those lines nor in
any repr (they are `SecretStr`).

Adding a section (mapping, routes, catalog, filters, ...) is one model below and one field on
`Settings`: unknown-key checks, env overrides, error messages and rendering follow from the models.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from bridge.errors import ConfigError
from bridge.mapping import compile_source, valid_tag_name

__all__ = [
    "BigPandaSettings",
    "CatalogSettings",
    "FilterSettings",
    "LoggingSettings",
    "MappingSettings",
    "PantherSettings",
    "RetrySettings",
    "RouteSettings",
    "RoutingSettings",
    "ServerSettings",
    "Settings",
    "StateSettings",
    "config_warnings",
    "format_duration",
    "iter_fields",
    "load_config",
    "parse_duration",
    "render_effective",
]

ENV_PREFIX = "BRIDGE_"
ENV_DELIMITER = "__"
REDACTED = "**********"  # what pydantic prints for a SecretStr; also what render_effective writes

# ---------------------------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------------------------

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

# ---------------------------------------------------------------------------------------------
# Other field types
# ---------------------------------------------------------------------------------------------


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

# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


class _Section(BaseModel):
    """A config section: unknown keys are typos, so they are errors rather than silently ignored."""

    # hide_input_in_errors: a ValidationError's text would otherwise quote secrets verbatim.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


AlertType = Literal["ALERT", "DETECTION_ERROR", "SYSTEM_ERROR"]
Severity = Annotated[
    Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"],
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
]


class FilterSettings(_Section):
    """Which Panther alerts are forwarded; empty lists mean "all"."""

    alert_types: list[AlertType] = Field(
        default_factory=lambda: ["ALERT"],
        min_length=1,
        description="alert listings to read: ALERT, DETECTION_ERROR, SYSTEM_ERROR",
    )
    severities: list[Severity] = Field(
        default_factory=list, description="severities to forward; empty: all"
    )
    detection_ids: list[str] = Field(
        default_factory=list, description="detection id globs to forward; empty: all"
    )
    exclude_detection_ids: list[str] = Field(
        default_factory=list, description="detection id globs never forwarded"
    )
    log_types: list[str] = Field(
        default_factory=list, description="log types to forward (e.g. AWS.CloudTrail); empty: all"
    )


# A union rather than the bare model, so that `filters` is one documented key of `panther` (see
# iter_fields) while still validating as a model; null or an empty `filters:` means the defaults.
FilterField = Annotated[
    FilterSettings | None, BeforeValidator(lambda v: {} if v is None else v)
]


class PantherSettings(_Section):
    """Where and how to read alerts from Panther's REST API."""

    api_url: HttpUrl = Field(
        description="Panther REST API base URL",
        examples=["https://api.acme.runpanther.net"],
    )
    api_token: Secret = Field(
        description="Panther API token (secret)", examples=["${PANTHER_API_TOKEN}"]
    )
    console_url: Annotated[HttpUrl | None, BeforeValidator(_blank_to_none)] = Field(
        None, description="Panther console URL, for alert links; null for none"
    )
    poll_interval: DurationIn(0, HOUR) = Field(
        30 * SECOND, description="how often to list new alerts"
    )
    initial_lookback: DurationIn(0, 365 * DAY) = Field(
        1 * HOUR, description="how far back the very first poll reads, before any watermark"
    )
    overlap: DurationIn(0, DAY, zero_ok=True) = Field(
        2 * MINUTE, description="re-read this much before the watermark to catch late alerts"
    )
    page_size: int = Field(50, ge=1, le=50, description="alerts per page (Panther's maximum: 50)")
    status_sync_interval: DurationIn(0, DAY) = Field(
        1 * MINUTE, description="how often to check tracked alerts for status changes"
    )
    track_for: DurationIn(0, 90 * DAY) = Field(
        7 * DAY, description="how long after creation an alert's status is followed"
    )
    timeout: DurationIn(0, 5 * MINUTE) = Field(
        10 * SECOND, description="timeout of one Panther HTTP request"
    )
    ca_bundle: CaBundle = Field(
        None, description="PEM file of CAs to trust for Panther (private CA); null: system CAs"
    )
    late_sweep_interval: DurationIn(0, DAY) = Field(
        5 * MINUTE,
        description="longest gap between late sweeps of the overlap (they run after polls "
        "whenever their budget allows)",
    )
    sweep_requests_per_minute: float = Field(
        12.0, ge=0, le=6000,
        description="Panther requests a minute the late sweep may always spend",
    )
    sweep_share: float = Field(
        0.25, ge=0, le=1,
        description="beyond sweep_requests_per_minute, the largest share of Panther requests "
        "sweeping may take",
    )
    max_requests_per_second: float = Field(
        25.0, ge=0, le=1000,
        description="average Panther requests a second, all loops together; 0: no limit",
    )
    request_burst: int = Field(
        500, ge=1, le=100_000,
        description="Panther requests allowed at once above the average (a catch-up's pages)",
    )
    backfill_concurrency: int = Field(
        8, ge=1, le=32, description="time slices a backfill pages concurrently"
    )
    filters: FilterField = Field(
        default_factory=lambda: FilterSettings(),
        description="which alerts to forward (alert types, severities, detections, log types)",
    )


class BigPandaSettings(_Section):
    """Where and how to send alerts to BigPanda."""

    api_url: HttpUrl = Field(
        "https://api.bigpanda.io",
        description="BigPanda API base URL (EU: https://eu-api.bigpanda.io)",
    )
    api_token: Secret = Field(
        description="BigPanda org bearer token (secret)", examples=["${BIGPANDA_API_TOKEN}"]
    )
    app_key: NonEmptyStr = Field(
        description="BigPanda integration app key", examples=["${BIGPANDA_APP_KEY}"]
    )
    batch_size: int = Field(100, ge=1, le=1000, description="alerts per BigPanda request")
    max_in_flight: int = Field(2, ge=1, le=32, description="concurrent BigPanda requests")
    timeout: DurationIn(0, 5 * MINUTE) = Field(
        15 * SECOND, description="timeout of one BigPanda HTTP request"
    )
    job_poll_interval: DurationIn(0, 10 * MINUTE) = Field(
        5 * SECOND, description="how often to poll an accepted (202) job"
    )
    job_timeout: DurationIn(0, 7 * DAY) = Field(
        10 * MINUTE, description="give up on a job after this long and resend its events"
    )
    ca_bundle: CaBundle = Field(
        None, description="PEM file of CAs to trust for BigPanda (private CA); null: system CAs"
    )


class StateSettings(_Section):
    """Where the bridge keeps its durable state."""

    path: str = Field(
        "./data/bridge.db", description="SQLite state file, relative to the working directory"
    )
    url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user:${BRIDGE_STATE_PASSWORD}@host/db) instead"
        " of the SQLite file, for replicas sharing one state (secret)",
        examples=["postgresql://bridge:${BRIDGE_STATE_PASSWORD}@postgres:5432/bridge"],
    )
    namespace: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="name of this bridge's state and lease in PostgreSQL (default: derived from"
        " panther.api_url and bigpanda.app_key)",
    )
    lease_ttl: Duration = Field(
        5 * SECOND, ge=1.0, le=300.0,
        description="PostgreSQL leadership lease; a standby takes over within it (renewed every"
        " third of it)",
    )

    @model_validator(mode="after")
    def _one_backend(self) -> StateSettings:
        if self.url is not None:
            if "path" in self.model_fields_set:
                raise ValueError(
                    "state.path and state.url are exclusive: keep state.path for the SQLite file"
                    " or state.url for PostgreSQL, not both"
                )
            scheme = urlsplit(self.url.get_secret_value()).scheme
            if scheme not in ("postgresql", "postgres"):
                raise ValueError(
                    "state.url must be a postgresql:// URL"
                    " (postgresql://user:${BRIDGE_STATE_PASSWORD}@host:5432/database)"
                )
        return self


class ServerSettings(_Section):
    """The health and metrics HTTP server."""

    host: str = Field("0.0.0.0", description="address to listen on")  # all interfaces: a container
    port: int = Field(9108, ge=0, le=65535, description="port to listen on (0: any free port)")
    shutdown_grace: DurationIn(0, 10 * MINUTE) = Field(
        20 * SECOND, description="on SIGTERM, how long in-flight work may take to finish"
    )


class LoggingSettings(_Section):
    """How the bridge logs."""

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lowercase)] = (
        Field("info", description="lowest level logged")
    )
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="json, console, or auto: json unless stderr is a terminal"
    )


class CatalogSettings(_Section):
    """The cache of Panther detections and saved queries that enriches alerts."""

    enabled: bool = Field(True, description="enrich alerts from Panther's detections and queries")
    refresh_interval: DurationIn(0, 7 * DAY) = Field(
        15 * MINUTE, description="how often the whole catalog is listed again"
    )
    miss_ttl: DurationIn(0, 7 * DAY) = Field(
        10 * MINUTE, description="how long a detection Panther does not know (404) is remembered"
    )
    fetch_timeout: DurationIn(0, MINUTE) = Field(
        2 * SECOND, description="longest wait for one detection fetched on a cache miss"
    )


class RetrySettings(_Section):
    """Backoff for failed HTTP requests (full jitter between the bounds)."""

    initial_backoff: DurationIn(0, HOUR) = Field(
        1 * SECOND, description="first wait before a retry"
    )
    max_backoff: DurationIn(0, DAY) = Field(
        5 * MINUTE, description="longest wait between two retries"
    )
    give_up_after: DurationIn(0, 30 * DAY) = Field(
        24 * HOUR, description="dead-letter an event still failing after this long"
    )
    max_retry_after: DurationIn(0, DAY) = Field(
        5 * MINUTE, description="cap on a server's Retry-After, so a bad header cannot stall us"
    )


BigPandaStatus = Literal["ok", "critical", "warning", "unknown", "acknowledged"]
PantherStatus = Annotated[
    Literal["OPEN", "TRIAGED", "RESOLVED", "CLOSED"],
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
]
# OPEN is mapped by severity (mapping.severity_map), so it has no entry in the status map.
ChangedStatus = Annotated[
    Literal["TRIAGED", "RESOLVED", "CLOSED"],
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
]
TagValue = str | int | list[str | int]


def _template_source(value: str | list[str]) -> str | list[str]:
    """Compile once here so a bad template is a config error naming its key (bridge.mapping)."""
    compile_source(value)  # raises TemplateError, a ValueError: `key: message`
    return value


def _tag_names(tags: dict[str, Any]) -> dict[str, Any]:
    for name in tags:
        if not valid_tag_name(name):
            raise ValueError(
                f"tag name {name!r} is not one BigPanda indexes: start with a letter, use only "
                "lowercase a-z 0-9 _ -, at most 64 characters, and not a reserved key "
                "(status, host, check, description, timestamp, ...)"
            )
    return tags


TemplateSource = Annotated[str | list[str], AfterValidator(_template_source)]
"""A template (`panther-{id}`), or a list of them tried in order (see bridge.mapping)."""
StaticTags = Annotated[dict[str, TagValue], AfterValidator(_tag_names)]


def _one_or_many(value: object) -> object:
    """`severity: HIGH` means `severity: [HIGH]`."""
    return [value] if isinstance(value, str) else value


class MappingSettings(_Section):
    """How a Panther alert becomes a BigPanda alert (templates: see bridge/mapping.py)."""

    status_map: dict[ChangedStatus, BigPandaStatus] = Field(
        default_factory=lambda: {"TRIAGED": "acknowledged", "RESOLVED": "ok", "CLOSED": "ok"},
        description="BigPanda status per Panther status other than OPEN",
    )
    severity_map: dict[Severity, BigPandaStatus] = Field(
        default_factory=lambda: {
            "CRITICAL": "critical",
            "HIGH": "critical",
            "MEDIUM": "warning",
            "LOW": "warning",
            "INFO": "warning",
        },
        description="BigPanda status of an OPEN alert, per Panther severity",
    )
    severity_default: BigPandaStatus = Field(
        "warning", description="BigPanda status of an OPEN alert whose severity is not mapped"
    )
    primary: TemplateSource = Field(
        "{detection.id|type}", description="template of the primary property (host)"
    )
    secondary: TemplateSource = Field(
        "{detection.name|title|detection.id|type}",
        description="template of the secondary property (check)",
    )
    incident_identifier: TemplateSource = Field(
        "panther-{id}", description="template of incident_identifier: stable per Panther alert"
    )
    description: TemplateSource = Field(
        default_factory=lambda: [
            "{title} — {detection.description|description}",
            "{title}",
            "Panther {type} alert {id}",
        ],
        description="template(s) of the description (cut at 2048 characters)",
    )
    tags: StaticTags = Field(default_factory=dict, description="static tags added to every alert")
    context_include: list[str] = Field(
        default_factory=lambda: ["*"],
        description="globs of context keys (dotted paths) sent as context_* tags; [] for none",
    )
    context_exclude: list[str] = Field(
        default_factory=list, description="globs of context keys never sent"
    )
    forward_event_count: bool = Field(
        False, description="send an event when only an alert's eventCount changed"
    )


# Known alert types (Panther's sub-type enum, plus POLICY_ERROR): a typo must not silently never
# match. Globs (`*_ERROR`) are accepted as they are.
_ALERT_TYPES = (
    "RULE",
    "RULE_ERROR",
    "SCHEDULED_RULE",
    "SCHEDULED_RULE_ERROR",
    "POLICY",
    "POLICY_ERROR",
    "SYSTEM_ERROR",
    "CORRELATION_RULE",
    "CORRELATION_RULE_ERROR",
)


def _alert_type(value: str) -> str:
    value = value.upper()
    if value not in _ALERT_TYPES and not any(c in value for c in "*?["):
        raise ValueError(f"{value!r} is not an alert type: use one of {', '.join(_ALERT_TYPES)}")
    return value


class RouteSettings(_Section):
    """One routing rule: every condition given must hold (a list means any of its values)."""

    name: str | None = Field(None, description="shown in logs; default: routes[<index>]")
    severity: Annotated[list[Severity], BeforeValidator(_one_or_many)] = Field(
        default_factory=list, description="Panther severities"
    )
    alert_type: Annotated[
        list[Annotated[str, AfterValidator(_alert_type)]], BeforeValidator(_one_or_many)
    ] = Field(default_factory=list, description="alert types (RULE, POLICY, ...) or globs")
    detection_id: Annotated[list[str], BeforeValidator(_one_or_many)] = Field(
        default_factory=list, description="detection id globs (AWS.*)"
    )
    log_type: Annotated[list[str], BeforeValidator(_one_or_many)] = Field(
        default_factory=list, description="log type or resource type globs, from the catalog"
    )
    status: Annotated[list[PantherStatus], BeforeValidator(_one_or_many)] = Field(
        default_factory=list, description="Panther statuses"
    )
    app_key: Annotated[str | None, BeforeValidator(_blank_to_none)] = Field(
        None, description="BigPanda app key; default: bigpanda.app_key"
    )
    tags: StaticTags = Field(default_factory=dict, description="tags added by this route")
    drop: bool = Field(False, description="drop matching alerts instead of sending them")

    @model_validator(mode="after")
    def _drop_sends_nothing(self) -> RouteSettings:
        if self.drop and (self.app_key or self.tags):
            raise ValueError("a route with drop: true sends nothing: remove its app_key and tags")
        return self


class RoutingSettings(_Section):
    """Which BigPanda integration (app key) each alert goes to."""

    unmatched: Literal["default", "drop"] = Field(
        "default", description="alerts no route matches: default (bigpanda.app_key) or drop"
    )
    routes: list[RouteSettings] = Field(
        default_factory=list, description="routing rules, first match wins"
    )


class SyncBackSettings(_Section):
    """Two-way sync: what people do to incidents in BigPanda flows back to the Panther alerts."""

    enabled: bool = Field(False, description="write BigPanda resolutions and comments to Panther")
    api_key: Annotated[Secret | None, BeforeValidator(_blank_to_none)] = Field(
        None, description="BigPanda User API key for the incident APIs (secret)",
        examples=["${BIGPANDA_USER_API_KEY}"],
    )
    environment_id: Annotated[str | None, BeforeValidator(_blank_to_none)] = Field(
        None, description="BigPanda environment whose incidents are followed"
    )
    interval: Duration = Field(30 * SECOND, description="how often changed incidents are read")
    resolve_as: Annotated[
        Literal["RESOLVED", "CLOSED", "comment"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) and v.lower() != "comment"
                        else v.lower() if isinstance(v, str) else v),
    ] = Field("RESOLVED", description="Panther status for a resolved incident, or comment only")
    comments: bool = Field(True, description="incident comments become Panther alert comments")
    acknowledge_to_triaged: bool = Field(
        False, description="an incident acknowledged in BigPanda moves OPEN alerts to TRIAGED"
    )
    ignore_user_ids: list[str] = Field(
        default_factory=list,
        description="BigPanda user ids whose actions are the bridge's own (never written back)",
    )
    rate_limit: float = Field(
        5.0, ge=0, description="BigPanda incident API requests per second (0: no limit)"
    )

    @model_validator(mode="after")
    def _enabled_needs_credentials(self) -> SyncBackSettings:
        if self.enabled and self.api_key is None:
            raise ValueError(
                "sync_back.api_key is required when sync_back.enabled is true: set it to a "
                "BigPanda User API key, e.g. ${BIGPANDA_USER_API_KEY}"
            )
        if self.enabled and not self.environment_id:
            raise ValueError(
                "sync_back.environment_id is required when sync_back.enabled is true: give the "
                "id of the BigPanda environment to follow (GET /resources/v2.0/environments)"
            )
        return self


# ---------------------------------------------------------------------------------------------
# Root
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loading:
    """The sources of one `load_config` call, handed to `settings_customise_sources`."""

    env: PydanticBaseSettingsSource
    file: PydanticBaseSettingsSource


# `settings_customise_sources` is a classmethod with a fixed signature, so the per-call sources
# (which file, which environ) travel in a context variable rather than in class state.
_loading: ContextVar[_Loading | None] = ContextVar("bridge_config_loading", default=None)


class Settings(BaseSettings):
    """The whole configuration, one attribute per section."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        env_parse_none_str="null",
        extra="forbid",
        hide_input_in_errors=True,
    )

    panther: PantherSettings = Field(description="reading alerts from Panther")
    bigpanda: BigPandaSettings = Field(description="sending alerts to BigPanda")
    state: StateSettings = Field(default_factory=StateSettings, description="durable state")
    server: ServerSettings = Field(default_factory=ServerSettings, description="health/metrics")
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="logging")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="retry backoff")
    catalog: CatalogSettings = Field(
        default_factory=CatalogSettings, description="detection and saved query enrichment"
    )
    mapping: MappingSettings = Field(
        default_factory=MappingSettings, description="Panther alert -> BigPanda alert"
    )
    routing: RoutingSettings = Field(
        default_factory=RoutingSettings, description="which app key each alert goes to"
    )
    sync_back: SyncBackSettings = Field(
        default_factory=SyncBackSettings, description="BigPanda -> Panther two-way sync (opt-in)"
    )

    @model_validator(mode="before")
    @classmethod
    def _absent_sections_are_empty(cls, data: Any) -> Any:
        """An absent or empty (`panther:`) section is `{}`, so errors name its required keys."""
        if isinstance(data, dict):
            for name in _section_names(cls):
                if data.get(name) is None:
                    data[name] = {}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Kwargs > environment > YAML file > defaults; no `.env` or secrets-dir sources."""
        loading = _loading.get()
        if loading is None:  # constructed directly (tests, tools): kwargs and os.environ only
            return init_settings, env_settings
        return init_settings, loading.env, loading.file


def _section_names(model: type[BaseModel]) -> list[str]:
    return [name for name, field in model.model_fields.items() if _model_of(field) is not None]


def _model_of(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


class _MappingEnvSource(EnvSettingsSource):
    """The library's env source, reading a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ  # read by _load_env_vars, which the base __init__ calls
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class _YamlDataSource(PydanticBaseSettingsSource):
    """Already parsed and expanded YAML data, as a settings source (no repr: it holds secrets)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keys={sorted(self._data)!r})"


# ---------------------------------------------------------------------------------------------
# Reading the file
# ---------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping, or a ConfigError with one line saying what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [
                f"config file {path} does not exist: check the path, or start from "
                "config/bridge.example.yaml"
            ]
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            [f"config file {path} is a directory, not a file: pass the YAML file itself"]
        ) from None
    except PermissionError:
        raise ConfigError(
            [f"config file {path} is not readable: permission denied; fix its mode or owner"]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"config file {path} is not UTF-8 text (bad byte at offset {exc.start})"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"config file {path} cannot be read: {exc.strerror}"]) from None
    if len(text) > MAX_FILE_CHARS:
        raise ConfigError(
            [
                f"config file {path} is {len(text)} characters long, more than a config needs "
                f"(at most {MAX_FILE_CHARS}): is it the right file?"
            ]
        )
    try:
        data = _safe_load(text, path)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(path, exc, text)]) from None
    if data is None:  # an empty file, or only comments: all defaults, then required-key errors
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"config file {path}: the top level must be a mapping of sections "
                f"(panther:, bigpanda:, ...), not {_kind(data)}"
            ]
        )
    return data


# Bounds on the YAML document, checked while it is composed and before anything is constructed,
# so that no file can make loading slow or deep: a config is a few hundred values, a few levels.
MAX_FILE_CHARS = 1_000_000
MAX_DEPTH = 50
MAX_ALIASES = 100
MAX_VALUES = 100_000  # values after expanding aliases ("billion laughs" expands to 10**9)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing deep nesting, alias bombs and duplicated keys.

    The composer is recursive, so depth is counted there (20,000 nested `[` would otherwise end
    in a RecursionError). Aliases are counted there too, and the expanded size of the document is
    measured on the node graph (shared nodes counted once per reference, memoized) before the
    constructor runs: constructing and then walking an alias bomb is what takes forever.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str | int] = []
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:  # type: ignore[override]
        part: str | int | None
        if isinstance(index, yaml.ScalarNode):
            part = index.value
        elif isinstance(index, int):
            part = index
        else:
            part = None  # a mapping key, or the document's root
        if part is not None:
            self._path.append(part)
        try:
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                if self._aliases > MAX_ALIASES:
                    raise _Refused(
                        self._path,
                        self.peek_event().start_mark,
                        f"more than {MAX_ALIASES} YAML aliases (*name): write the values out",
                    )
            elif self._depth >= MAX_DEPTH:
                raise _Refused(
                    self._path,
                    self.peek_event().start_mark,
                    f"nested more than {MAX_DEPTH} levels deep: a config is a few levels",
                )
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        finally:
            if part is not None:
                self._path.pop()


class _Refused(yaml.YAMLError):
    """A document the bounded loader will not load, with the key path where it stopped."""

    def __init__(self, path: list[str | int], mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.loc = tuple(path)
        self.mark = mark
        self.message = message


def _safe_load(text: str, path: Path) -> Any:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node(node, path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_node(root: yaml.Node, path: Path) -> None:
    """Refuse duplicated keys and documents whose aliases expand past MAX_VALUES values."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = MAX_VALUES + 1  # a node that contains itself is infinitely large
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        total = min(total, MAX_VALUES + 1)
        sizes[id(node)] = total
        return total

    def walk(node: yaml.Node, loc: tuple[str | int, ...], seen: set[int]) -> None:
        if id(node) in seen:  # an alias to a node already checked
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    earlier = first.get((key.tag, key.value))
                    if earlier is not None:
                        raise _Refused(
                            [*loc, key.value],
                            None,
                            f"given twice, at line {earlier.start_mark.line + 1} and line "
                            f"{key.start_mark.line + 1} of {path}: keep one of them",
                        )
                    first[(key.tag, key.value)] = key
                walk(value, (*loc, key.value if isinstance(key, yaml.ScalarNode) else "?"), seen)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*loc, index), seen)

    if size(root) > MAX_VALUES:
        loc: tuple[str | int, ...] = ()
        node = root
        while isinstance(node, yaml.MappingNode) and node.value:  # the heaviest branch
            key, node = max(node.value, key=lambda kv: size(kv[1]))
            loc = (*loc, key.value if isinstance(key, yaml.ScalarNode) else "?")
            if len(loc) == 2:
                break
        raise _Refused(
            list(loc),
            None,
            f"its YAML aliases expand to more than {MAX_VALUES} values (an alias bomb?): "
            "write the values out",
        )
    walk(root, (), set())


# Plain words for the contexts PyYAML names ("while scanning a quoted scalar").
_YAML_CONTEXTS = {
    "while scanning a quoted scalar": "in the quoted value",
    "while scanning a simple key": "in the key",
    "while parsing a block mapping": "in the section",
    "while parsing a block collection": "in the list",
    "while parsing a flow sequence": "in the [...] list",
    "while parsing a flow mapping": "in the {...} mapping",
    "while scanning a block scalar": "in the multi-line value",
    "while scanning an anchor": "in the anchor (&name)",
    "while scanning an alias": "in the alias (*name)",
}


def _yaml_problem(path: Path, exc: yaml.YAMLError, text: str = "") -> str:
    """Only the problem and its position: the snippet PyYAML can show might hold a secret.

    PyYAML reports where it gave up, which for an unclosed quote is where the *next* quote
    closed it, often many lines later: the line where the offending value starts is found and
    named too (a quoted value that spans lines, or the context PyYAML names).
    """
    if isinstance(exc, _Refused):
        where = f" (line {exc.mark.line + 1})" if exc.mark is not None else ""
        key = (_dotted(exc.loc[:4]) + ("..." if len(exc.loc) > 4 else "")) or "the document"
        return f"config file {path}: {key}{where}: {exc.message}"
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    problem = _plain_problem(str(problem))
    if mark is None:
        return f"config file {path}: invalid YAML: {problem}"
    message = (
        f"config file {path}: invalid YAML at line {mark.line + 1}, "
        f"column {mark.column + 1}: {problem}"
    )
    start = _unclosed_quote(text, mark.line) if text else None
    if start is not None:
        line, column, quote = start
        return (
            f"{message}; the quoted value that starts at line {line}, column {column} runs on "
            f"over several lines: is its closing {quote} missing?"
        )
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark.line != mark.line:
        words = _YAML_CONTEXTS.get(str(context), str(context))
        return f"{message} ({words} that starts at line {context_mark.line + 1})"
    return message


def _plain_problem(problem: str) -> str:
    return {
        "found unexpected end of stream": "the file ends before the value is complete",
        "expected <block end>, but found '<scalar>'": "a value where a new key was expected",
        "mapping values are not allowed here": "a ':' where none is allowed "
        "(quote a value that contains ': ')",
    }.get(problem, problem)


def _unclosed_quote(text: str, error_line: int) -> tuple[int, int, str] | None:
    """The 1-based (line, column, quote) of a quoted scalar that spans lines before the error.

    Config values are one line each; a quoted one spanning lines is nearly always a missing
    closing quote, which PyYAML reports only where the next quote happens to close it.
    """
    last = None
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if token.start_mark.line > error_line:
                break
            if (
                isinstance(token, yaml.ScalarToken)
                and not token.plain
                and token.style in ("'", '"')
                and token.end_mark.line > token.start_mark.line
            ):
                last = (token.start_mark.line + 1, token.start_mark.column + 1, token.style)
    except yaml.YAMLError:
        pass  # the scan stops where the parse did, or earlier: what was seen is enough
    # Without a later quote to close it, an unclosed quote runs to the end of the file.
    return last if last is not None else _quote_to_end(text)


def _quote_to_end(text: str) -> tuple[int, int, str] | None:
    try:
        for _ in yaml.scan(text, Loader=yaml.SafeLoader):
            pass
    except yaml.scanner.ScannerError as exc:
        if exc.context == "while scanning a quoted scalar" and exc.context_mark is not None:
            mark = exc.context_mark
            return mark.line + 1, mark.column + 1, text[mark.index]
    return None


_REFERENCE = re.compile(
    r"\$(?P<escape>\$)?\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<default>:-[^}]*)?\}|\$\{"
)


@dataclass(frozen=True)
class _Unresolved:
    """A `${...}` that could not be expanded, at `loc` in the file."""

    loc: tuple[str | int, ...]
    message: str


def _expand(
    node: Any, environ: Mapping[str, str], path: Path, loc: tuple[str | int, ...] = ()
) -> tuple[Any, list[_Unresolved]]:
    """Expand `${VAR}` / `${VAR:-default}` in string scalars (not keys); `$${` is a literal `${`.

    Done after parsing so an expanded value can never change the YAML structure. Like the shell,
    `:-` also applies when the variable is set but empty.
    """
    if isinstance(node, dict):
        out: dict[Any, Any] = {}
        problems: list[_Unresolved] = []
        for key, value in node.items():
            out[key], found = _expand(value, environ, path, (*loc, key))
            problems += found
        return out, problems
    if isinstance(node, list):
        items, problems = [], []
        for index, value in enumerate(node):
            item, found = _expand(value, environ, path, (*loc, index))
            items.append(item)
            problems += found
        return items, problems
    if not isinstance(node, str) or "$" not in node:
        return node, []

    problems = []

    def replace(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        if match["escape"]:
            return match[0][1:]
        if name is None:
            problems.append(
                _Unresolved(
                    loc,
                    f"malformed ${{...}} in {path}: write ${{VAR}} or ${{VAR:-default}}, "
                    "or $${ for a literal ${",
                )
            )
            return match[0]
        value = environ.get(name)
        if default is not None and not value:
            return default[2:]
        if value is None:
            problems.append(
                _Unresolved(
                    loc,
                    f"environment variable {name} is not set (used as ${{{name}}} in {path}); "
                    f"export it, or write ${{{name}:-default}}",
                )
            )
            return match[0]
        return value

    return _REFERENCE.sub(replace, node), problems


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, expand and validate the config file; raise ConfigError listing every problem.

    `environ` defaults to `os.environ`; it is the only environment consulted, both for
    `${VAR}` expansion and for `BRIDGE_...` overrides, so tests can pass a plain dict.
    """
    environ = os.environ if environ is None else environ
    if path is None or str(path) == "":
        path = environ.get("BRIDGE_CONFIG") or None
    if path is None:
        raise ConfigError(["no config file: pass --config FILE or set BRIDGE_CONFIG"])
    file = Path(path)

    raw = _read_yaml(file)
    data, unresolved = _expand(raw, environ, file)
    problems = _hoist_routes(data)
    try:
        env_source = _MappingEnvSource(Settings, environ)
        overridden = env_source()
    except SettingsError as exc:  # e.g. BRIDGE_PANTHER='not json'; the message holds no value
        raise ConfigError([f"environment: {exc}"]) from None

    # A `${VAR}` under a key the environment overrides anyway does not matter.
    unresolved = [u for u in unresolved if not _has_path(overridden, u.loc)]
    problems += [f"{_dotted(u.loc)}: {u.message}" for u in unresolved]
    token = _loading.set(_Loading(env=env_source, file=_YamlDataSource(Settings, data)))
    try:
        settings = Settings()
    except ValidationError as exc:
        # Errors under an unresolved `${VAR}` only repeat that problem less clearly.
        bad = [u.loc for u in unresolved]
        problems += [
            _describe(error, file, overridden)
            for error in exc.errors(include_url=False)
            if not any(error["loc"][: len(loc)] == loc for loc in bad)
        ]
    finally:
        _loading.reset(token)
    if problems:
        raise ConfigError(problems)
    return settings


def _hoist_routes(data: Any) -> list[str]:
    """Accept a top-level `routes:` list as `routing.routes` (how some users write it)."""
    if not isinstance(data, dict) or "routes" not in data:
        return []
    routing = data.get("routing")
    if routing is None:
        routing = data["routing"] = {}
    if not isinstance(routing, dict):
        return []  # the routing section's own error says what is wrong
    routes = data.pop("routes")
    if "routes" in routing:
        return ["routes: given both at the top level and as routing.routes: keep one of them"]
    routing["routes"] = routes
    return []


def _has_path(data: Any, loc: tuple[str | int, ...]) -> bool:
    for part in loc:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


# ---------------------------------------------------------------------------------------------
# Error messages
# ---------------------------------------------------------------------------------------------


def _describe(error: ErrorDetails, file: Path, overridden: dict[str, Any]) -> str:
    """One line, `key.path: what is wrong, the offending value unless secret, how to fix it`."""
    loc = tuple(error["loc"])
    key = _dotted(loc)
    kind = error["type"]
    field = _field_at(Settings, loc)
    if kind == "missing":
        return f"{key}: field required (no default): {_how_to_set(loc, field, file)}"
    if kind == "extra_forbidden":
        return f"{key}: {_unknown_key(loc, overridden)}"
    if kind == "empty_value":
        return f"{key}: value is empty: {_how_to_set(loc, field, file)}"
    if kind == "redacted_value":
        return (
            f"{key}: value is the redaction placeholder {REDACTED}, as printed by check-config: "
            f"{_how_to_set(loc, field, file)}"
        )
    if kind == "value_error":  # our own validators: their message names the value and the fix
        return f"{key}: {error['ctx']['error']}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{key}: must be a section (a mapping of keys), got {_show(error['input'])}"
    message = _PYDANTIC_MESSAGES.get(kind) or error["msg"].replace("Input should be", "must be")
    if _is_secret(field):
        return f"{key}: {message} (value not shown: it is a secret); quote it in {file}"
    return f"{key}: {message}, got {_show(error['input'])}"


_PYDANTIC_MESSAGES = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "string_type": "must be a string",
}


def _how_to_set(loc: tuple[str | int, ...], field: FieldInfo | None, file: Path) -> str:
    example = ""
    if field is not None and field.examples:
        example = f" (e.g. {loc[-1]}: {field.examples[0]})"
    return f"set it in {file}{example} or export {_env_name(loc)}"


def _unknown_key(loc: tuple[str | int, ...], overridden: dict[str, Any]) -> str:
    parent = _model_at(Settings, loc[:-1])
    what = "unknown section" if len(loc) == 1 else "unknown key"
    if _has_path(overridden, loc):
        what += f" set by {_env_name(loc)}"
    valid = list(parent.model_fields) if parent is not None else []
    # 0.7 rather than difflib's 0.6: at 0.6 `extra` "means" `retry`, which misleads more than helps.
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.7)
    if close:
        return f"{what} (did you mean {close[0]}?)"
    return f"{what}; valid keys here: {', '.join(valid)}"


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    for part in loc:
        if isinstance(part, int):  # an item of a list of sections (routing.routes[0])
            continue
        field = model.model_fields.get(str(part))
        inner = (_model_of(field) or _item_model(field)) if field is not None else None
        if inner is None:
            return None
        model = inner
    return model


def _item_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model of a `list[Model]` field's items, else None."""
    args = getattr(field.annotation, "__args__", ())
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _field_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> FieldInfo | None:
    parent = _model_at(model, loc[:-1]) if loc else None
    return parent.model_fields.get(str(loc[-1])) if parent is not None else None


def _is_secret(field: FieldInfo | None) -> bool:
    return field is not None and field.annotation is SecretStr


def _env_name(loc: tuple[str | int, ...]) -> str:
    return ENV_PREFIX + ENV_DELIMITER.join(str(part).upper() for part in loc)


def _dotted(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _show(value: object) -> str:
    """A short rendering of an offending (non-secret) value, in YAML terms where they differ."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, dict | list):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({_show(value)})"


# ---------------------------------------------------------------------------------------------
# Warnings: valid, but probably not what was meant
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigWarning:
    """A valid setting that is probably a mistake (`check-config` and `doctor` print it)."""

    key: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"warning: {self.key}: {self.problem}: {self.fix}"


def config_warnings(settings: Settings) -> list[ConfigWarning]:
    """Settings that load but are likely wrong, e.g. an API URL ending in `/v1`."""
    warnings = []
    for key, url, example in (
        ("panther.api_url", settings.panther.api_url, "https://api.acme.runpanther.net"),
        ("bigpanda.api_url", settings.bigpanda.api_url, "https://api.bigpanda.io"),
    ):
        path = urlsplit(url).path.rstrip("/")
        if path:
            # PANTHER.md: no /v1 prefix, paths hang straight off the host. Some deployments
            # differ, so this is a warning rather than an error.
            warnings.append(
                ConfigWarning(
                    key,
                    f"{url} has a path ({path}); API paths hang straight off the host",
                    f"write the API host with no path, e.g. {example}, unless your deployment "
                    "really serves the API under that path",
                )
            )
    return warnings


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def render_effective(settings: Settings) -> str:
    """The effective config as YAML, secrets redacted, durations compact, keys in model order.

    Mode "json" does the work: SecretStr dumps as `**********` and `Duration` as `1m30s`. A
    literal `${` is written back as `$${` so that the output loads to the same values.
    """
    data = _escape_references(settings.model_dump(mode="json"))
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _escape_references(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _escape_references(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_escape_references(value) for value in node]
    if isinstance(node, str):
        return node.replace("${", "$${")
    return node


def iter_fields(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo]]:
    """Every `section.key` and its field, in declaration order (docs and completeness tests)."""
    for name, field in model.model_fields.items():
        inner = _model_of(field)
        if inner is None:
            yield name, field
        else:
            for sub, sub_field in iter_fields(inner):
                yield f"{name}.{sub}", sub_field
