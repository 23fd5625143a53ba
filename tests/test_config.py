"""Tests for bridge.config: loading, expansion, overrides, error messages and rendering.

Hostile and absurd config files (the second half) are each refused with one line naming the key,
never a hang, a traceback or a value accepted only to fail later."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from bridge.config import (
    Duration,
    NonNegativeDuration,
    Settings,
    duration_range,
    format_duration,
    iter_fields,
    load_config,
    parse_duration,
    render_effective,
)
from bridge.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "bridge.example.yaml"
SECRET = "tok-Zq8vUnmistakable-9f3"  # distinctive: asserted absent from every message and render

MINIMAL = """\
panther:
  api_url: https://api.acme.runpanther.net
  api_token: ptok
bigpanda:
  api_token: btok
  app_key: appkey
"""

WriteConfig = Callable[[str], Path]


@pytest.fixture
def write(tmp_path: Path) -> WriteConfig:
    """Write YAML text to a fresh config file and return its path."""

    def _write(text: str) -> Path:
        path = tmp_path / "bridge.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def problems_of(path: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, {} if environ is None else environ)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# What MINIMAL loads as: the documented defaults (and MINIMAL's own values).
DEFAULTS: dict[str, object] = {
    "panther.api_url": "https://api.acme.runpanther.net",
    "panther.api_token": "ptok",
    "panther.console_url": None,
    "panther.poll_interval": 30,
    "panther.initial_lookback": 3600,
    "panther.overlap": 120,
    "panther.page_size": 50,
    "panther.status_sync_interval": 60,
    "panther.track_for": 7 * 86400,
    "panther.timeout": 10,
    "bigpanda.api_url": "https://api.bigpanda.io",
    "bigpanda.app_key": "appkey",
    "bigpanda.batch_size": 100,
    "bigpanda.max_in_flight": 2,
    "bigpanda.timeout": 15,
    "bigpanda.job_poll_interval": 5,
    "bigpanda.job_timeout": 600,
    "state.path": "./data/bridge.db",
    "server.host": "0.0.0.0",
    "server.port": 9108,
    "server.shutdown_grace": 20,
    "logging.level": "info",
    "logging.format": "auto",
    "retry.initial_backoff": 1,
    "retry.max_backoff": 300,
    "retry.give_up_after": 86400,
    "retry.max_retry_after": 300,
}


class TestDefaults:
    """A config with only the required keys gets the documented defaults."""

    @pytest.mark.parametrize(("path", "expected"), DEFAULTS.items(), ids=list(DEFAULTS))
    def test_defaults(self, write: WriteConfig, path: str, expected: object) -> None:
        value = attrgetter(path)(load_config(write(MINIMAL), {}))
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        assert value == expected

    def test_trailing_slashes_stripped_and_level_lowercased(self, write: WriteConfig) -> None:
        text = MINIMAL.replace("runpanther.net", "runpanther.net/")
        text += "  api_url: https://eu-api.bigpanda.io/\nlogging:\n  level: WARNING\n"
        text = text.replace("  api_token: ptok", "  api_token: ptok\n  console_url: https://c.io/")
        settings = load_config(write(text), {})
        assert settings.panther.api_url == "https://api.acme.runpanther.net"
        assert settings.panther.console_url == "https://c.io"
        assert settings.bigpanda.api_url == "https://eu-api.bigpanda.io"
        assert settings.logging.level == "warning"

    def test_empty_section_means_defaults(self, write: WriteConfig) -> None:
        settings = load_config(write(MINIMAL + "server:\nretry: {}\n"), {})
        assert settings.server.port == 9108


class TestDurations:
    """Durations are seconds or compact strings; anything else is refused, naming the forms."""

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            (30, 30.0),
            (1.5, 1.5),
            ("30", 30.0),
            ("2.5", 2.5),
            ("30s", 30.0),
            ("5m", 300.0),
            ("2h", 7200.0),
            ("7d", 604800.0),
            ("1m30s", 90.0),
            ("250ms", 0.25),
            ("1h30m", 5400.0),
            (" 10s ", 10.0),
        ],
    )
    def test_parses(self, value: object, seconds: float) -> None:
        assert parse_duration(value) == seconds

    @pytest.mark.parametrize("value", ["5x", "", "s", "5 m", "1M", "-5s", "abc", True, None, [1]])
    def test_refuses(self, value: object) -> None:
        with pytest.raises(ValueError, match="is not a duration: use seconds or 30s/5m/2h/7d"):
            parse_duration(value)

    def test_message_quotes_the_value(self) -> None:
        with pytest.raises(ValueError) as caught:
            parse_duration("5x")
        assert str(caught.value) == "'5x' is not a duration: use seconds or 30s/5m/2h/7d"

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (30, "30s"),
            (120, "2m"),
            (3600, "1h"),
            (604800, "7d"),
            (90, "1m30s"),
            (0.25, "250ms"),
            (0, "0s"),
            (86400 + 1.5, "1d1s500ms"),
        ],
    )
    def test_formats_compactly_and_reads_back(self, seconds: float, text: str) -> None:
        assert format_duration(seconds) == text
        assert parse_duration(text) == seconds

    def test_in_config(self, write: WriteConfig) -> None:
        text = MINIMAL + "  timeout: 1m30s\n  job_poll_interval: 250ms\n"
        text = text.replace("  api_token: ptok", "  api_token: ptok\n  overlap: 0\n  track_for: 2")
        settings = load_config(write(text), {})
        assert settings.bigpanda.timeout == 90
        assert settings.bigpanda.job_poll_interval == 0.25
        assert settings.panther.overlap == 0
        assert settings.panther.track_for == 2

    def test_bad_duration_in_config(self, write: WriteConfig) -> None:
        text = MINIMAL.replace("  api_token: ptok", "  api_token: ptok\n  poll_interval: 5x")
        assert problems_of(write(text)) == [
            "panther.poll_interval: '5x' is not a duration: use seconds or 30s/5m/2h/7d"
            " (sane range: more than 0s, at most 1h)"
        ]

    def test_zero_refused_where_meaningless(self, write: WriteConfig) -> None:
        text = MINIMAL.replace("  api_token: ptok", "  api_token: ptok\n  poll_interval: 0s")
        assert problems_of(write(text)) == [
            "panther.poll_interval: 0s is out of range (sane range: more than 0s, at most 1h)"
        ]


class TestEnvExpansion:
    """`${VAR}` and `${VAR:-default}` expand in string values; `$${` is a literal `${`."""

    def test_expands_variables(self, write: WriteConfig) -> None:
        text = MINIMAL.replace("ptok", "${PT}").replace("appkey", "app-${KEY}-x")
        settings = load_config(write(text), {"PT": "from-env", "KEY": "k1"})
        assert settings.panther.api_token.get_secret_value() == "from-env"
        assert settings.bigpanda.app_key == "app-k1-x"

    def test_default_used_when_unset_or_empty(self, write: WriteConfig) -> None:
        text = MINIMAL.replace("ptok", "${PT:-fallback}").replace("appkey", "${AK:-}z")
        settings = load_config(write(text), {"AK": ""})
        assert settings.panther.api_token.get_secret_value() == "fallback"
        assert settings.bigpanda.app_key == "z"
        settings = load_config(write(text), {"PT": "set"})
        assert settings.panther.api_token.get_secret_value() == "set"

    def test_dollar_dollar_is_literal(self, write: WriteConfig) -> None:
        text = MINIMAL.replace("appkey", '"$${NOT_EXPANDED}"')
        settings = load_config(write(text), {"NOT_EXPANDED": "oops"})
        assert settings.bigpanda.app_key == "${NOT_EXPANDED}"

    def test_whole_value_validates_as_int(self, write: WriteConfig) -> None:
        settings = load_config(write(MINIMAL + "  batch_size: ${BATCH}\n"), {"BATCH": "123"})
        assert settings.bigpanda.batch_size == 123

    def test_expansion_cannot_change_structure(self, write: WriteConfig) -> None:
        settings = load_config(write(MINIMAL.replace("appkey", "${AK}")), {"AK": "a: b\nc: [d]"})
        assert settings.bigpanda.app_key == "a: b\nc: [d]"

    def test_unset_variable_names_key_variable_and_fix(self, write: WriteConfig) -> None:
        path = write(MINIMAL.replace("ptok", "${PANTHER_API_TOKEN}"))
        assert problems_of(path) == [
            f"panther.api_token: environment variable PANTHER_API_TOKEN is not set "
            f"(used as ${{PANTHER_API_TOKEN}} in {path}); export it, "
            f"or write ${{PANTHER_API_TOKEN:-default}}"
        ]

    def test_malformed_reference(self, write: WriteConfig) -> None:
        (problem,) = problems_of(write(MINIMAL.replace("appkey", "${BAD NAME}")))
        assert problem.startswith("bigpanda.app_key: malformed ${...}")


class TestEnvOverrides:
    """`BRIDGE_<SECTION>__<KEY>` from the given environ beats the file; nothing else is read."""

    def test_env_beats_yaml(self, write: WriteConfig) -> None:
        path = write(MINIMAL.replace("  api_token: ptok", "  api_token: ptok\n  poll_interval: 1m"))
        environ = {"BRIDGE_PANTHER__POLL_INTERVAL": "5s", "BRIDGE_BIGPANDA__BATCH_SIZE": "50"}
        settings = load_config(path, environ)
        assert settings.panther.poll_interval == 5
        assert settings.bigpanda.batch_size == 50

    def test_override_excuses_unset_variable(self, write: WriteConfig) -> None:
        path = write(MINIMAL.replace("ptok", "${PANTHER_API_TOKEN}"))
        settings = load_config(path, {"BRIDGE_PANTHER__API_TOKEN": "over"})
        assert settings.panther.api_token.get_secret_value() == "over"

    def test_required_keys_from_env_only(self, write: WriteConfig) -> None:
        environ = {
            "BRIDGE_PANTHER__API_URL": "https://p.example",
            "BRIDGE_PANTHER__API_TOKEN": "a",
            "BRIDGE_BIGPANDA__API_TOKEN": "b",
            "BRIDGE_BIGPANDA__APP_KEY": "c",
            "BRIDGE_PANTHER__CONSOLE_URL": "null",
        }
        settings = load_config(write(""), environ)
        assert settings.panther.api_url == "https://p.example"
        assert settings.panther.console_url is None

    def test_real_environment_ignored_when_environ_given(
        self, write: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BRIDGE_PANTHER__POLL_INTERVAL", "99")
        monkeypatch.setenv("PT", "real")
        path = write(MINIMAL.replace("ptok", "${PT:-given}"))
        settings = load_config(path, {})
        assert settings.panther.poll_interval == 30
        assert settings.panther.api_token.get_secret_value() == "given"

    def test_defaults_to_os_environ(
        self, write: WriteConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write(MINIMAL)
        monkeypatch.setenv("BRIDGE_CONFIG", str(path))
        monkeypatch.setenv("BRIDGE_PANTHER__POLL_INTERVAL", "7s")
        assert load_config(None).panther.poll_interval == 7

    def test_bridge_config_from_given_environ(self, write: WriteConfig) -> None:
        path = write(MINIMAL)
        assert load_config(None, {"BRIDGE_CONFIG": str(path)}).bigpanda.app_key == "appkey"

    def test_unknown_key_in_env(self, write: WriteConfig) -> None:
        assert problems_of(write(MINIMAL), {"BRIDGE_PANTHER__POLL_INTERVALL": "5s"}) == [
            "panther.poll_intervall: unknown key set by BRIDGE_PANTHER__POLL_INTERVALL "
            "(did you mean poll_interval?)"
        ]


class TestUnknownKeys:
    """Unknown keys and sections are errors, with the closest valid name suggested."""

    def test_suggests_close_key(self, write: WriteConfig) -> None:
        path = write(MINIMAL.replace("  api_token: ptok", "  api_token: ptok\n  pol_interval: 5s"))
        assert problems_of(path) == [
            "panther.pol_interval: unknown key (did you mean poll_interval?)"
        ]

    def test_unknown_section(self, write: WriteConfig) -> None:
        assert problems_of(write(MINIMAL + "pnather: {}\n")) == [
            "pnather: unknown section (did you mean panther?)"
        ]

    def test_lists_valid_keys_when_nothing_is_close(self, write: WriteConfig) -> None:
        assert problems_of(write(MINIMAL + "state:\n  zzz: 1\n")) == [
            "state.zzz: unknown key; valid keys here: path, url, namespace, lease_ttl"
        ]


class TestFileProblems:
    """A config file that cannot be read or parsed gives one line saying why."""

    def test_no_path_at_all(self) -> None:
        assert problems_of(None) == ["no config file: pass --config FILE or set BRIDGE_CONFIG"]

    def test_missing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "nope.yaml"
        (problem,) = problems_of(path)
        assert problem.startswith(f"config file {path} does not exist: ")

    def test_directory(self, tmp_path: Path) -> None:
        (problem,) = problems_of(tmp_path)
        assert problem.startswith(f"config file {tmp_path} is a directory")

    def test_unreadable(self, write: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
        path = write(MINIMAL)

        def refuse(*args: object, **kwargs: object) -> str:
            raise PermissionError(13, "Permission denied")  # chmod 0 does not stop root (CI)

        monkeypatch.setattr(Path, "read_text", refuse)
        (problem,) = problems_of(path)
        assert problem.startswith(f"config file {path} is not readable: permission denied")

    def test_invalid_yaml_reports_line(self, write: WriteConfig) -> None:
        path = write(MINIMAL + "server:\n  port: [9108\n  host: x\n")
        (problem,) = problems_of(path)
        assert problem.startswith(f"config file {path}: invalid YAML at line 9, column ")

    def test_top_level_not_a_mapping(self, write: WriteConfig) -> None:
        path = write("- panther\n- bigpanda\n")
        (problem,) = problems_of(path)
        assert problem == (
            f"config file {path}: the top level must be a mapping of sections "
            "(panther:, bigpanda:, ...), not a list"
        )

    def test_empty_file_reports_required_keys(self, write: WriteConfig) -> None:
        path = write("# nothing yet\n")
        assert problems_of(path) == [
            f"panther.api_url: field required (no default): set it in {path} "
            "(e.g. api_url: https://api.acme.runpanther.net) or export BRIDGE_PANTHER__API_URL",
            f"panther.api_token: field required (no default): set it in {path} "
            "(e.g. api_token: ${PANTHER_API_TOKEN}) or export BRIDGE_PANTHER__API_TOKEN",
            f"bigpanda.api_token: field required (no default): set it in {path} "
            "(e.g. api_token: ${BIGPANDA_API_TOKEN}) or export BRIDGE_BIGPANDA__API_TOKEN",
            f"bigpanda.app_key: field required (no default): set it in {path} "
            "(e.g. app_key: ${BIGPANDA_APP_KEY}) or export BRIDGE_BIGPANDA__APP_KEY",
        ]


class TestValidationProblems:
    """Every problem is reported at once, one line each, naming the key, the value and the fix."""

    def test_multiple_problems_together(self, write: WriteConfig) -> None:
        text = (
            "panther:\n  api_url: ftp://x\n  api_token: ${UNSET}\n  page_size: 51\n"
            "bigpanda:\n  api_token: ''\n  batch_size: lots\n"
            "server:\n  port: 70000\nlogging:\n  level: loud\n  format: xml\nextra: 1\n"
        )
        path = write(text)
        problems = problems_of(path)
        assert problems == [
            f"panther.api_token: environment variable UNSET is not set (used as ${{UNSET}} in "
            f"{path}); export it, or write ${{UNSET:-default}}",
            "panther.api_url: 'ftp://x' is not an http(s) URL: write it like "
            "https://api.example.com",
            "panther.page_size: must be less than or equal to 50, got 51",
            f"bigpanda.api_token: value is empty: set it in {path} "
            "(e.g. api_token: ${BIGPANDA_API_TOKEN}) or export BRIDGE_BIGPANDA__API_TOKEN",
            f"bigpanda.app_key: field required (no default): set it in {path} "
            "(e.g. app_key: ${BIGPANDA_APP_KEY}) or export BRIDGE_BIGPANDA__APP_KEY",
            "bigpanda.batch_size: must be a whole number, got 'lots'",
            "server.port: must be less than or equal to 65535, got 70000",
            "logging.level: must be 'debug', 'info', 'warning' or 'error', got 'loud'",
            "logging.format: must be 'auto', 'json' or 'console', got 'xml'",
            "extra: unknown section; valid keys here: panther, bigpanda, state, server, logging, "
            "retry, catalog, mapping, routing, sync_back",
        ]

    def test_section_that_is_not_a_mapping(self, write: WriteConfig) -> None:
        assert problems_of(write(MINIMAL + "server: 5\n")) == [
            "server: must be a section (a mapping of keys), got 5"
        ]


class TestSecrets:
    """Secret values never appear in error messages, reprs or the rendered config."""

    def test_not_in_type_errors(self, write: WriteConfig) -> None:
        text = MINIMAL.replace("ptok", f"[{SECRET}]").replace("btok", SECRET)
        text = text.replace("appkey", "''") + "  batch_size: x\n"
        problems = problems_of(write(text))
        assert problems[0].startswith("panther.api_token: must be a string (value not shown")
        assert all(SECRET not in problem for problem in problems)

    def test_not_in_validation_error_text(self, write: WriteConfig) -> None:
        environ = {"BRIDGE_PANTHER__API_TOKEN": SECRET, "BRIDGE_PANTHER__PAGE_SIZE": "0"}
        with pytest.raises(ConfigError) as caught:
            load_config(write(MINIMAL), environ)
        assert SECRET not in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__context__ is None

    def test_not_in_repr_or_render(self, write: WriteConfig) -> None:
        settings = load_config(write(MINIMAL.replace("ptok", SECRET).replace("btok", SECRET)), {})
        assert SECRET not in repr(settings) and SECRET not in str(settings)
        assert SECRET not in render_effective(settings)

    def test_redaction_placeholder_refused(self, write: WriteConfig) -> None:
        (problem,) = problems_of(write(MINIMAL.replace("ptok", "'**********'")))
        assert problem.startswith("panther.api_token: value is the redaction placeholder")


class TestRenderEffective:
    """The effective config renders as YAML that reads back to the same settings."""

    def test_redacts_and_compacts(self, write: WriteConfig) -> None:
        rendered = yaml.safe_load(render_effective(load_config(write(MINIMAL), {})))
        assert rendered["panther"]["api_token"] == "**********"
        assert rendered["bigpanda"]["api_token"] == "**********"
        assert rendered["bigpanda"]["app_key"] == "appkey"
        assert rendered["panther"]["poll_interval"] == "30s"
        assert rendered["panther"]["track_for"] == "7d"
        assert rendered["bigpanda"]["job_timeout"] == "10m"

    def test_key_order_matches_example(self) -> None:
        settings = load_config(EXAMPLE, EXAMPLE_ENV)
        rendered = yaml.safe_load(render_effective(settings))
        example = yaml.safe_load(EXAMPLE.read_text())
        assert list(rendered) == list(example)
        for section in example:
            assert list(rendered[section]) == list(example[section])

    def test_round_trips(self, write: WriteConfig, tmp_path: Path) -> None:
        text = MINIMAL.replace("appkey", "'$${LITERAL}'") + "  timeout: 1m30s\n"
        original = load_config(write(text), {})
        rendered = tmp_path / "effective.yaml"
        rendered.write_text(render_effective(original))
        tokens = {"BRIDGE_PANTHER__API_TOKEN": "ptok", "BRIDGE_BIGPANDA__API_TOKEN": "btok"}
        again = load_config(rendered, tokens)
        assert again == original
        assert again.bigpanda.app_key == "${LITERAL}"


EXAMPLE_ENV = {
    "PANTHER_API_TOKEN": "example-panther-token",
    "BIGPANDA_API_TOKEN": "example-bigpanda-token",
    "BIGPANDA_APP_KEY": "example-app-key",
}


class TestExampleFile:
    """config/bridge.example.yaml loads and documents every key, in model order."""

    def test_loads(self) -> None:
        settings = load_config(EXAMPLE, EXAMPLE_ENV)
        assert settings.panther.api_token.get_secret_value() == "example-panther-token"
        assert settings.bigpanda.app_key == "example-app-key"
        assert settings.panther.console_url == "https://acme.runpanther.net"

    def test_every_key_present_and_at_its_default(self) -> None:
        example = yaml.safe_load(EXAMPLE.read_text())
        flat = [f"{section}.{key}" for section, keys in example.items() for key in keys]
        assert flat == [name for name, _ in iter_fields(Settings)]
        settings = load_config(EXAMPLE, EXAMPLE_ENV)
        for name, field in iter_fields(Settings):
            if not field.is_required() and name != "panther.console_url":
                section, key = name.split(".")
                value = getattr(getattr(settings, section), key)
                assert value == field.get_default(call_default_factory=True), name


# --- hostile and absurd files ----------------------------------------------------------

# Nine levels of nine aliases: 9**9 (387 million) strings once expanded.
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + MINIMAL
)


def with_panther(line: str) -> str:
    return MINIMAL.replace("  api_token: ptok\n", f"  api_token: ptok\n  {line}\n", 1)


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestStructure:
    """Documents that would be slow or deep to load are refused while being composed."""

    def test_alias_bomb(self, write: WriteConfig) -> None:
        (problem,) = problems_of(write(ALIAS_BOMB))
        assert "aliases expand to more than 100000 values" in problem
        assert problem.startswith(f"config file {write(ALIAS_BOMB)}: ")

    def test_many_aliases(self, write: WriteConfig) -> None:
        text = "x: &x 1\nys: [" + ", ".join(["*x"] * 101) + "]\n" + MINIMAL
        (problem,) = problems_of(write(text))
        assert "ys[100]" in problem and "more than 100 YAML aliases" in problem

    def test_a_few_aliases_are_fine(self, write: WriteConfig) -> None:
        text = MINIMAL + "mapping:\n  tags: &t {team: sec}\nrouting:\n  routes:\n"
        text += "    - severity: HIGH\n      tags: *t\n"
        settings = load_config(write(text), {})
        assert settings.routing.routes[0].tags == {"team": "sec"}

    @pytest.mark.parametrize("open_, close", [("[", "]"), ("{a: ", "}")])
    def test_deep_nesting(self, write: WriteConfig, open_: str, close: str) -> None:
        text = MINIMAL + "mapping:\n  tags: " + open_ * 20000 + "1" + close * 20000 + "\n"
        (problem,) = problems_of(write(text))
        assert "mapping.tags" in problem
        assert "(line 8): nested more than 50 levels deep" in problem

    def test_duplicated_key_names_key_and_both_lines(self, write: WriteConfig) -> None:
        path = write(MINIMAL + "  app_key: other\n")
        assert problems_of(path) == [
            f"config file {path}: bigpanda.app_key: given twice, at line 6 and line 7 "
            f"of {path}: keep one of them"
        ]

    def test_duplicated_section(self, write: WriteConfig) -> None:
        path = write(MINIMAL + "panther:\n  poll_interval: 5s\n")
        (problem,) = problems_of(path)
        assert "panther: given twice, at line 1 and line 7" in problem

    def test_merge_key_override_is_not_a_duplicate(self, write: WriteConfig) -> None:
        text = MINIMAL + "mapping:\n  tags:\n    <<: {team: sec}\n    team: ops\n"
        assert load_config(write(text), {}).mapping.tags == {"team": "ops"}

    def test_oversized_file(self, write: WriteConfig) -> None:
        (problem,) = problems_of(write(MINIMAL + "#" * 1_000_001 + "\n"))
        assert "more than a config needs" in problem


class TestDurationRanges:
    """Every duration has a sane range, stated in the error about a value outside it."""

    @pytest.mark.parametrize(
        ("line", "key", "shown"),
        [
            ("initial_lookback: 1e12", "panther.initial_lookback", "1e+12 seconds"),
            ("poll_interval: 1e20", "panther.poll_interval", "1e+20 seconds"),
            ("timeout: 99999999999d", "panther.timeout", "8.64e+15 seconds"),
            ("overlap: 1e20", "panther.overlap", "1e+20 seconds"),
            ("overlap: -5", "panther.overlap", "-5.0 seconds"),
            ("track_for: 91d", "panther.track_for", "91d"),
        ],
    )
    def test_out_of_range(self, write: WriteConfig, line: str, key: str, shown: str) -> None:
        (problem,) = problems_of(write(with_panther(line)))
        assert problem.startswith(f"{key}: {shown}")
        assert "is out of range (sane range: " in problem

    @pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "'nan'"])
    def test_not_finite(self, write: WriteConfig, value: str) -> None:
        (problem,) = problems_of(write(with_panther(f"poll_interval: {value}")))
        assert problem.startswith("panther.poll_interval: ")
        assert "is not a duration" in problem and "sane range: more than 0s, at most 1h" in problem

    def test_every_duration_field_has_a_range_and_its_default_is_inside(self) -> None:
        fields = [(k, f) for k, f in iter_fields(Settings) if duration_range(f) is not None]
        assert len(fields) >= 15
        for key, field in fields:
            bounds = duration_range(field)
            assert bounds is not None
            assert bounds(field.default) == field.default, key

    def test_scientific_notation_within_range_is_accepted(self, write: WriteConfig) -> None:
        settings = load_config(write(with_panther("poll_interval: 1e1")), {})
        assert settings.panther.poll_interval == 10


class TestYamlSyntax:
    """A syntax error names where the offending value starts, in plain words."""

    def test_unclosed_quote_closed_much_later(self, write: WriteConfig) -> None:
        text = with_panther('console_url: "https://acme.runpanther.net')
        text += "\n" * 20 + 'server:\n  host: "0.0.0.0"\n'
        (problem,) = problems_of(write(text))
        assert "invalid YAML at line 29" in problem
        assert "the quoted value that starts at line 4, column 16 runs on over several lines" in (
            problem
        )
        assert 'is its closing " missing?' in problem

    def test_unclosed_quote_at_end_of_file(self, write: WriteConfig) -> None:
        (problem,) = problems_of(write(MINIMAL + "  batch_size: '10\n"))
        assert "the file ends before the value is complete" in problem
        assert "starts at line 7, column 15" in problem and "closing ' missing?" in problem

    def test_secret_not_quoted_in_syntax_error(self, write: WriteConfig) -> None:
        text = MINIMAL.replace("api_token: ptok", 'api_token: "tok-Zq8v-unmistakable')
        (problem,) = problems_of(write(text + 'server:\n  host: "x"\n'))
        assert "Zq8v" not in problem


class TestCheckConfigCommand:
    """`bridge check-config` on hostile files exits 2 with one line and no traceback."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (ALIAS_BOMB, "aliases expand to more than 100000 values"),
            (MINIMAL + "mapping:\n  tags: " + "[" * 20000 + "]" * 20000 + "\n", "nested more"),
            (MINIMAL + "  app_key: other\n", "bigpanda.app_key: given twice, at line 6 and line 7"),
            (with_panther("initial_lookback: 1e12"), "panther.initial_lookback: 1e+12 seconds"),
            (with_panther("poll_interval: 1e20"), "panther.poll_interval: 1e+20 seconds"),
        ],
    )
    def test_exit_2_naming_the_problem(self, write: WriteConfig, text: str, expected: str) -> None:
        result = check_config(write(text))
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stdout == ""


class TestDocumentedRanges:
    """The README states the range of every duration key the model bounds."""

    def test_readme_lists_every_range(self) -> None:
        readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
        defaults = {
            id(meta.func)
            for t in (Duration, NonNegativeDuration)
            for meta in t.__metadata__
            if hasattr(meta, "func")
        }
        listed = 0
        for key, field in iter_fields(Settings):
            bounds = duration_range(field)
            if bounds is None or id(bounds) in defaults:
                continue  # not a duration, or one with the generic bound stated in the README
            assert f"| `{key}` | {bounds.describe()} |" in readme, key
            listed += 1
        assert listed >= 15
