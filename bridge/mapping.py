"""How Panther fields become BigPanda fields: the mapping rules, compiled once from config.

The `mapping:` config section names, for the BigPanda primary property (`host`), secondary property
(`check`), `incident_identifier` and `description`, where their text comes from. Each is a
*source*: one template, or a list of templates tried in order.

Template syntax (checked when the config loads, so a typo is a config error, never a runtime one):

- Literal text with placeholders in braces: `panther-{id}`, `{detection.id}: {context.userName}`.
  `{{` and `}}` are literal braces.
- A placeholder is a field path: an alert field (`id`, `type`, `severity`, `title`, `createdAt`,
  ...), `detection.<field>` (the alert's detection, enriched from the catalog when known:
  `detection.id`, `detection.name`, `detection.logTypes`, ...), `context.<key>[.<key>...]` (the
  detection's free-form context; a number indexes a list), `systemError.<key>`, `assignee.id`,
  `updatedBy.id`.
- Fallbacks inside one placeholder: `{detection.name|title|type}` takes the first path with a
  value; a quoted literal ends the chain: `{context.userName|'unknown user'}`.
- A template is used only when every placeholder in it has a value (missing, null, empty text and
  empty lists have none); otherwise the next template of the list is tried. When none applies the
  field is left out, except the primary property, without which the alert is `Invalid`.

Values render as text: numbers as digits, times as RFC3339 UTC (`2026-11-20T14:03:27Z`), lists
joined with `, `, objects as compact JSON.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

__all__ = [
    "BIGPANDA_STATUSES",
    "DEFAULT_DESCRIPTION",
    "DEFAULT_INCIDENT_IDENTIFIER",
    "DEFAULT_PRIMARY",
    "DEFAULT_SECONDARY",
    "DEFAULT_SEVERITY_MAP",
    "DEFAULT_STATUS_MAP",
    "PANTHER_SEVERITIES",
    "PANTHER_STATUSES",
    "ContextFilter",
    "MappingRules",
    "Source",
    "TemplateError",
    "compile_source",
    "iso_utc",
    "valid_tag_name",
]

BIGPANDA_STATUSES = frozenset({"ok", "critical", "warning", "unknown", "acknowledged"})
PANTHER_STATUSES = ("OPEN", "TRIAGED", "RESOLVED", "CLOSED")
PANTHER_SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO")

DEFAULT_STATUS_MAP: Mapping[str, str] = {
    "TRIAGED": "acknowledged",
    "RESOLVED": "ok",
    "CLOSED": "ok",
}
DEFAULT_SEVERITY_MAP: Mapping[str, str] = {
    "CRITICAL": "critical",
    "HIGH": "critical",
    "MEDIUM": "warning",
    "LOW": "warning",
    "INFO": "warning",
}
# DESIGN.md: host = detection id, check = detection name or alert title, one BigPanda alert per
# Panther alert across its life, description = title (+ detection description).
DEFAULT_PRIMARY = "{detection.id|type}"
DEFAULT_SECONDARY = "{detection.name|title|detection.id|type}"
DEFAULT_INCIDENT_IDENTIFIER = "panther-{id}"
DEFAULT_DESCRIPTION = (
    "{title} — {detection.description|description}",
    "{title}",
    "Panther {type} alert {id}",
)

_ZERO = timedelta(0)
_TAG_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# Keys with a meaning of their own in a BigPanda alert: a configured tag must not take them.
RESERVED_KEYS = frozenset(
    {
        "app_key",
        "status",
        "host",
        "service",
        "application",
        "device",
        "check",
        "sensor",
        "timestamp",
        "description",
        "incident_identifier",
        "primary_property",
        "secondary_property",
    }
)


def valid_tag_name(name: str) -> bool:
    """BIGPANDA.md: a letter first, then lowercase a-z 0-9 _ -, at most 64 characters."""
    return _TAG_NAME.fullmatch(name) is not None and name not in RESERVED_KEYS


class TemplateError(ValueError):
    """A template or field path that cannot work; the message says what and what is valid."""


# ---------------------------------------------------------------------------------------------
# Field paths
# ---------------------------------------------------------------------------------------------

Getter = Callable[[Any, Mapping[str, Any]], Any]
"""(alert model, catalog detection) -> the raw value at a path, or None."""

# Alert JSON name -> attribute of bridge.panther.models.Alert.
_ALERT_FIELDS = {
    "id": "id",
    "type": "type",
    "status": "status",
    "severity": "severity",
    "title": "title",
    "description": "description",
    "reference": "reference",
    "runbook": "runbook",
    "createdAt": "created_at",
    "firstEventOccurredAt": "first_event_occurred_at",
    "lastReceivedEventAt": "last_received_event_at",
    "eventCount": "event_count",
    "quality": "quality",
    "contextTags": "context_tags",
}
_ACTORS = {"assignee": "assignee", "updatedBy": "updated_by"}
# Objects whose keys are free-form: any sub-path is accepted.
_FREE = {"context": "context", "systemError": "system_error"}
# What rules, scheduled rules, policies and simple rules carry (PANTHER.md, examples/).
_DETECTION_FIELDS = (
    "id",
    "type",
    "name",
    "displayName",
    "description",
    "severity",
    "enabled",
    "runbook",
    "reference",
    "tags",
    "reports",
    "logTypes",
    "resourceTypes",
    "scheduledQueries",
    "dedupPeriodMinutes",
    "threshold",
    "summaryAttributes",
    "managed",
    "createdAt",
    "createdBy",
    "lastModified",
)
_DETECTION_FREE = frozenset({"reports"})

FIELDS_HELP = (
    "fields: "
    + ", ".join(_ALERT_FIELDS)
    + ", assignee.id, assignee.type, updatedBy.id, updatedBy.type, "
    + ", ".join(f"detection.{name}" for name in _DETECTION_FIELDS)
    + ", context.<key>[.<key>...], systemError.<key>"
)


def compile_path(path: str) -> Getter:
    """A getter for a dotted field path; TemplateError naming the valid fields if there is none."""
    parts = path.split(".")
    if any(not part for part in parts):
        raise TemplateError(f"empty part in field path {path!r}")
    head, rest = parts[0], parts[1:]
    if head in _ALERT_FIELDS and not rest:
        attr = _ALERT_FIELDS[head]
        return lambda alert, _d: getattr(alert, attr)
    if head in _ACTORS and len(rest) == 1 and rest[0] in ("id", "type"):
        actor_attr, sub = _ACTORS[head], rest[0]

        def actor(alert: Any, _d: Mapping[str, Any]) -> Any:
            who = getattr(alert, actor_attr)
            return getattr(who, sub) if who is not None else None

        return actor
    if head in _FREE:
        return _free_getter(_FREE[head], tuple(rest))
    if head == "detection" and rest:
        return _detection_getter(path, rest)
    raise TemplateError(_unknown(path, head, [*_ALERT_FIELDS, *_ACTORS, *_FREE, "detection"]))


def _free_getter(attr: str, rest: tuple[str, ...]) -> Getter:
    def free(alert: Any, _d: Mapping[str, Any]) -> Any:
        return dig(getattr(alert, attr), rest)

    return free


def _detection_getter(path: str, rest: list[str]) -> Getter:
    name, sub = rest[0], tuple(rest[1:])
    if name not in _DETECTION_FIELDS:
        raise TemplateError(_unknown(path, name, _DETECTION_FIELDS, prefix="detection."))
    if sub and name not in _DETECTION_FREE:
        raise TemplateError(f"detection.{name} has no fields: {path!r}")
    if name in ("id", "type"):
        # The alert's own reference wins; the catalog object (if any) fills in.
        def ref(alert: Any, detection: Mapping[str, Any]) -> Any:
            value = getattr(alert.detection, name) if alert.detection is not None else None
            return value if value else detection.get(name)

        return ref
    key = "displayName" if name == "name" else name
    if sub:
        return lambda _a, detection: dig(detection.get(key), sub)
    return lambda _a, detection: detection.get(key)


def _unknown(path: str, name: str, valid: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return f"unknown field {path!r}{hint}; {FIELDS_HELP}"


def dig(value: Any, keys: tuple[str, ...]) -> Any:
    """`value[k1][k2]...` through mappings (by key) and lists (by index); None when absent."""
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit():
            index = int(key)
            value = value[index] if index < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_LITERAL = re.compile(r"""'([^']*)'|"([^"]*)\"""")


