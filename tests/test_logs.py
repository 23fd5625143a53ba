"""Logs: no token or Authorization header ever appears, JSON when not a terminal, bursts collapsed.

The secret checks run the real bridge against servers that refuse it (401/403), fail (500) and
echo our credentials back in their error bodies: the worst case for a log line quoting a response.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from aiohttp import web
from harness import wait_until
from structlog.testing import capture_logs

from bridge import logs
from bridge.config import load_config
from bridge.logs import BurstLimiter
from bridge.service import Bridge
from bridge.sim import serve_app
from bridge.sim.panther import PantherSimulator

# Distinctive values: if any of these shows up anywhere in a log line, a secret leaked.
PANTHER_TOKEN = "PTOKEN-7Qx2-never-log-me-panther"
BIGPANDA_TOKEN = "BTOKEN-9Kz4-never-log-me-bigpanda"
SECRETS = (PANTHER_TOKEN, BIGPANDA_TOKEN)
APP_KEY = "logs-app-key"
ANSWERED = web.AppKey("answered", list)


def echoing_bigpanda(statuses: list[int]) -> web.Application:
    """A BigPanda that answers `statuses` in turn (then the last one forever), quoting our
    Authorization header back in its error body, as some proxies and gateways do."""
    answers = list(statuses)
    answered: list[int] = []

    async def alerts(request: web.Request) -> web.Response:
        status = answers.pop(0) if len(answers) > 1 else answers[0]
        answered.append(status)
        body = {
            "status": "error",
            "message": f"request refused for Authorization: {request.headers.get('Authorization')}",
            "headers": dict(request.headers),
        }
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/data/v2/alerts", alerts)
    app[ANSWERED] = answered
    return app


def failing_panther() -> PantherSimulator:
    """Panther that fails, refuses our key, then serves alerts (so there is something to send)."""
    panther = PantherSimulator(token=PANTHER_TOKEN)
    panther.generate(5, spacing=0.5)
    panther.script("401,500,503,403")
    return panther


def config_doc(panther_url: str, bigpanda_url: str, state: Path) -> dict[str, Any]:
    return {
        "panther": {
            "api_url": panther_url,
            "api_token": PANTHER_TOKEN,
            "poll_interval": 0.1,
            "overlap": 0,
        },
        "bigpanda": {"api_url": bigpanda_url, "api_token": BIGPANDA_TOKEN, "app_key": APP_KEY},
        "state": {"path": str(state)},
        "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace": 1},
        "logging": {"level": "debug"},
        "retry": {"initial_backoff": 0.01, "max_backoff": 0.05},
    }


# What a run against refusing and failing servers must have logged before it is judged.
EXPECTED_EVENTS = {"poll.unauthorized", "poll.completed", "bigpanda.credentials_refused"}


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a token leaked into the logs: ...{secret[-8:]}"
    assert "Bearer BTOKEN" not in text
    lowered = text.lower()
    for header in ("authorization", "x-api-key"):
        # The header's name may be mentioned; its value never: every occurrence is redacted.
        for at in range(len(lowered)):
            at = lowered.find(header, at)
            if at < 0:
                break
            assert "TOKEN-" not in text[at : at + 80], text[at : at + 120]


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, str, list[int]]]:
    panther = failing_panther()
    bigpanda = echoing_bigpanda([500, 401, 403])
    async with serve_app(panther.app) as panther_url, serve_app(bigpanda) as bigpanda_url:
        yield panther_url, bigpanda_url, bigpanda[ANSWERED]


class TestNoSecretsInLogs:
    """Across a failing run, neither token nor an Authorization header value is ever logged."""

    async def test_captured_events_hold_no_secret(self, servers, tmp_path: Path) -> None:
        """structlog's capture_logs sees events before any processor: they must be clean at the
        source, not only after the scrubber."""
        panther_url, bigpanda_url, _answered = servers
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump(config_doc(panther_url, bigpanda_url, tmp_path / "b.db")))
        settings = load_config(path, environ={})
        stopping = asyncio.Event()
        with capture_logs() as captured:
            async with Bridge(settings) as bridge:
                service = asyncio.create_task(bridge.run(stopping))
                await wait_until(
                    lambda: EXPECTED_EVENTS <= {e["event"] for e in captured}, 8,
                    what=f"the events {sorted(EXPECTED_EVENTS)}",
                )
                stopping.set()
                await asyncio.wait_for(service, 10)
        names = {e["event"] for e in captured}
        assert EXPECTED_EVENTS <= names
        assert bridge.health.bigpanda_refused, "the run never reached BigPanda's 401"
        dumped = json.dumps(captured, default=str)
        assert "request refused for Authorization" in dumped, "the echoing bodies were logged"
        assert_no_secret(repr(captured))
        assert_no_secret(dumped)

    async def test_process_output_holds_no_secret(self, servers, tmp_path: Path) -> None:
        """What an operator sees: the JSON lines of `bridge run` on stderr (not a terminal)."""
        panther_url, bigpanda_url, answered = servers
        doc = config_doc(panther_url, bigpanda_url, tmp_path / "b.db")
        doc["panther"]["api_token"] = "${LOGS_PANTHER_TOKEN}"
        doc["bigpanda"]["api_token"] = "${LOGS_BIGPANDA_TOKEN}"
        doc["logging"]["format"] = "auto"
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump(doc))
        env = {
            **os.environ,
            "LOGS_PANTHER_TOKEN": PANTHER_TOKEN,
            "LOGS_BIGPANDA_TOKEN": BIGPANDA_TOKEN,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            "run",
            "--config",
            str(path),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            # Read stderr until BigPanda refused us twice (401, 403) and the bridge said so.
            assert proc.stderr is not None
            head: list[bytes] = []

            async def logged_refusals() -> bool:
                head.append(await asyncio.wait_for(proc.stderr.readline(), 12))
                return sum(code in (401, 403) for code in answered) >= 2 and EXPECTED_EVENTS <= {
                    json.loads(line)["event"] for line in head if line.strip()
                }

            await wait_until(logged_refusals, 12, what="the refusals logged", every=0)
            proc.send_signal(signal.SIGTERM)
            stdout, rest = await asyncio.wait_for(proc.communicate(), 10)
            stderr = b"".join(head) + rest
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = stderr.decode()
        lines = [line for line in text.splitlines() if line.strip()]
        events = [json.loads(line) for line in lines]  # every line is JSON: not a terminal
        names = {e["event"] for e in events}
        assert EXPECTED_EVENTS <= names
        assert all({"event", "level", "timestamp"} <= e.keys() for e in events)
        assert_no_secret(text + stdout.decode())


class TestFormat:
    """`format: auto` is JSON unless the stream is a terminal; then it is for people."""

    class _Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def test_json_when_not_a_tty(self) -> None:
        stream = io.StringIO()
        logs.configure("info", "auto", stream)
        structlog.get_logger("t").info("poll.completed", pages=1, new_events=3)
        event = json.loads(stream.getvalue())
        assert event["event"] == "poll.completed" and event["new_events"] == 3
        assert event["level"] == "info" and event["timestamp"].endswith("Z")

    def test_console_on_a_tty(self) -> None:
        stream = self._Terminal()
        logs.configure("info", "auto", stream)
        structlog.get_logger("t").info("poll.completed", pages=1)
        out = stream.getvalue()
        assert "poll.completed" in out
        with pytest.raises(ValueError):
            json.loads(out)

    def test_secret_keys_and_values_are_scrubbed_in_output(self) -> None:
        stream = io.StringIO()
        logs.configure("info", "json", stream)
        logs.scrubber.register([BIGPANDA_TOKEN])
        structlog.get_logger("t").warning(
            "http.failed",
            headers={"Authorization": f"Bearer {BIGPANDA_TOKEN}", "Accept": "json"},
            error=f"echo: {BIGPANDA_TOKEN}",
            api_token="anything",
        )
        text = stream.getvalue()
        assert_no_secret(text)
        event = json.loads(text)
        assert event["headers"]["Authorization"] == logs.REDACTED
        assert event["api_token"] == logs.REDACTED


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestBurstLimiter:
    """Identical warnings within a window pass `burst` times; the next one after says how many
    were dropped; info and other events are untouched."""

    def run(self, limiter: BurstLimiter, level: str, event: str) -> dict[str, Any] | None:
        try:
            return limiter(None, level, {"event": event, "level": level})
        except structlog.DropEvent:
            return None

    def test_burst_then_suppressed_count(self) -> None:
        clock = FakeClock()
        limiter = BurstLimiter(window=10, burst=3, clock=clock)
        passed = [self.run(limiter, "warning", "poll.failed") for _ in range(50)]
        assert sum(e is not None for e in passed) == 3
        assert all("suppressed" not in e for e in passed if e)
        clock.now += 10
        event = self.run(limiter, "warning", "poll.failed")
        assert event is not None and event["suppressed"] == 47
        assert "suppressed" not in (self.run(limiter, "warning", "poll.failed") or {})

    def test_keys_are_independent_and_info_is_never_limited(self) -> None:
        limiter = BurstLimiter(window=10, burst=1, clock=FakeClock())
        assert self.run(limiter, "error", "batch.rejected")
        assert self.run(limiter, "warning", "batch.rejected")  # another level, another key
        assert self.run(limiter, "error", "job.failed")
        assert self.run(limiter, "error", "batch.rejected") is None
        for _ in range(100):
            assert self.run(limiter, "info", "poll.completed")
            assert self.run(limiter, "debug", "poll.completed")

    def test_configured_pipeline_collapses_a_flood(self) -> None:
        stream = io.StringIO()
        logs.configure("info", "json", stream, limiter=BurstLimiter(window=60, burst=3))
        log = structlog.get_logger("t")
        for i in range(200):
            log.warning("poll.failed", status=503, consecutive_failures=i + 1)
            log.info("poll.completed", pages=0)
        events = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert sum(e["event"] == "poll.failed" for e in events) == 3
        assert sum(e["event"] == "poll.completed" for e in events) == 200

    def test_window_follows_the_clock_it_is_given(self) -> None:
        now = [100.0]
        limiter = BurstLimiter(window=10.0, burst=1, clock=lambda: now[0])
        assert self.run(limiter, "warning", "x")
        assert self.run(limiter, "warning", "x") is None
        now[0] += 9.9
        assert self.run(limiter, "warning", "x") is None, "still inside the window"
        now[0] += 0.2
        event = self.run(limiter, "warning", "x")
        assert event is not None and event["suppressed"] == 2
