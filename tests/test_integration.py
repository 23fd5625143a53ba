"""The real bridge against both simulators over loopback: the walking skeleton end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.config import Settings, load_config
from bridge.service import Bridge
from bridge.sim import serve_app
from bridge.sim.bigpanda import BigPandaSimulator
from bridge.sim.panther import PantherSimulator
from bridge.timeutil import epoch_seconds

PANTHER_TOKEN = "it-panther-token-0123456789"
BIGPANDA_TOKEN = "it-bigpanda-token-0123456789"


@dataclass
class Stack:
    panther: PantherSimulator
    bigpanda: BigPandaSimulator
    config_path: Path

    def settings(self) -> Settings:
        return load_config(
            self.config_path,
            environ={"PANTHER_API_TOKEN": PANTHER_TOKEN, "BIGPANDA_API_TOKEN": BIGPANDA_TOKEN},
        )


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    panther = PantherSimulator(token=PANTHER_TOKEN, seed=7)
    bigpanda = BigPandaSimulator(token=BIGPANDA_TOKEN, app_keys=["it-app"])
    async with serve_app(panther.app) as panther_url, serve_app(bigpanda.app) as bigpanda_url:
        config = tmp_path / "bridge.yaml"
        config.write_text(
            f"""
panther:
  api_url: {panther_url}
  api_token: ${{PANTHER_API_TOKEN}}
  poll_interval: 0.2s
  initial_lookback: 2h
bigpanda:
  api_url: {bigpanda_url}
  api_token: ${{BIGPANDA_API_TOKEN}}
  app_key: it-app
  batch_size: 20
state:
  path: {tmp_path / "state" / "bridge.db"}
server:
  host: 127.0.0.1
  port: 0
"""
        )
        yield Stack(panther, bigpanda, config)


async def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


class RunningBridge:
    """`bridge run` in-process: started as a task, stopped through its stop event."""

    def __init__(self, settings: Settings) -> None:
        self.bridge = Bridge(settings)
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Bridge:
        await self.bridge.__aenter__()
        self.task = asyncio.create_task(self.bridge.run(self.stopping))
        return self.bridge

    async def __aexit__(self, *exc: object) -> None:
        self.stopping.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 20)
        await self.bridge.__aexit__(None, None, None)


def posts(sim: BigPandaSimulator) -> int:
    return sum(1 for r in sim.requests if r.method == "POST")


def alert_polls(sim: PantherSimulator) -> int:
    return sum(1 for r in sim.requests if r.path == "/alerts")


class TestEndToEnd:
    """N alerts in Panther become exactly N BigPanda events; restarts send nothing again."""

    async def test_alerts_flow_once_across_restart(self, stack: Stack) -> None:
        generated = stack.panther.generate(40, spacing=30.0)
        by_id = {a["id"]: a for a in generated}

        async with RunningBridge(stack.settings()):
            await wait_until(lambda: len(stack.bigpanda.accepted) >= 40)
            await asyncio.sleep(0.5)  # a few more polls: nothing new may be sent

        accepted = [a.alert for a in stack.bigpanda.accepted]
        assert len(accepted) == 40
        assert {a["panther_alert_id"] for a in accepted} == set(by_id)
        for alert in accepted:
            source = by_id[alert["panther_alert_id"]]
            assert type(alert["timestamp"]) is int
            assert alert["timestamp"] == epoch_seconds(source["createdAt"])
            assert alert["incident_identifier"] == f"panther-{source['id']}"
            expected_status = {"CRITICAL": "critical", "HIGH": "critical"}.get(
                source["severity"], "warning"
            )
            assert alert["status"] == expected_status
        assert {a.app_key for a in stack.bigpanda.accepted} == {"it-app"}

        # Restart on the same state: it polls again but sends nothing.
        posts_before = posts(stack.bigpanda)
        polls_before = alert_polls(stack.panther)
        async with RunningBridge(stack.settings()):
            await wait_until(lambda: alert_polls(stack.panther) >= polls_before + 3)
        assert posts(stack.bigpanda) == posts_before
        assert len(stack.bigpanda.accepted) == 40

        # New alerts after the restart: only those are sent.
        newer = stack.panther.generate(5, spacing=0.01, start=None)
        async with RunningBridge(stack.settings()):
            await wait_until(lambda: len(stack.bigpanda.accepted) >= 45)
            await asyncio.sleep(0.5)
        accepted_ids = [a.alert["panther_alert_id"] for a in stack.bigpanda.accepted]
        assert len(accepted_ids) == 45 == len(set(accepted_ids))
        assert set(accepted_ids[40:]) == {a["id"] for a in newer}

    async def test_once_reports_done_and_readiness(self, stack: Stack) -> None:
        stack.panther.generate(12, spacing=10.0)
        async with Bridge(stack.settings()) as bridge:
            assert await bridge.once(timeout=20) is True
            ready, details = bridge.health.readiness()
            assert ready, details
            text = bridge.metrics.render().decode()
        assert len(stack.bigpanda.accepted) == 12
        assert 'bridge_events_received_total{kind="alert"} 12.0' in text
        assert "bridge_watermark_timestamp_seconds" in text

    async def test_bigpanda_down_keeps_events_and_once_fails(self, stack: Stack) -> None:
        stack.panther.generate(3, spacing=10.0)
        stack.bigpanda.outage(60)
        async with Bridge(stack.settings()) as bridge:
            assert await bridge.once(timeout=0.5) is False
            assert bridge.outbox.counts()["pending"] == 3
        assert stack.bigpanda.accepted == []

    async def test_wrong_panther_token_is_not_ready(self, stack: Stack, tmp_path: Path) -> None:
        settings = load_config(
            stack.config_path,
            environ={"PANTHER_API_TOKEN": "wrong-token-xyz", "BIGPANDA_API_TOKEN": BIGPANDA_TOKEN},
        )
        async with Bridge(settings) as bridge:
            assert await bridge.once(timeout=0.5) is False
            ready, details = bridge.health.readiness()
        assert not ready
        reasons = " ".join(details["reasons"])
        assert "Panther refuses our credentials" in reasons
        assert "wrong-token-xyz" not in reasons
