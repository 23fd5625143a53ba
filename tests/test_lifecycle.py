"""Lifecycle of the real process: SIGTERM drains the in-flight batch and exits 0; a second signal
exits at once; either way nothing is lost and nothing is sent twice after a restart.

The bridge runs as `python -m bridge run --config F` in a subprocess, exactly as in the container;
the simulators run in the test's event loop on ephemeral loopback ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bridge.outbox import Outbox
from bridge.sim import serve_app
from bridge.sim.bigpanda import ALERTS_PATH, BigPandaSimulator
from bridge.sim.panther import PantherSimulator

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

PANTHER_TOKEN = "lifecycle-panther-token"
BIGPANDA_TOKEN = "lifecycle-bigpanda-token"
APP_KEY = "lifecycle-app-key"
ALERTS = 10
STATE_FILES = {"bridge.db", "bridge.db-wal", "bridge.db-shm", "bridge.db.lock"}


@dataclass
class Rig:
    tmp: Path
    panther: PantherSimulator
    bigpanda: BigPandaSimulator
    config: Path
    workdir: Path
    state_dir: Path

    def posts(self) -> list:
        return [r for r in self.bigpanda.requests if r.method == "POST" and r.path == ALERTS_PATH]

    def delivered(self) -> set[str]:
        return {a.alert["panther_alert_id"] for a in self.bigpanda.accepted}

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        env = {
            **os.environ,
            "LIFECYCLE_PANTHER_TOKEN": PANTHER_TOKEN,
            "LIFECYCLE_BIGPANDA_TOKEN": BIGPANDA_TOKEN,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.pop("BRIDGE_CONFIG", None)
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            *args,
            "--config",
            str(self.config),
            cwd=self.workdir,  # stands in for a read-only root: nothing may be written here
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    def outbox_counts(self) -> dict[str, int]:
        outbox = Outbox.open(self.state_dir / "bridge.db", exclusive=False)
        try:
            return outbox.counts()
        finally:
            outbox.close()

    def assert_writes_only_state(self) -> None:
        assert list(self.workdir.iterdir()) == [], "the bridge wrote outside its state directory"
        assert {p.name for p in self.state_dir.iterdir()} <= STATE_FILES


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    panther = PantherSimulator(token=PANTHER_TOKEN)
    bigpanda = BigPandaSimulator(token=BIGPANDA_TOKEN, app_keys=[APP_KEY])
    panther.generate(ALERTS, spacing=0.5)
    workdir = tmp_path / "cwd"
    state_dir = tmp_path / "state"
    workdir.mkdir()
    state_dir.mkdir()
    async with serve_app(panther.app) as panther_url, serve_app(bigpanda.app) as bigpanda_url:
        config = tmp_path / "bridge.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "panther": {
                        "api_url": panther_url,
                        "api_token": "${LIFECYCLE_PANTHER_TOKEN}",
                        "poll_interval": 0.5,
                        "overlap": 0,
                    },
                    "bigpanda": {
                        "api_url": bigpanda_url,
                        "api_token": "${LIFECYCLE_BIGPANDA_TOKEN}",
                        "app_key": APP_KEY,
                        "batch_size": 100,
                        "timeout": 20,
                    },
                    "state": {"path": str(state_dir / "bridge.db")},
                    "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace": 8},
                    "logging": {"level": "info", "format": "json"},
                }
            )
        )
        yield Rig(tmp_path, panther, bigpanda, config, workdir, state_dir)


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def reaped(proc: asyncio.subprocess.Process) -> AsyncIterator[asyncio.subprocess.Process]:
    """Never leave the subprocess behind, whatever the test's outcome."""
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def events(stderr: bytes) -> list[dict]:
    """The JSON log lines (the bridge logs JSON when stderr is not a terminal)."""
    parsed = []
    for line in stderr.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            parsed.append(json.loads(line))
    return parsed


