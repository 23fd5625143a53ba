"""Reading the YAML file safely (bounded nesting and aliases, duplicate keys refused) and
expanding `${VAR}` references."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bridge.config._messages import _dotted, _kind
from bridge.errors import ConfigError


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
