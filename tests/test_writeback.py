"""The writer: write-backs leave the outbox for Panther once, or stay / die with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from bridge.health import Health
from bridge.metrics import Metrics
from bridge.panther.client import PantherClient
from bridge.panther.writes import PantherWrites
from bridge.retry import RetryPolicy
from bridge.sim import serve_app
from bridge.sim.panther import PantherSimulator
from bridge.state.records import WRITEBACK_KINDS, NewEvent
from bridge.state.sqlite import Outbox
from bridge.sync_back import KIND_COMMENT, KIND_STATUS, writeback_key
from bridge.writeback import WriteBack


def status_event(alert_id: str, status: str = "RESOLVED") -> NewEvent:
    return NewEvent(writeback_key("inc-1", "act-1", alert_id, "status"), alert_id, KIND_STATUS,
                    status, "", orjson.dumps({"alert_id": alert_id, "status": status}), 1.0)


def comment_event(alert_id: str, body: str) -> NewEvent:
    return NewEvent(writeback_key("inc-1", "act-1", alert_id, "comment"), alert_id, KIND_COMMENT,
                    "", "", orjson.dumps({"alert_id": alert_id, "body": body}), 1.0)


class Rig:
    def __init__(self, sim: PantherSimulator, outbox: Outbox, writer: WriteBack,
                 health: Health, metrics: Metrics, own: set[str]) -> None:
        self.sim, self.outbox, self.writer = sim, outbox, writer
        self.health, self.metrics, self.own = health, metrics, own


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    sim = PantherSimulator(token="t")
    outbox = Outbox.open(tmp_path / "state.db")
    metrics, health, own = Metrics(), Health(poll_interval=1.0), set()
    async with serve_app(sim.app) as url, aiohttp.ClientSession() as session:
        writes = PantherWrites(PantherClient(session, api_url=url, api_token="t", metrics=metrics))
        policy = RetryPolicy.from_settings(initial_backoff=0.001, max_backoff=0.001)
        writer = WriteBack(writes, outbox, metrics, health, policy, own_actor_ids=own)
        yield Rig(sim, outbox, writer, health, metrics, own)
    outbox.close()


def queued(outbox: Outbox) -> list[str]:
    return [e.alert_id for e in outbox.due(100, now=float("inf"), kinds=WRITEBACK_KINDS)]


class TestWriter:
    """Statuses in PATCH chunks, comments one by one; the token is known before any write."""

    async def test_writes_once(self, rig: Rig) -> None:
        ids = [a["id"] for a in rig.sim.generate(30)]
        rig.outbox.record([status_event(i) for i in ids] + [comment_event(ids[0], "why")])
        assert rig.outbox.due(100, now=float("inf")) == []  # the BigPanda dispatcher's view
        assert await rig.writer.step() == 31
        assert rig.own == {rig.sim.writes.token_id}
        assert all(rig.sim.alerts[i]["status"] == "RESOLVED" for i in ids)
        assert rig.sim.writes.comments_on(ids[0]) == ["why"]
        patches = [r for r in rig.sim.requests if r.method == "PATCH"]
        assert len(patches) == 2
        assert queued(rig.outbox) == []
        assert await rig.writer.step() == 0  # nothing written twice

    async def test_a_comment_written_before_a_crash_is_not_posted_again(self, rig: Rig) -> None:
        """Panther took the comment but the bridge died before recording it: on the next round
        the write-back is still pending, and the comment this token left is found instead."""
        alert_id = rig.sim.generate(1)[0]["id"]
        rig.outbox.record([comment_event(alert_id, "resolved by the NOC")])
        real = rig.writer.writes.add_comment

        async def answer_then_crash(alert: str, body: str) -> object:
            await real(alert, body)
            raise asyncio.CancelledError  # the process stops before the commit

        rig.writer.writes.add_comment = answer_then_crash  # type: ignore[method-assign]
        with pytest.raises(asyncio.CancelledError):
            await rig.writer.step()
        assert queued(rig.outbox) == [alert_id], "not recorded: still pending"
        rig.writer.writes.add_comment = real  # type: ignore[method-assign]
        assert await rig.writer.step() == 1
        assert rig.sim.writes.comments_on(alert_id) == ["resolved by the NOC"]
        assert queued(rig.outbox) == []
        assert rig.metrics.registry.get_sample_value(
            "bridge_writebacks_total", {"kind": KIND_COMMENT, "outcome": "skipped_already_written"}
        ) == 1

    async def test_unknown_alert_is_dead_lettered_alone(self, rig: Rig) -> None:
        ids = [a["id"] for a in rig.sim.generate(3)]
        rig.outbox.record([status_event(i) for i in [ids[0], "f" * 32, ids[1]]]
                          + [comment_event("e" * 32, "x")])
        assert await rig.writer.step() == 2
        dead = rig.outbox.dead_letters()
        assert sorted(d.alert_id for d in dead) == ["e" * 32, "f" * 32]
        assert {d.kind for d in dead} == {KIND_STATUS, KIND_COMMENT}
        assert all(d.reason == "rejected" and "404" in d.detail for d in dead)
        assert rig.sim.alerts[ids[0]]["status"] == rig.sim.alerts[ids[1]]["status"] == "RESOLVED"

    async def test_missing_permission_keeps_everything(self, rig: Rig) -> None:
        (alert,) = rig.sim.generate(1)
        rig.outbox.record([status_event(alert["id"])])
        rig.sim.writes.deny("PATCH /alerts")
        assert await rig.writer.step() == 0
        ready, details = rig.health.readiness()
        assert not ready and any("Manage Alerts" in r for r in details["reasons"])
        assert queued(rig.outbox) == [alert["id"]]
        (pending,) = rig.outbox.due(10, now=float("inf"), kinds=WRITEBACK_KINDS)
        assert pending.attempts == 0
        rig.sim.writes.allow("PATCH /alerts")
        await asyncio.sleep(0.01)  # past the (tiny) backoff
        assert await rig.writer.step() == 1
        assert rig.health.panther_write_refused is None

    async def test_server_error_is_retried(self, rig: Rig) -> None:
        (alert,) = rig.sim.generate(1)
        rig.outbox.record([status_event(alert["id"])])
        rig.sim.script("500", path="/alerts")
        assert await rig.writer.step() == 0
        (pending,) = rig.outbox.due(10, now=float("inf"), kinds=WRITEBACK_KINDS)
        assert pending.attempts == 1 and "500" in rig.outbox._conn.execute(
            "SELECT last_error FROM queue").fetchone()[0]
        await asyncio.sleep(0.01)
        assert await rig.writer.step() == 1
        assert rig.metrics.registry.get_sample_value(
            "bridge_writebacks_total", {"kind": KIND_STATUS, "outcome": "retried"}) == 1

    async def test_nothing_written_without_the_token(self, rig: Rig) -> None:
        (alert,) = rig.sim.generate(1)
        rig.outbox.record([status_event(alert["id"])])
        rig.sim.script("500", path="/api-tokens/self")
        assert await rig.writer.step() == 0
        assert rig.sim.alerts[alert["id"]]["status"] == "OPEN"
        assert await rig.writer.step() == 1
