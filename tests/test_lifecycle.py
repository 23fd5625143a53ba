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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import BIGPANDA_TOKEN, PANTHER_TOKEN, Rig, wait_until

from bridge.config import Settings
from bridge.service import Bridge
from bridge.sim import serve_app
from bridge.sim.bigpanda import BigPandaSimulator, RequestRecord
from bridge.sim.panther import PantherSimulator
from bridge.state.sqlite import Outbox

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ALERTS = 10
STATE_FILES = {"bridge.db", "bridge.db-wal", "bridge.db-shm", "bridge.db.lock"}


@dataclass
class ServiceRig:
    """The simulators (`rig`) and a config for `python -m bridge`, run from an empty directory."""

    rig: Rig
    config: Path
    workdir: Path
    state_dir: Path

    @property
    def panther(self) -> PantherSimulator:
        return self.rig.panther

    @property
    def bigpanda(self) -> BigPandaSimulator:
        return self.rig.bigpanda

    def posts(self) -> list[RequestRecord]:
        return self.rig.posts()

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


def service_config(rig: Rig, state_dir: Path, *, shutdown_grace: float = 8) -> Path:
    """Tokens from the environment (as in the container); one batch of 100 with a long timeout,
    so a scripted slow answer is still in flight when the test signals."""
    return rig.write_config(
        panther={"api_token": "${LIFECYCLE_PANTHER_TOKEN}", "poll_interval": 0.5},
        bigpanda={"api_token": "${LIFECYCLE_BIGPANDA_TOKEN}", "batch_size": 100, "timeout": 20},
        state={"path": str(state_dir / "bridge.db")},
        server={"shutdown_grace": shutdown_grace},
        logging={"level": "info", "format": "json"},
    )


@pytest.fixture
def service(rig: Rig) -> ServiceRig:
    rig.panther.generate(ALERTS, spacing=0.5)
    workdir = rig.tmp / "cwd"
    state_dir = rig.tmp / "state"
    workdir.mkdir()
    state_dir.mkdir()
    return ServiceRig(rig, service_config(rig, state_dir), workdir, state_dir)


@contextlib.asynccontextmanager
async def reaped(proc: asyncio.subprocess.Process) -> AsyncIterator[asyncio.subprocess.Process]:
    """Never leave the subprocess behind, whatever the test's outcome."""
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def in_flight(service: ServiceRig) -> Callable[[], bool]:
    """True once BigPanda has a batch it has not answered yet."""
    return lambda: any(r.status == 0 for r in service.posts())


def events(stderr: bytes) -> list[dict]:
    """The JSON log lines (the bridge logs JSON when stderr is not a terminal)."""
    parsed = []
    for line in stderr.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            parsed.append(json.loads(line))
    return parsed


class TestSigterm:
    """SIGTERM stops intake, lets the in-flight batch finish, persists state and exits 0."""

    async def test_in_flight_batch_completes_and_restart_sends_nothing(
        self, service: ServiceRig
    ) -> None:
        service.bigpanda.script("slow:2")  # the first batch takes 2 s: in flight when we signal
        async with reaped(await service.start("run")) as proc:
            await wait_until(in_flight(service), 10, what="a batch in flight")
            assert not service.bigpanda.accepted
            proc.send_signal(signal.SIGTERM)
            _stdout, stderr = await asyncio.wait_for(proc.communicate(), 12)

        log = events(stderr)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert service.delivered() == set(service.panther.alerts), "the in-flight batch completed"
        names = [e.get("event") for e in log]
        assert "bridge.stopping" in names
        stopped = next(e for e in log if e.get("event") == "bridge.stopped")
        assert stopped["pending"] == 0
        assert "bridge.shutdown_grace_expired" not in names
        assert service.outbox_counts()["pending"] == 0
        assert service.outbox_counts()["jobs"] == 0
        service.assert_writes_only_state()

        posts_before = len(service.posts())
        async with reaped(await service.start("once", "--timeout", "5")) as again:
            _stdout, stderr = await asyncio.wait_for(again.communicate(), 12)
        assert again.returncode == 0, stderr.decode()[-2000:]
        assert len(service.posts()) == posts_before, "nothing is resent after a restart"
        assert len(service.bigpanda.accepted) == ALERTS
        service.assert_writes_only_state()

    async def test_grace_period_bounds_a_stuck_batch(self, service: ServiceRig) -> None:
        """A batch slower than shutdown_grace is cancelled; its events stay pending, not lost."""
        service.config = service_config(service.rig, service.state_dir, shutdown_grace=1)
        service.bigpanda.script("slow:4")
        async with reaped(await service.start("run")) as proc:
            await wait_until(in_flight(service), 10, what="a batch in flight")
            proc.send_signal(signal.SIGTERM)
            _stdout, stderr = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert "bridge.shutdown_grace_expired" in [e.get("event") for e in events(stderr)]
        assert service.outbox_counts()["pending"] == ALERTS

        async with reaped(await service.start("once", "--timeout", "5")) as again:
            _stdout, stderr = await asyncio.wait_for(again.communicate(), 12)
        assert again.returncode == 0, stderr.decode()[-2000:]
        assert service.delivered() == set(service.panther.alerts)