class TestSigterm:
    """SIGTERM stops intake, lets the in-flight batch finish, persists state and exits 0."""

    async def test_in_flight_batch_completes_and_restart_sends_nothing(self, rig: Rig) -> None:
        rig.bigpanda.script("slow:2")  # the first batch takes 2 s: it is in flight when we signal
        async with reaped(await rig.start("run")) as proc:
            await wait_for(lambda: any(r.status == 0 for r in rig.posts()), 10, "a batch in flight")
            assert not rig.bigpanda.accepted
            proc.send_signal(signal.SIGTERM)
            _stdout, stderr = await asyncio.wait_for(proc.communicate(), 12)

        log = events(stderr)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert rig.delivered() == set(rig.panther.alerts), "the in-flight batch completed"
        names = [e.get("event") for e in log]
        assert "bridge.stopping" in names
        stopped = next(e for e in log if e.get("event") == "bridge.stopped")
        assert stopped["pending"] == 0
        assert "bridge.shutdown_grace_expired" not in names
        assert rig.outbox_counts()["pending"] == 0
        assert rig.outbox_counts()["jobs"] == 0
        rig.assert_writes_only_state()

        posts_before = len(rig.posts())
        async with reaped(await rig.start("once", "--timeout", "5")) as again:
            _stdout, stderr = await asyncio.wait_for(again.communicate(), 12)
        assert again.returncode == 0, stderr.decode()[-2000:]
        assert len(rig.posts()) == posts_before, "nothing is resent after a restart"
        assert len(rig.bigpanda.accepted) == ALERTS
        rig.assert_writes_only_state()

    async def test_grace_period_bounds_a_stuck_batch(self, rig: Rig, tmp_path: Path) -> None:
        """A batch slower than shutdown_grace is cancelled; its events stay pending, not lost."""
        doc = yaml.safe_load(rig.config.read_text())
        doc["server"]["shutdown_grace"] = 1
        rig.config.write_text(yaml.safe_dump(doc))
        rig.bigpanda.script("slow:4")
        async with reaped(await rig.start("run")) as proc:
            await wait_for(lambda: any(r.status == 0 for r in rig.posts()), 10, "a batch in flight")
            proc.send_signal(signal.SIGTERM)
            _stdout, stderr = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert "bridge.shutdown_grace_expired" in [e.get("event") for e in events(stderr)]
        assert rig.outbox_counts()["pending"] == ALERTS

        async with reaped(await rig.start("once", "--timeout", "5")) as again:
            _stdout, stderr = await asyncio.wait_for(again.communicate(), 12)
        assert again.returncode == 0, stderr.decode()[-2000:]
        assert rig.delivered() == set(rig.panther.alerts)


class TestSecondSignal:
    """A second SIGTERM/SIGINT exits at once; the state stays consistent for the next start."""

    @pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
    async def test_second_signal_exits_immediately(self, rig: Rig, second: signal.Signals) -> None:
        rig.bigpanda.script("slow:4")
        async with reaped(await rig.start("run")) as proc:
            await wait_for(lambda: any(r.status == 0 for r in rig.posts()), 10, "a batch in flight")
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert proc.returncode is None, "the first signal waits for the in-flight batch"
            proc.send_signal(second)
            _stdout, stderr = await asyncio.wait_for(proc.communicate(), 5)
        assert proc.returncode != 0
        assert "bridge.forced_exit" in [e.get("event") for e in events(stderr)]
        assert rig.outbox_counts()["pending"] == ALERTS  # nothing lost, nothing half-written

        async with reaped(await rig.start("once", "--timeout", "5")) as again:
            _stdout, stderr = await asyncio.wait_for(again.communicate(), 12)
        assert again.returncode == 0, stderr.decode()[-2000:]
        assert rig.delivered() == set(rig.panther.alerts)