@dataclass(frozen=True, slots=True)
class _Placeholder:
    """`{a|b|'literal'}`: the first of `getters` with a value, else `literal` (None: no value)."""

    getters: tuple[Getter, ...]
    literal: str | None


@dataclass(frozen=True, slots=True)
class Template:
    """One template: literal text and placeholders, in order."""

    text: str
    parts: tuple[str | _Placeholder, ...]
    single: _Placeholder | None = None

    def render(self, alert: Any, detection: Mapping[str, Any]) -> str | None:
        """The rendered text, or None when a placeholder has no value."""
        if self.single is not None:  # `{a|b}` alone: no joining
            for getter in self.single.getters:
                value = getter(alert, detection)
                text = value.strip() if value.__class__ is str else as_text(value)
                if text:
                    return text
            return self.single.literal or None
        out: list[str] = []
        for part in self.parts:
            if part.__class__ is str:
                out.append(part)  # type: ignore[arg-type]
                continue
            text = None
            for getter in part.getters:  # type: ignore[union-attr]
                value = getter(alert, detection)
                text = value.strip() if value.__class__ is str else as_text(value)
                if text:
                    break
            else:
                text = part.literal  # type: ignore[union-attr]
            if not text:
                return None
            out.append(text)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Source:
    """A list of templates: the first that renders (every placeholder has a value) wins."""

    templates: tuple[Template, ...]

    def render(self, alert: Any, detection: Mapping[str, Any]) -> str | None:
        if len(self.templates) == 1:
            return self.templates[0].render(alert, detection)
        for template in self.templates:
            text = template.render(alert, detection)
            if text:
                return text
        return None

    @property
    def config(self) -> str | list[str]:
        """The source as written in config (one string, or a list)."""
        texts = [t.text for t in self.templates]
        return texts[0] if len(texts) == 1 else texts


