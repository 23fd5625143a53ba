"""The `bridge` command line: exit codes, check-config output, secrets never printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main

PANTHER_SECRET = "pan-secret-7f3a9c2e1b"
BIGPANDA_SECRET = "bp-secret-4d8e6a0c2f"

VALID = """
panther:
  api_url: https://api.acme.runpanther.net
  api_token: ${PANTHER_API_TOKEN}
bigpanda:
  api_token: ${BIGPANDA_API_TOKEN}
  app_key: app-123
state:
  path: STATE
"""


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANTHER_API_TOKEN", PANTHER_SECRET)
    monkeypatch.setenv("BIGPANDA_API_TOKEN", BIGPANDA_SECRET)
    for name in ("BRIDGE_CONFIG", "BIGPANDA_APP_KEY"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(text.replace("STATE", str(tmp_path / "bridge.db")))
    return path


class TestCheckConfig:
    """check-config prints the effective config with secrets hidden, or one line per problem."""

    def test_valid_prints_redacted(self, tmp_path: Path, secrets_env: None, capsys) -> None:
        assert main(["check-config", "--config", str(write(tmp_path, VALID))]) == 0
        out = capsys.readouterr().out
        assert "**********" in out and "app-123" in out
        assert PANTHER_SECRET not in out and BIGPANDA_SECRET not in out

    def test_config_from_environment_variable(
        self, tmp_path: Path, secrets_env: None, monkeypatch: pytest.MonkeyPatch, capsys
    ) -> None:
        monkeypatch.setenv("BRIDGE_CONFIG", str(write(tmp_path, VALID)))
        assert main(["check-config"]) == 0

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (VALID.replace("  app_key: app-123\n", ""), "bigpanda.app_key: field required"),
            (VALID + "  pth: x\n", "state.pth: unknown key"),
            (VALID.replace("${PANTHER_API_TOKEN}", "${NOT_SET_ANYWHERE}"), "NOT_SET_ANYWHERE"),
            (VALID + "panther:\n  : [\n", "invalid YAML at line"),
            (
                VALID.replace("panther:\n", "panther:\n  poll_interval: soon\n"),
                "panther.poll_interval",
            ),
        ],
    )
    def test_errors_exit_2_naming_the_key(
        self, tmp_path: Path, secrets_env: None, capsys, text: str, expected: str
    ) -> None:
        assert main(["check-config", "--config", str(write(tmp_path, text))]) == 2
        err = capsys.readouterr().err
        assert expected in err
        assert PANTHER_SECRET not in err and BIGPANDA_SECRET not in err

    def test_missing_file(self, tmp_path: Path, secrets_env: None, capsys) -> None:
        assert main(["check-config", "--config", str(tmp_path / "nope.yaml")]) == 2
        assert "does not exist" in capsys.readouterr().err

    def test_no_config_at_all(self, secrets_env: None, capsys) -> None:
        assert main(["check-config"]) == 2
        assert "BRIDGE_CONFIG" in capsys.readouterr().err


class TestEntryPoints:
    """`python -m bridge` and the console script are the same program."""

    def test_python_dash_m(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0 and done.stdout.startswith("bridge ")

    def test_no_command_prints_help(self, capsys) -> None:
        assert main([]) == 2
        assert "check-config" in capsys.readouterr().out

    def test_backfill_rejects_bad_time(self, tmp_path: Path, secrets_env: None, capsys) -> None:
        path = write(tmp_path, VALID)
        assert main(["backfill", "--since", "yesterday-ish", "--config", str(path)]) == 2
        assert "--since" in capsys.readouterr().err
