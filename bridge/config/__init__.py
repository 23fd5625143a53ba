"""The bridge's configuration: one YAML file, overridable key by key from the environment.

Priority, highest first: keyword arguments > `BRIDGE_<SECTION>__<KEY>` environment variables >
the YAML file > defaults. `${VAR}` and `${VAR:-default}` in YAML string values expand from the
environment, so the file can be committed without its secrets.

`load_config` never lets a pydantic or YAML exception escape: every problem becomes one line of
a `ConfigError`, `key.path: what is wrong and how to fix it`, and all problems are reported at
once so an operator fixes the file in one pass. Secret values never appear in those lines nor in
any repr (they are `SecretStr`).

What users edit is in `bridge.config.sections`: one model per section, each key with its default
and a one-line description. The machinery lives in private modules, as structlog keeps its own:
`_durations` (durations and their ranges), `_fields` (URLs, secrets, CA bundles), `_yaml` (reading
the file safely, `${VAR}`), `_sources` (the environment and the file as settings sources),
`_loading` (`load_config`), `_messages` (one line per problem) and `_render` (what `check-config`
prints). Adding a section is one model in `sections` and one field on `Settings`: unknown-key
checks, env overrides, error messages and rendering follow from the models.
"""

from bridge.config._durations import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    Duration,
    DurationIn,
    DurationRange,
    NonNegativeDuration,
    duration_range,
    format_duration,
    parse_duration,
)
from bridge.config._loading import load_config
from bridge.config._render import ConfigWarning, config_warnings, iter_fields, render_effective
from bridge.config.sections import (
    BigPandaSettings,
    CatalogSettings,
    FilterSettings,
    LoggingSettings,
    MappingSettings,
    PantherSettings,
    RetrySettings,
    RouteSettings,
    RoutingSettings,
    ServerSettings,
    Settings,
    StateSettings,
    SyncBackSettings,
)

__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "SECOND",
    "BigPandaSettings",
    "CatalogSettings",
    "ConfigWarning",
    "Duration",
    "DurationIn",
    "DurationRange",
    "FilterSettings",
    "LoggingSettings",
    "MappingSettings",
    "NonNegativeDuration",
    "PantherSettings",
    "RetrySettings",
    "RouteSettings",
    "RoutingSettings",
    "ServerSettings",
    "Settings",
    "StateSettings",
    "SyncBackSettings",
    "config_warnings",
    "duration_range",
    "format_duration",
    "iter_fields",
    "load_config",
    "parse_duration",
    "render_effective",
]
