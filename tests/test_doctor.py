"""Tests for `bridge doctor`: each check against the simulators, passing and failing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import BIGPANDA_TOKEN, PANTHER_TOKEN, Rig

from bridge.config import load_config
from bridge.doctor import Doctor
from bridge.sim.bigpanda_incidents import DEFAULT_ENVIRONMENT, DEFAULT_USER_API_KEY


async def doctor(
    rig: Rig, *, send_test_alert: bool = False, **sections: Any
) -> tuple[bool, list[str]]:
    lines: list[str] = []
    settings = load_config(rig.write_config(**sections), environ={})
    ok = await Doctor(settings, send_test_alert=send_test_alert, out=lines.append).run()
    return ok, lines


def line(lines: list[str], name: str) -> str:
    (found,) = [text for text in lines if text[2:].startswith(f"{name}:")]
    return found


def failed(lines: list[str]) -> list[str]:
    return [text for text in lines if text.startswith("✗")]


def no_secrets(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert PANTHER_TOKEN not in text and BIGPANDA_TOKEN not in text


class TestAgainstTheSimulators:
    """A correct config against the simulators: every check passes and nothing is created."""

    async def test_all_pass(self, rig: Rig) -> None:
        rig.generate(3)
        ok, lines = await doctor(rig)
        assert failed(lines) == [], lines
        assert ok
        assert line(lines, "config").startswith("✓")
        assert line(lines, "state").startswith("✓")
        assert line(lines, "Panther reachable").startswith("✓")
        assert "Read Alerts proven" in line(lines, "Panther token")
        for permission in ("View Rules", "View Policies", "data-analytics read (saved queries)"):
            assert line(lines, f"Panther {permission}").startswith("✓ ")
        assert line(lines, "BigPanda org token").startswith("✓ ")
        assert line(lines, "BigPanda app key").startswith("– ")
        assert "--send-test-alert" in line(lines, "BigPanda app key")
        assert line(lines, "clock").startswith("✓ ")
        assert rig.bigpanda.accepted == []  # the probe created nothing
        no_secrets(lines)

    async def test_reads_one_of_each(self, rig: Rig) -> None:
        await doctor(rig)
        paths = {(r.path, dict(r.query).get("limit")) for r in rig.panther.requests}
        assert {("/alerts", "1"), ("/rules", "1"), ("/policies", "1"), ("/queries", "1")} <= paths
        assert all(r.method == "GET" for r in rig.panther.requests)

    async def test_catalog_disabled_skips_detection_permissions(self, rig: Rig) -> None:
        ok, lines = await doctor(rig, catalog={"enabled": False})
        assert ok
        assert not [t for t in lines if "View Rules" in t]
        assert "/rules" not in {r.path for r in rig.panther.requests}

    async def test_token_identity_not_provable_is_not_a_failure(self, rig: Rig) -> None:
        ok, lines = await doctor(rig)
        identity = line(lines, "Panther token identity")
        if "/api-tokens/self" in {r.path for r in rig.panther.requests if r.status == 404}:
            assert identity.startswith("– ") and "not provable" in identity
        else:
            assert identity.startswith("✓ ")
        assert ok

    async def test_send_test_alert(self, rig: Rig) -> None:
        ok, lines = await doctor(rig, send_test_alert=True)
        assert ok, lines
        assert "org token and app key proven" in line(lines, "BigPanda test alert")
        (accepted,) = rig.bigpanda.accepted
        assert accepted.alert["status"] == "ok"
        assert accepted.alert["incident_identifier"] == "panther-bigpanda-bridge-doctor-test"
        assert "bridge doctor" in accepted.alert["description"]

    async def test_test_alert_with_unknown_app_key(self, rig: Rig) -> None:
        ok, lines = await doctor(rig, send_test_alert=True, bigpanda={"app_key": "nope"})
        assert not ok
        assert line(lines, "BigPanda test alert").startswith("✗ ")
        assert "check bigpanda.app_key" in line(lines, "BigPanda test alert")


class TestFailures:
    """Each mistake turns its own line into ✗ with the fix, and the result into a failure."""

    async def test_wrong_panther_token(self, rig: Rig) -> None:
        ok, lines = await doctor(rig, panther={"api_token": "wrong-token"})
        assert not ok
        text = line(lines, "Panther token")
        assert text.startswith("✗ ") and "401" in text and "check panther.api_token" in text
        assert "wrong-token" not in "\n".join(lines)

    async def test_wrong_bigpanda_token(self, rig: Rig) -> None:
        ok, lines = await doctor(rig, bigpanda={"api_token": "wrong-bp-token"})
        assert not ok
        text = line(lines, "BigPanda org token")
        assert text.startswith("✗ ") and "check bigpanda.api_token" in text
        assert "wrong-bp-token" not in "\n".join(lines)

    @pytest.mark.parametrize(
        ("prefix", "name"),
        [
            ("/rules", "Panther View Rules"),
            ("/policies", "Panther View Policies"),
            ("/queries", "Panther data-analytics read (saved queries)"),
        ],
    )
    async def test_missing_permission(self, rig: Rig, prefix: str, name: str) -> None:
        rig.panther.refuse(prefix, status=403)
        ok, lines = await doctor(rig)
        assert not ok
        assert failed(lines) == [line(lines, name)]
        assert "answered 403" in line(lines, name) and "give the API token" in line(lines, name)

    async def test_missing_read_alerts(self, rig: Rig) -> None:
        rig.panther.refuse("/alerts")
        ok, lines = await doctor(rig)
        assert not ok
        assert "Read Alerts permission" in line(lines, "Panther Read Alerts")

    async def test_state_dir_not_writable(self, rig: Rig, tmp_path: Path) -> None:
        blocker = tmp_path / "a-file"
        blocker.write_text("not a directory")
        ok, lines = await doctor(rig, state={"path": str(blocker / "data" / "bridge.db")})
        assert not ok
        text = line(lines, "state")
        assert text.startswith("✗ ") and "is a file, not a directory" in text
        assert "set state.path" in text

    async def test_v1_url(self, rig: Rig) -> None:
        ok, lines = await doctor(rig, panther={"api_url": rig.panther_url + "/v1"})
        assert not ok
        text = line(lines, "Panther reachable")
        assert text.startswith("✗ ") and "answered 404" in text
        assert "check panther.api_url (it should be the API host with no path" in text
        (warning,) = [t for t in lines if t.startswith("! config:")]
        assert "has a path (/v1)" in warning

    async def test_unreachable_panther(self, rig: Rig) -> None:
        ok, lines = await doctor(rig, panther={"api_url": "http://127.0.0.1:9"})
        assert not ok
        assert "no answer from http://127.0.0.1:9" in line(lines, "Panther reachable")

    @pytest.mark.parametrize("target", ["panther", "bigpanda"])
    async def test_skewed_date(self, rig: Rig, target: str) -> None:
        getattr(rig, target).date_offset = 120.0
        ok, lines = await doctor(rig)
        assert not ok
        text = line(lines, "clock")
        name = {"panther": "Panther", "bigpanda": "BigPanda"}[target]
        assert text.startswith("✗ ") and f"behind {name}" in text
        assert "synchronise this host's clock" in text
        assert failed(lines) == [text]


class TestCommand:
    """`bridge doctor` as a user runs it: exit 0 or 1, ✓/✗ lines on stdout, no secret."""

    async def _run(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            "doctor",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PYTHONIOENCODING": "utf-8", "PATH": "/usr/bin:/bin"},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def test_exit_0_when_all_pass(self, rig: Rig) -> None:
        code, out, _ = await self._run("--config", str(rig.write_config()))
        assert code == 0, out
        assert "✗" not in out and "✓ Panther reachable" in out
        assert PANTHER_TOKEN not in out and BIGPANDA_TOKEN not in out

    async def test_exit_1_with_a_refused_route(self, rig: Rig) -> None:
        rig.panther.refuse("/policies")
        code, out, _ = await self._run("--config", str(rig.write_config()))
        assert code == 1
        assert "✗ Panther View Policies: GET /policies answered 403" in out

    async def test_invalid_config(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text("panther:\n  poll_interval: 1e20\n")
        code, out, _ = await self._run("--config", str(path))
        assert code == 1
        assert out.startswith("✗ config: invalid")
        assert "panther.poll_interval: 1e+20 seconds" in out


class TestMessagesThatPointAtTheCause:
    """What a new user sees outside `doctor`: the 404 hint, progress while waiting, warnings."""

    async def test_listing_404_names_api_url(self, rig: Rig) -> None:
        import aiohttp

        from bridge.errors import PermanentApiError
        from bridge.panther.client import PantherClient

        async with aiohttp.ClientSession() as session:
            client = PantherClient(
                session, api_url=rig.panther_url + "/v1", api_token=PANTHER_TOKEN
            )
            with pytest.raises(PermanentApiError) as caught:
                await client.list_alerts()
            assert "GET /alerts answered HTTP 404" in str(caught.value)
            assert "check panther.api_url (it should be the API host with no path" in str(
                caught.value
            )
            with pytest.raises(PermanentApiError, match=r"check panther\.api_url"):
                async for _ in client.iter_objects("rules"):
                    pass
        assert PANTHER_TOKEN not in str(caught.value)

    async def test_once_reports_progress_while_bigpanda_is_down(self, rig: Rig) -> None:
        from bridge.service import Bridge

        rig.generate(3)
        rig.bigpanda.outage(60)
        reports: list[tuple[dict[str, int], float]] = []
        settings = load_config(rig.write_config(), environ={})
        async with Bridge(settings) as bridge:
            ok = await bridge.once(
                timeout=0.5, progress=lambda counts, left: reports.append((dict(counts), left))
            )
        assert not ok
        assert reports, "no progress reported while events were pending"
        assert reports[0][0]["pending"] == 3
        assert 0 < reports[0][1] <= 0.5

    def test_check_config_warns_about_a_path(self, tmp_path: Path) -> None:
        import subprocess

        path = tmp_path / "bridge.yaml"
        path.write_text(
            "panther:\n  api_url: https://api.acme.runpanther.net/v1\n  api_token: p\n"
            "bigpanda:\n  api_token: b\n  app_key: k\n"
        )
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "check-config", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0
        assert "warning: panther.api_url: https://api.acme.runpanther.net/v1 has a path (/v1)" in (
            result.stderr
        )


class TestSyncBack:
    """With a `sync_back` section, the User API key and the environment are checked."""

    async def _run(self, rig: Rig, api_key: str, environment: str) -> list[str]:
        settings = rig.settings(
            sync_back={"enabled": True, "api_key": api_key, "environment_id": environment}
        )
        lines: list[str] = []
        await Doctor(settings, out=lines.append).run()
        assert api_key not in "\n".join(lines)
        return lines

    async def test_key_and_environment(self, rig: Rig) -> None:
        lines = await self._run(rig, DEFAULT_USER_API_KEY, DEFAULT_ENVIRONMENT)
        assert line(lines, "sync-back User API key").startswith("✓ ")
        assert line(lines, "sync-back environment").startswith("✓ ")

    async def test_wrong_key(self, rig: Rig) -> None:
        lines = await self._run(rig, "wrong-user-key-42", DEFAULT_ENVIRONMENT)
        text = line(lines, "sync-back User API key")
        assert text.startswith("✗ ") and "check sync_back.api_key" in text

    async def test_unknown_environment(self, rig: Rig) -> None:
        lines = await self._run(rig, DEFAULT_USER_API_KEY, "env-9")
        text = line(lines, "sync-back environment")
        assert text.startswith("✗ ") and f"({DEFAULT_ENVIRONMENT})" in text


class TestSimulatorOptions:
    """`bridge sim panther --refuse PATH[:STATUS] --date-offset S` from the command line."""

    async def test_refuse_and_date_offset(self) -> None:
        import re
        import time
        from email.utils import parsedate_to_datetime

        import aiohttp

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "sim", "panther", "--port", "0",
            "--refuse", "/rules", "--refuse", "/queries:401", "--date-offset", "3600",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            match = re.search(r"(http://\S+)", first)
            assert match, first
            headers = {"X-API-Key": "sim-panther-token"}
            async with aiohttp.ClientSession(match.group(1), headers=headers) as session:
                codes = {}
                for path in ("/rules", "/rules/x", "/queries", "/policies"):
                    async with session.get(path) as resp:
                        codes[path] = resp.status
                        date = parsedate_to_datetime(resp.headers["Date"]).timestamp()
                        assert date - time.time() > 3000
            assert codes == {"/rules": 403, "/rules/x": 403, "/queries": 401, "/policies": 200}
        finally:
            proc.terminate()
            await proc.wait()


class TestPostgresState:
    """With `state.url`, the state line says whether PostgreSQL answers and lets the bridge keep
    its tables there."""

    def settings_for(self, rig: Rig, url: str, namespace: str) -> Any:
        path = rig.write_config()
        doc = yaml.safe_load(path.read_text())
        doc["state"] = {"url": url, "namespace": namespace}
        path.write_text(yaml.safe_dump(doc))
        return load_config(path, environ={})

    async def test_reachable_with_rights(
        self, rig: Rig, postgres_url: str, pg_namespace: str
    ) -> None:
        lines: list[str] = []
        settings = self.settings_for(rig, postgres_url, pg_namespace)
        assert await Doctor(settings, out=lines.append).run()
        assert line(lines, "state").startswith("✓ ")
        assert f"bridge_{pg_namespace}" in line(lines, "state")

    async def test_unreachable_server(self, rig: Rig, pg_namespace: str) -> None:
        lines: list[str] = []
        url = "postgresql://bridge:hunter2-secret@127.0.0.1:1/bridge"
        settings = self.settings_for(rig, url, pg_namespace)
        assert not await Doctor(settings, out=lines.append).run()
        text = line(lines, "state")
        assert text.startswith("✗ ") and "check state.url" in text
        assert "hunter2-secret" not in "\n".join(lines)
