"""Panther faults: retried with backoff, counted, logged once per burst, the watermark stays put;
a permanent answer (400, 404) on the listing is retried at the slow cadence only."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import structlog
from aioresponses_compat import MockHttp
from harness import Rig, metric, running, wait_until

from bridge.config import Settings
from bridge.service import Bridge

API = "https://api.acme.runpanther.net"
ALERTS = re.compile(r"^https://api\.acme\.runpanther\.net/alerts(\?.*)?$")
ALERT = {"id": "a" * 32, "type": "RULE", "status": "OPEN", "severity": "HIGH",
         "createdAt": "2026-01-01T00:00:00Z", "detection": {"id": "Rule.X", "type": "RULE"}}


def settings(tmp_path: Path) -> Settings:
    return Settings(
        panther={"api_url": API, "api_token": "ptok-0123456789", "poll_interval": 1,
                 "initial_lookback": "100d", "overlap": 0, "timeout": 0.5},
        bigpanda={"api_url": "https://bp.example", "api_token": "btok-0123456789",
                  "app_key": "app"},
        state={"path": str(tmp_path / "state.db")},
        retry={"initial_backoff": 1, "max_backoff": 60, "max_retry_after": 30},
        catalog={"enabled": False},
    )


def ok(mock: MockHttp, results: list[dict[str, Any]] | None = None) -> None:
    mock.get(ALERTS, payload={"results": [ALERT] if results is None else results, "next": None})


FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "429": ({"status": 429, "payload": {"message": "Too Many Requests"},
             "headers": {"Retry-After": "7"}}, "rate_limited"),
    "500": ({"status": 500, "payload": {"message": "internal server error"}}, "server_error"),
    "502-html": ({"status": 502, "body": "<html><body>Bad Gateway</body></html>",
                  "content_type": "text/html"}, "server_error"),
    "504": ({"status": 504, "payload": {"message": "Endpoint request timed out"}},
            "server_error"),
    "timeout": ({"exception": TimeoutError()}, "timeout"),
    "html-200": ({"status": 200, "body": "<html>maintenance</html>",
                  "content_type": "text/html"}, "bad_response"),
    "invalid-json": ({"status": 200, "body": '{"results": [{"id": "',
                      "content_type": "application/json"}, "bad_response"),
    "results-not-list": ({"status": 200, "payload": {"results": {"oops": 1}, "next": None}},
                         "bad_response"),
}


class TestEachFault:
    """Each fault: the poll fails, is counted by reason, the watermark does not move, and the
    next poll (the loop goes on) records what the failed one could not."""

    @pytest.mark.parametrize("fault", sorted(FAULTS))
    async def test_fault(self, tmp_path: Path, mock: MockHttp, fault: str) -> None:
        response, reason = FAULTS[fault]
        async with Bridge(settings(tmp_path)) as bridge:
            mock.get(ALERTS, **response)
            assert await bridge.poll_cycle() is None
            assert bridge.outbox.watermark() is None
            assert bridge.outbox.counts()["pending"] == 0
            assert metric(bridge, "bridge_retries_total", target="panther", reason=reason) == 1
            assert bridge.health.last_poll_error
            assert bridge.poll_delay() > 1  # backed off beyond the poll interval
            ok(mock)
            result = await bridge.poll_cycle()
            assert result is not None and result.new_events == 1
            assert bridge.outbox.watermark() is not None
            assert bridge.poll_delay() == 1

    async def test_retry_after_honoured(self, tmp_path: Path, mock: MockHttp) -> None:
        async with Bridge(settings(tmp_path)) as bridge:
            mock.get(ALERTS, **FAULTS["429"][0])
            await bridge.poll_cycle()
            assert all(bridge.poll_delay() >= 7 for _ in range(20))

    async def test_backoff_is_jittered_and_grows(self, tmp_path: Path, mock: MockHttp) -> None:
        async with Bridge(settings(tmp_path)) as bridge:
            for _ in range(6):
                mock.get(ALERTS, status=503, payload={"message": "down"})
                await bridge.poll_cycle()
            delays = {round(bridge.poll_delay(), 3) for _ in range(20)}
            assert len(delays) > 5  # full jitter
            assert max(delays) <= 60 and max(delays) > 2


class TestLoggedOncePerBurst:
    """A burst of failures logs one warning, and its end one info line."""

    async def test_burst(self, tmp_path: Path, mock: MockHttp) -> None:
        async with Bridge(settings(tmp_path)) as bridge:
            with structlog.testing.capture_logs() as logs:
                for _ in range(5):
                    mock.get(ALERTS, status=500, payload={"message": "boom"})
                    await bridge.poll_cycle()
                ok(mock)
                await bridge.poll_cycle()
            failures = [e for e in logs if e["event"] == "poll.failed"]
            assert [e["log_level"] for e in failures].count("warning") == 1
            recovered = [e for e in logs if e["event"] == "poll.recovered"]
            assert len(recovered) == 1 and recovered[0]["failures"] == 5
            assert metric(bridge, "bridge_retries_total", target="panther",
                          reason="server_error") == 5


class TestUnauthorized:
    """401/403: one clear error naming the permission, /readyz not ready, nothing recorded."""

    @pytest.mark.parametrize("status", [401, 403])
    async def test_refused(self, tmp_path: Path, mock: MockHttp, status: int) -> None:
        async with Bridge(settings(tmp_path)) as bridge:
            with structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    mock.get(ALERTS, status=status, payload={"message": "Forbidden"})
                    assert await bridge.poll_cycle() is None
            errors = [e for e in logs if e["event"] == "poll.unauthorized"]
            assert len(errors) == 1
            assert "Read Alerts" in errors[0]["error"]
            ready, details = bridge.health.readiness()
            assert not ready
            assert any("Panther refuses our credentials" in r for r in details["reasons"])
            assert "ptok-0123456789" not in str(details)
            assert bridge.outbox.watermark() is None
            ok(mock)
            await bridge.poll_cycle()
            assert bridge.health.panther_refused is None


class TestPantherListingRejected:
    """A 400 or 404 on the alert listing: reported, /readyz says so, next try at max_backoff."""

    @pytest.mark.parametrize("status", [400, 404])
    async def test_listing(self, tmp_path: Path, mock: MockHttp, status: int) -> None:
        async with Bridge(settings(tmp_path)) as bridge:
            for _ in range(3):
                mock.get(ALERTS, status=status, payload={"message": "bad request"})
                assert await bridge.poll_cycle() is None
            assert metric(bridge, "bridge_retries_total", target="panther",
                          reason="rejected") == 3
            assert bridge.poll_delay() == 60
            ready, details = bridge.health.readiness()
            assert not ready
            (reason,) = [r for r in details["reasons"] if "rejects" in r]  # type: ignore[union-attr]
            assert f"HTTP {status}" in reason and "slow cadence" in reason
            mock.get(ALERTS, payload={"results": [ALERT], "next": None})
            result = await bridge.poll_cycle()
            assert result is not None and result.new_events == 1
            assert bridge.poll_delay() == 1
            assert bridge.health.panther_rejected == {}


class TestAgainstSimulator:
    """Scripted simulator faults during `bridge run`: every alert delivered once regardless."""

    async def test_faults_during_run(self, rig: Rig) -> None:
        expected = rig.generate(120, spacing=1.0)
        rig.panther.script("429:Retry-After=0.2,500,html,badjson,notlist,504,slow:0.8,ok")
        settings = rig.settings(
            panther={"poll_interval": 0.05, "timeout": 0.4, "status_sync_interval": 0.2},
            retry={"initial_backoff": 0.05, "max_backoff": 0.3},
            catalog={"enabled": False},
        )
        async with running(settings) as bridge:
            await wait_until(lambda: set(expected) <= set(rig.delivered()), 9)
            await asyncio.sleep(0.3)
            retries = {
                r: metric(bridge, "bridge_retries_total", target="panther", reason=r)
                for r in ("rate_limited", "server_error", "bad_response", "timeout")
            }
        assert max(rig.delivered().values()) == 1
        assert len(rig.delivered()) == 120
        assert retries["rate_limited"] >= 1 and retries["server_error"] >= 2
        assert retries["bad_response"] >= 2 and retries["timeout"] >= 1

    async def test_status_sync_fault_keeps_loop_going(self, rig: Rig) -> None:
        (alert,) = rig.panther.generate(1, spacing=1.0, severity="LOW")
        settings = rig.settings(
            panther={"status_sync_interval": 0.1, "poll_interval": 0.1},
            retry={"initial_backoff": 0.05, "max_backoff": 0.2},
            catalog={"enabled": False},
        )
        async with running(settings) as bridge:
            await wait_until(lambda: len(rig.delivered()) == 1, 5)
            rig.panther.script("500,500,500")
            rig.panther.set_status(alert["id"], "RESOLVED")
            await wait_until(lambda: len(rig.bigpanda.accepted) == 2, 5)
            assert rig.bigpanda.accepted[-1].alert["status"] == "ok"
            assert bridge.sync_faults.failures == 0
