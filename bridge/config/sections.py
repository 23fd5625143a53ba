"""The sections users edit, one model each with a one-line description per key, and
`Settings`, the whole file: what `config/bridge.example.yaml` lists."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bridge.config._durations import DAY, HOUR, MINUTE, SECOND, Duration, DurationIn
from bridge.config._fields import (
    ENV_DELIMITER,
    ENV_PREFIX,
    CaBundle,
    HttpUrl,
    NonEmptyStr,
    Secret,
    _blank_to_none,
    _lowercase,
)
from bridge.mapping import compile_source, valid_tag_name


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


# -- the whole file ----------------------------------------------------------------------------


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
