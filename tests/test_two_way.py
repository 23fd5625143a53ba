"""Two-way sync end to end: the real bridge between both simulators, people acting in BigPanda."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from harness import Rig, kill_and_show_log, metric, running, settled, spawn, wait_until

from bridge.sim.bigpanda_incidents import DEFAULT_USER_API_KEY, RESOURCES
from bridge.state.records import WRITEBACK_KINDS
from bridge.state.sqlite import Outbox

WAIT = 30.0


def sync_back_settings(rig: Rig, **overrides: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "api_key": DEFAULT_USER_API_KEY,
        "environment_id": rig.bigpanda.incidents.environment_id,
        "interval": 0.2,
        "rate_limit": 0,
        **overrides,
    }


def incident_requests(rig: Rig) -> list[str]:
    return [r.path for r in rig.bigpanda.requests if r.path.startswith(RESOURCES)]


class TestTwoWay:
    """Resolutions and comments by people in BigPanda reach exactly the alerts behind them."""

    async def test_acceptance(self, rig: Rig) -> None:
        rig.bigpanda.incidents.rate_limit = None
        ids = [a["id"] for a in rig.panther.generate(50, spacing=0.01)]
        settings = rig.settings(
            panther={"status_sync_interval": 0.2}, sync_back=sync_back_settings(rig)
        )
        store = rig.bigpanda.incidents
        async with running(settings) as bridge:
            await wait_until(
                lambda: len(set(rig.delivered())) == 50 and settled(bridge), WAIT,
                what="50 alerts forwarded",
            )
            behind: dict[str, list[str]] = {}
            for alert_id in ids:
                behind.setdefault(store.incident_of(f"panther-{alert_id}").id, []).append(
                    alert_id
                )
            groups = sorted((i for i, a in behind.items() if len(a) >= 2),
                            key=lambda i: -len(behind[i]))
            assert len(groups) >= 6, f"too few multi-alert incidents: {behind}"
            person, commented, own = groups[0:2], groups[2:4], groups[4:6]
            untouched = [i for i in behind if i not in person + commented + own]

            # An analyst resolves in Panther: the bridge's ok events resolve the incident.
            for incident_id in own:
                for alert_id in behind[incident_id]:
                    rig.panther.set_status(alert_id, "RESOLVED", by="analyst-ana")
            await wait_until(
                lambda: all(not store.incidents[i].active for i in own), WAIT,
                what="incidents resolved by the bridge's ok events",
            )
            for incident_id in own:
                assert store.incidents[incident_id].activities[-1]["type"] == (
                    "incident_resolved_by_alerts"
                )
            # NOC engineers act in BigPanda.
            for incident_id in person:
                store.resolve_incident(incident_id, user="noc-jane", comment="fixed upstream")
            for incident_id in commented:
                store.comment_incident(incident_id, "noc-bob", "looking into it")

            def followed() -> bool:
                comments = rig.panther.writes.comments
                return all(
                    rig.panther.alerts[a]["status"] == "RESOLVED" and len(comments.get(a, ()))
                    for i in person for a in behind[i]
                ) and all(len(comments.get(a, ())) for i in commented for a in behind[i])

            await wait_until(followed, WAIT, what="Panther alerts following BigPanda")
            # The status sync sees the bridge's own writes, and lets them be.
            person_alerts = [a for i in person for a in behind[i]]
            await wait_until(
                lambda: set(bridge.outbox.tracked_statuses(person_alerts).values())
                == {"RESOLVED"} and settled(bridge),
                WAIT, what="status sync saw the write-backs",
            )
            # A few more sync-back rounds: nothing new may come of them.
            reads = len(incident_requests(rig))
            await wait_until(lambda: len(incident_requests(rig)) >= reads + 6, WAIT,
                             what="more sync-back rounds")
            await wait_until(lambda: settled(bridge), WAIT, what="settled")
            written = metric(bridge, "bridge_writebacks_total", kind="writeback_status",
                             outcome="written")
            searches = metric(bridge, "bridge_http_requests_total", target="bigpanda",
                              endpoint="/resources/v2.0/environments/{env}/incidents",
                              code="200")

        token = rig.panther.writes.token_id
        comments = rig.panther.writes.comments
        for alert_id in ids:
            alert = rig.panther.alerts[alert_id]
            incident_id = store.incident_of(f"panther-{alert_id}").id
            bodies = rig.panther.writes.comments_on(alert_id)
            if incident_id in person:
                assert alert["status"] == "RESOLVED"
                assert alert["updatedBy"] == {"id": token, "type": "api-token"}
                assert len(bodies) == 1
                assert "noc-jane" in bodies[0] and "fixed upstream" in bodies[0]
            elif incident_id in commented:
                assert alert["status"] == "OPEN"
                assert bodies == [
                    f"BigPanda comment by noc-bob on incident {incident_id}: looking into it"
                ]
            elif incident_id in own:
                assert alert["status"] == "RESOLVED"
                assert alert["updatedBy"]["id"] == "analyst-ana"
                assert alert_id not in comments
            else:
                assert incident_id in untouched
                assert alert["status"] == "OPEN"
                assert alert_id not in comments
        assert written == len(person_alerts)
        assert searches > 0
        # BigPanda: each alert's first event, plus one ok for each analyst-resolved alert;
        # nothing follows the write-backs (the person's resolution is already there).
        events = Counter(a.alert["incident_identifier"] for a in rig.bigpanda.accepted)
        own_alerts = {a for i in own for a in behind[i]}
        assert events == Counter(
            {f"panther-{a}": 2 if a in own_alerts else 1 for a in ids}
        )
        for incident_id in person:
            assert not store.incidents[incident_id].active
            assert [x["type"] for x in store.incidents[incident_id].activities] == [
                "incident_resolved_ui_manually"
            ]

    async def test_off_without_the_section(self, rig: Rig) -> None:
        """With no sync_back section nothing calls BigPanda's incident APIs."""
        ids = rig.generate(5)
        settings = rig.settings(panther={"status_sync_interval": 0.2})
        assert settings.sync_back.enabled is False
        async with running(settings) as bridge:
            await wait_until(lambda: set(ids) <= set(rig.delivered()) and settled(bridge),
                             WAIT, what="delivered")
            incident = rig.bigpanda.incidents.incident_of(ids[0])
            rig.bigpanda.incidents.resolve_incident(incident.id, user="noc-jane")
            polls = len([r for r in rig.panther.requests if r.path == "/alerts"])
            await wait_until(
                lambda: len([r for r in rig.panther.requests if r.path == "/alerts"])
                >= polls + 5, WAIT, what="more polls",
            )
            assert bridge.sync_back is None and bridge.writeback is None
        assert incident_requests(rig) == []
        assert rig.panther.writes.comments == {}
        assert all(
            r.method == "GET" for r in rig.panther.requests
        ), "the bridge wrote to Panther without sync_back"


