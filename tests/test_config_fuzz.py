"""Hostile and absurd config files: each is refused with one line naming the key, never a hang,
a traceback or a value accepted only to fail later."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.config import (
    Duration,
    NonNegativeDuration,
    Settings,
    duration_range,
    iter_fields,
    load_config,
)
from bridge.errors import ConfigError

MINIMAL = """\
panther:
  api_url: https://api.acme.runpanther.net
  api_token: ptok
bigpanda:
  api_token: btok
  app_key: appkey
"""

# Nine levels of nine aliases: 9**9 (387 million) strings once expanded.
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + MINIMAL
)

WriteConfig = Callable[[str], Path]


@pytest.fixture
def write(tmp_path: Path) -> WriteConfig:
    def _write(text: str) -> Path:
        path = tmp_path / "bridge.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return caught.value.problems


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