def compile_template(text: str) -> Template:
    """Parse one template; TemplateError saying what is wrong where."""
    if not isinstance(text, str):
        raise TemplateError(f"a template must be text, got {type(text).__name__}")
    parts: list[str | _Placeholder] = []
    literal: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[pos : match.start()])
        pos = match.end()
        token = match[0]
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if match[1] is None:
            raise TemplateError(
                f"unbalanced {token!r} at position {match.start()} in template {text!r}; "
                "write {{ or }} for a literal brace"
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_placeholder(match[1], text))
    literal.append(text[pos:])
    if "".join(literal):
        parts.append("".join(literal))
    if not parts:
        raise TemplateError("empty template: write text and {field} placeholders")
    only = parts[0] if len(parts) == 1 and isinstance(parts[0], _Placeholder) else None
    return Template(text, tuple(parts), only)


def _placeholder(body: str, template: str) -> _Placeholder:
    choices = [choice.strip() for choice in body.split("|")]
    getters: list[Getter] = []
    literal: str | None = None
    for index, choice in enumerate(choices):
        quoted = _LITERAL.fullmatch(choice)
        if quoted:
            if index != len(choices) - 1:
                raise TemplateError(
                    f"a quoted literal must be the last choice in {{{body}}} in template "
                    f"{template!r}"
                )
            literal = quoted[1] if quoted[1] is not None else quoted[2]
            continue
        if not choice:
            raise TemplateError(f"empty field in {{{body}}} in template {template!r}")
        try:
            getters.append(compile_path(choice))
        except TemplateError as exc:
            raise TemplateError(f"{exc} (in template {template!r})") from None
    return _Placeholder(tuple(getters), literal)


def compile_source(value: str | Sequence[str] | Source) -> Source:
    """A source from config: one template or a non-empty list of them."""
    if isinstance(value, Source):
        return value
    if isinstance(value, str):
        return Source((compile_template(value),))
    if isinstance(value, Sequence) and value:
        return Source(tuple(compile_template(item) for item in value))
    raise TemplateError("must be a template or a non-empty list of templates")


def as_text(value: Any) -> str | None:
    """How a field value reads inside a template; None or "" when it has none."""
    if value is None:
        return None
    if value.__class__ is str:
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, list | tuple):
        items = [text for item in value if (text := as_text(item))]
        return ", ".join(items)
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return str(value)