class TestSecondSignal:
    """A second SIGTERM/SIGINT exits at once; the state stays consistent for the next start."""

    @pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
    async def test_second_signal_exits_immediately(
        self, service: ServiceRig, second: signal.Signals
    ) -> None:
        service.bigpanda.script("slow:4")
        async with reaped(await service.start("run")) as proc:
            await wait_until(in_flight(service), 10, what="a batch in flight")
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert proc.returncode is None, "the first signal waits for the in-flight batch"
            proc.send_signal(second)
            _stdout, stderr = await asyncio.wait_for(proc.communicate(), 5)
        assert proc.returncode != 0
        assert "bridge.forced_exit" in [e.get("event") for e in events(stderr)]
        assert service.outbox_counts()["pending"] == ALERTS  # nothing lost, nothing half-written

        async with reaped(await service.start("once", "--timeout", "5")) as again:
            _stdout, stderr = await asyncio.wait_for(again.communicate(), 12)
        assert again.returncode == 0, stderr.decode()[-2000:]
        assert service.delivered() == set(service.panther.alerts)


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
    async def test_private_ca(self, rig: Rig, private_ca, trusted: bool) -> None:
        import ssl

        from aiohttp import web

        cert, key = private_ca
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        panther = PantherSimulator(token=PANTHER_TOKEN)  # the rig's own one speaks plain HTTP
        panther.generate(3, spacing=0.5)
        runner = web.AppRunner(panther.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            settings = rig.settings(
                panther={
                    "api_url": f"https://127.0.0.1:{port}",
                    "ca_bundle": str(cert) if trusted else None,
                },
                logging={"level": "error"},
            )
            ok, error = await once(settings)
        finally:
            await runner.cleanup()
        if trusted:
            assert ok, error
            assert len(rig.bigpanda.accepted) == 3
        else:
            assert not ok
            assert "certificate" in error.lower() or "ssl" in error.lower(), error
            assert not rig.bigpanda.accepted


class TestProxy:
    """HTTP(S)_PROXY / NO_PROXY are honoured, resolved once per target at startup."""

    async def test_proxy_and_no_proxy(self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        import aiohttp
        from aiohttp import web

        rig.panther.generate(3, spacing=0.5)
        proxied: list[str] = []
        async with aiohttp.ClientSession() as upstream:
            # A forward proxy that knows `panther.proxied.test`, a name only it can resolve.
            async def forward(request: web.Request) -> web.Response:
                proxied.append(str(request.url))
                target = rig.panther_url + request.raw_path.split("panther.proxied.test", 1)[1]
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
                ok, error = await once(rig.settings(
                    panther={"api_url": "http://panther.proxied.test"},
                    catalog={"enabled": False},
                    logging={"level": "error"},
                ))
        assert ok, error
        assert len(rig.bigpanda.accepted) == 3
        assert proxied and all("panther.proxied.test" in url for url in proxied)


async def once(settings: Settings) -> tuple[bool, str]:
    """`bridge once` in-process: whether it worked, and the last poll error if it did not."""
    async with Bridge(settings) as bridge:
        ok = await bridge.once(timeout=5)
        return ok, bridge.health.last_poll_error or ""
