"""`load_config`: the file, `${VAR}` expansion and `BRIDGE_` overrides into `Settings`,
every problem one line of a `ConfigError`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)
from pydantic_settings import (
    SettingsError,
)

from bridge.config._messages import _describe, _dotted, _has_path
from bridge.config._sources import _MappingEnvSource, _YamlDataSource
from bridge.config._yaml import _expand, _read_yaml
from bridge.config.sections import Settings, _Loading, _loading
from bridge.errors import ConfigError


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