@pytest.fixture
def private_ca(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, made with openssl."""
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed: cannot make a private CA")
    cert, key = tmp_path / "ca.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=bridge-test-ca",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


class TestTls:
    """Certificates are verified; `panther.ca_bundle` makes a private CA trusted."""

    @pytest.mark.parametrize("trusted", [False, True])
    async def test_private_ca(self, tmp_path: Path, private_ca, trusted: bool) -> None:
        import ssl

        from aiohttp import web

        from bridge.config import load_config
        from bridge.service import Bridge

        cert, key = private_ca
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        panther = PantherSimulator(token=PANTHER_TOKEN)
        panther.generate(3, spacing=0.5)
        bigpanda = BigPandaSimulator(token=BIGPANDA_TOKEN, app_keys=[APP_KEY])
        runner = web.AppRunner(panther.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with serve_app(bigpanda.app) as bigpanda_url:
                doc = {
                    "panther": {
                        "api_url": f"https://127.0.0.1:{port}",
                        "api_token": PANTHER_TOKEN,
                        "ca_bundle": str(cert) if trusted else None,
                    },
                    "bigpanda": {
                        "api_url": bigpanda_url,
                        "api_token": BIGPANDA_TOKEN,
                        "app_key": APP_KEY,
                    },
                    "state": {"path": str(tmp_path / "bridge.db")},
                    "logging": {"level": "error"},
                }
                path = tmp_path / "bridge.yaml"
                path.write_text(yaml.safe_dump(doc))
                settings = load_config(path, environ={})
                async with Bridge(settings) as bridge:
                    ok = await bridge.once(timeout=5)
                    error = bridge.health.last_poll_error or ""
        finally:
            await runner.cleanup()
        if trusted:
            assert ok, error
            assert len(bigpanda.accepted) == 3
        else:
            assert not ok
            assert "certificate" in error.lower() or "ssl" in error.lower(), error
            assert not bigpanda.accepted


class TestProxy:
    """HTTP(S)_PROXY / NO_PROXY are honoured, resolved once per target at startup."""

    async def test_proxy_and_no_proxy(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import aiohttp
        from aiohttp import web

        from bridge.config import load_config
        from bridge.service import Bridge

        panther = PantherSimulator(token=PANTHER_TOKEN)
        panther.generate(3, spacing=0.5)
        bigpanda = BigPandaSimulator(token=BIGPANDA_TOKEN, app_keys=[APP_KEY])
        proxied: list[str] = []
        async with (
            serve_app(panther.app) as panther_url,
            serve_app(bigpanda.app) as bigpanda_url,
            aiohttp.ClientSession() as upstream,
        ):
            # A forward proxy that knows `panther.proxied.test`, a name only it can resolve.
            async def forward(request: web.Request) -> web.Response:
                proxied.append(str(request.url))
                target = panther_url + request.raw_path.split("panther.proxied.test", 1)[1]
                headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
                async with upstream.request(
                    request.method, target, headers=headers, data=await request.read()
                ) as resp:
                    return web.Response(
                        status=resp.status, body=await resp.read(),
                        content_type=resp.content_type,
                    )

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", forward)
            async with serve_app(app) as proxy_url:
                monkeypatch.setenv("HTTP_PROXY", proxy_url)
                monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # BigPanda: direct
                for name in ("http_proxy", "no_proxy", "HTTPS_PROXY", "https_proxy"):
                    monkeypatch.delenv(name, raising=False)
                doc = {
                    "panther": {"api_url": "http://panther.proxied.test",
                                "api_token": PANTHER_TOKEN},
                    "bigpanda": {"api_url": bigpanda_url, "api_token": BIGPANDA_TOKEN,
                                 "app_key": APP_KEY},
                    "state": {"path": str(tmp_path / "bridge.db")},
                    "catalog": {"enabled": False},
                    "logging": {"level": "error"},
                }
                path = tmp_path / "bridge.yaml"
                path.write_text(yaml.safe_dump(doc))
                settings = load_config(path, environ={})
                async with Bridge(settings) as bridge:
                    ok = await bridge.once(timeout=5)
                    error = bridge.health.last_poll_error
        assert ok, error
        assert len(bigpanda.accepted) == 3
        assert proxied and all("panther.proxied.test" in url for url in proxied)
