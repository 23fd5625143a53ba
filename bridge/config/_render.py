"""What `check-config` prints: warnings about valid but doubtful values, the effective config."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
)
from pydantic.fields import FieldInfo

from bridge.config.sections import Settings, _model_of


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