def iso_utc(moment: datetime | None) -> str | None:
    """RFC3339 in UTC with `Z`, the fraction only when there is one (trailing zeros trimmed)."""
    if moment is None:
        return None
    # isoformat is C: `2026-11-20T14:03:05.902000+00:00`, the fraction left out when zero.
    if moment.tzinfo is UTC:  # what bridge.timeutil hands out: cut the `+00:00`
        text = moment.isoformat()[:-6]
    else:
        if moment.utcoffset() != _ZERO:
            moment = moment.astimezone(UTC)
        text = moment.replace(tzinfo=None).isoformat()
    if moment.microsecond:
        text = text.rstrip("0")
    return text + "Z"


# ---------------------------------------------------------------------------------------------
# Context filter
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContextFilter:
    """Which `context` keys become tags, by globs over their dotted path (`userIdentity.arn`).

    A key is kept when it or one of its parents matches an include glob and none matches an
    exclude glob. The globs are compiled into one regex each, once.
    """

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    _include: re.Pattern[str] | None = field(default=None, init=False, compare=False, repr=False)
    _exclude: re.Pattern[str] | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_include", _globs(self.include))
        object.__setattr__(self, "_exclude", _globs(self.exclude))

    @property
    def everything(self) -> bool:
        """True when no key is filtered out: the normalizer then skips matching altogether."""
        return "*" in self.include and not self.exclude

    @property
    def nothing(self) -> bool:
        return not self.include

    def keeps(self, path: tuple[str, ...]) -> bool:
        """Whether the context value at `path` (keys from the top) becomes a tag."""
        prefixes = [".".join(path[: i + 1]) for i in range(len(path))]
        if self._exclude is not None and any(self._exclude.fullmatch(p) for p in prefixes):
            return False
        return self._include is not None and any(self._include.fullmatch(p) for p in prefixes)

    def may_keep_below(self, path: tuple[str, ...]) -> bool:
        """Whether anything under the object at `path` can be kept (prunes excluded subtrees)."""
        prefixes = [".".join(path[: i + 1]) for i in range(len(path))]
        return self._exclude is None or not any(self._exclude.fullmatch(p) for p in prefixes)


def _globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL)


# ---------------------------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------------------------

_DEFAULT_SOURCES = {
    "primary": compile_source(DEFAULT_PRIMARY),
    "secondary": compile_source(DEFAULT_SECONDARY),
    "incident_identifier": compile_source(DEFAULT_INCIDENT_IDENTIFIER),
    "description": compile_source(DEFAULT_DESCRIPTION),
}


@dataclass(frozen=True, slots=True)
class MappingRules:
    """How Panther fields become BigPanda fields. Defaults are DESIGN.md's; config may change them.

    `extra_tags` (static config tags, then a route's tags) replace built-in tags of the same name;
    `context` tags never replace anything (a colliding name gets a suffix).
    """

    status_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STATUS_MAP))
    severity_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SEVERITY_MAP))
    default_open_status: str = "warning"
    console_url: str | None = None
    include_context: bool = True
    extra_tags: Mapping[str, Any] = field(default_factory=dict)
    primary: Source = _DEFAULT_SOURCES["primary"]
    secondary: Source = _DEFAULT_SOURCES["secondary"]
    incident_identifier: Source = _DEFAULT_SOURCES["incident_identifier"]
    description: Source = _DEFAULT_SOURCES["description"]
    context: ContextFilter = ContextFilter()
    # Whether a change of `eventCount` alone is worth a BigPanda event (status sync reads it).
    forward_event_count: bool = False

    @classmethod
    def from_config(cls, mapping: Any, *, console_url: str | None = None) -> MappingRules:
        """Rules from a `MappingSettings` (bridge.config), already validated there."""
        return cls(
            status_map={k.upper(): v for k, v in mapping.status_map.items()},
            severity_map={k.upper(): v for k, v in mapping.severity_map.items()},
            default_open_status=mapping.severity_default,
            console_url=console_url,
            include_context=bool(mapping.context_include),
            extra_tags=dict(mapping.tags),
            primary=compile_source(mapping.primary),
            secondary=compile_source(mapping.secondary),
            incident_identifier=compile_source(mapping.incident_identifier),
            description=compile_source(mapping.description),
            context=ContextFilter(tuple(mapping.context_include), tuple(mapping.context_exclude)),
            forward_event_count=mapping.forward_event_count,
        )

    def with_tags(self, tags: Mapping[str, Any]) -> MappingRules:
        """These rules with `tags` merged over the extra tags (a route's tags win)."""
        if not tags:
            return self
        return replace(self, extra_tags={**self.extra_tags, **tags})
