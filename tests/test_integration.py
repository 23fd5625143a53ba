"""The real bridge against both simulators over loopback: the walking skeleton end to end."""

from __future__ import annotations

from harness import APP_KEY, BIGPANDA_TOKEN, PANTHER_TOKEN, Rig, running, wait_until

from bridge.config import Settings, load_config
from bridge.service import Bridge
from bridge.sim.bigpanda import BigPandaSimulator
from bridge.sim.panther import PantherSimulator
from bridge.timeutil import epoch_seconds

ENVIRON = {"PANTHER_API_TOKEN": PANTHER_TOKEN, "BIGPANDA_API_TOKEN": BIGPANDA_TOKEN}


def settings(rig: Rig, environ: dict[str, str] = ENVIRON) -> Settings:
    """The rig's config with both tokens taken from the environment, as a deployment has them."""
    path = rig.write_config(
        panther={"api_token": "${PANTHER_API_TOKEN}", "initial_lookback": "2h"},
        bigpanda={"api_token": "${BIGPANDA_API_TOKEN}"},
        state={"path": str(rig.tmp / "state" / "bridge.db")},
    )
    return load_config(path, environ=environ)


def posts(sim: BigPandaSimulator) -> int:
    return sum(1 for r in sim.requests if r.method == "POST")


def alert_polls(sim: PantherSimulator) -> int:
    return sum(1 for r in sim.requests if r.path == "/alerts")


async def more_polls(rig: Rig, n: int) -> None:
    """Wait for `n` more listings of Panther's alerts than so far."""
    target = alert_polls(rig.panther) + n
    await wait_until(lambda: alert_polls(rig.panther) >= target, 15, what=f"{n} more polls")


class TestEndToEnd:
    """N alerts in Panther become exactly N BigPanda events; restarts send nothing again."""

    async def test_alerts_flow_once_across_restart(self, rig: Rig) -> None:
        generated = rig.panther.generate(40, spacing=30.0)
        by_id = {a["id"]: a for a in generated}

        async with running(settings(rig), stop_timeout=20, serve=True):
            await wait_until(lambda: len(rig.bigpanda.accepted) >= 40, 15, what="40 alerts")
            await more_polls(rig, 2)  # nothing new may be sent on later polls

        accepted = [a.alert for a in rig.bigpanda.accepted]
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
        assert {a.app_key for a in rig.bigpanda.accepted} == {APP_KEY}

        # Restart on the same state: it polls again but sends nothing.
        posts_before = posts(rig.bigpanda)
        async with running(settings(rig), stop_timeout=20, serve=True):
            await more_polls(rig, 3)
        assert posts(rig.bigpanda) == posts_before
        assert len(rig.bigpanda.accepted) == 40

        # New alerts after the restart: only those are sent.
        newer = rig.panther.generate(5, spacing=0.01, start=None)
        async with running(settings(rig), stop_timeout=20, serve=True):
            await wait_until(lambda: len(rig.bigpanda.accepted) >= 45, 15, what="45 alerts")
            await more_polls(rig, 2)
        accepted_ids = [a.alert["panther_alert_id"] for a in rig.bigpanda.accepted]
        assert len(accepted_ids) == 45 == len(set(accepted_ids))
        assert set(accepted_ids[40:]) == {a["id"] for a in newer}

    async def test_once_reports_done_and_readiness(self, rig: Rig) -> None:
        rig.panther.generate(12, spacing=10.0)
        async with Bridge(settings(rig)) as bridge:
            assert await bridge.once(timeout=20) is True
            ready, details = bridge.health.readiness()
            assert ready, details
            text = bridge.metrics.render().decode()
        assert len(rig.bigpanda.accepted) == 12
        assert 'bridge_events_received_total{kind="alert"} 12.0' in text
        assert "bridge_watermark_timestamp_seconds" in text

    async def test_bigpanda_down_keeps_events_and_once_fails(self, rig: Rig) -> None:
        rig.panther.generate(3, spacing=10.0)
        rig.bigpanda.outage(60)
        async with Bridge(settings(rig)) as bridge:
            assert await bridge.once(timeout=0.5) is False
            assert bridge.outbox.counts()["pending"] == 3
        assert rig.bigpanda.accepted == []

    async def test_wrong_panther_token_is_not_ready(self, rig: Rig) -> None:
        wrong = {**ENVIRON, "PANTHER_API_TOKEN": "wrong-token-xyz"}
        async with Bridge(settings(rig, wrong)) as bridge:
            assert await bridge.once(timeout=0.5) is False
            ready, details = bridge.health.readiness()
        assert not ready
        reasons = " ".join(details["reasons"])
        assert "Panther refuses our credentials" in reasons
        assert "wrong-token-xyz" not in reasons
