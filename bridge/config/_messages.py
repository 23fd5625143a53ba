"""Turning pydantic's errors into one line per problem: `key.path: what is wrong, how to fix`."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    SecretStr,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from bridge.config._fields import ENV_DELIMITER, ENV_PREFIX, REDACTED
from bridge.config.sections import Settings, _model_of


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


def _has_path(data: Any, loc: tuple[str | int, ...]) -> bool:
    for part in loc:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True