def queued_writebacks(config: Path) -> list[str]:
    """The dedup keys of write-backs waiting in the state (read beside the running bridge)."""
    outbox = Outbox.open(config.parent / "bridge.db", exclusive=False)
    try:
        return [
            f"{e.kind}:{e.alert_id}"
            for e in outbox.due(1000, now=float("inf"), kinds=WRITEBACK_KINDS)
        ]
    finally:
        outbox.close()


class TestCrash:
    """A SIGKILL between seeing a resolution and writing it: written once after the restart."""

    async def test_sigkill_before_the_write(self, rig: Rig, tmp_path: Path) -> None:
        log = tmp_path / "bridge.log"
        rig.bigpanda.incidents.rate_limit = None
        ids = [a["id"] for a in rig.panther.generate(8, spacing=0.01)]
        config = rig.write_config(sync_back=sync_back_settings(rig))
        store = rig.bigpanda.incidents
        proc = await spawn(config, log)
        try:
            await wait_until(lambda: len(set(rig.delivered())) == 8, WAIT, what="delivery")
            await wait_until(lambda: len(incident_requests(rig)) > 0, WAIT,
                             what="sync-back running")
            # Panther refuses the writes for now: the write-backs stay in the outbox.
            rig.panther.writes.deny("PATCH /alerts")
            rig.panther.writes.deny("POST /alert-comments")
            incident = store.incident_of(f"panther-{ids[0]}")
            behind = [a for a in ids if store.incident_of(f"panther-{a}").id == incident.id]
            store.resolve_incident(incident.id, user="noc-jane", comment="patched")
            await wait_until(
                lambda: len(queued_writebacks(config)) == 2 * len(behind)
                and any(r.status == 403 for r in rig.panther.requests),
                WAIT, what="write-backs recorded and refused", every=0.1,
            )
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            rig.panther.writes.allow("PATCH /alerts")
            rig.panther.writes.allow("POST /alert-comments")

            proc = await spawn(config, log)
            await wait_until(
                lambda: all(rig.panther.writes.comments_on(a) for a in behind)
                and all(rig.panther.alerts[a]["status"] == "RESOLVED" for a in behind),
                WAIT, what="write-backs after the restart",
            )
            await wait_until(lambda: not queued_writebacks(config), WAIT, what="queue empty",
                             every=0.1)
            reads = len(incident_requests(rig))
            await wait_until(lambda: len(incident_requests(rig)) >= reads + 6, WAIT,
                             what="more sync-back rounds")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        except BaseException:
            kill_and_show_log(proc, log)
            raise
        for alert_id in behind:
            assert len(rig.panther.writes.comments_on(alert_id)) == 1
        patches = [r for r in rig.panther.requests if r.method == "PATCH"]
        assert [r.status for r in patches if r.status != 403] == [204]
        for alert_id in set(ids) - set(behind):
            assert rig.panther.alerts[alert_id]["status"] == "OPEN"
            assert not rig.panther.writes.comments_on(alert_id)
