"""Sync back: BigPanda incident activities become write-back events, once, never echoes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.bigpanda.incidents import BigPandaIncidents
from bridge.config import SyncBackSettings
from bridge.metrics import Metrics
from bridge.sim import serve_app
from bridge.sim.bigpanda import BigPandaSimulator
from bridge.sim.bigpanda_incidents import DEFAULT_USER_API_KEY, IncidentStore
from bridge.state.records import WRITEBACK_KINDS, TrackedAlert
from bridge.state.sqlite import Outbox
from bridge.sync_back import (
    COMMENTED,
    OTHER,
    OWN_RESOLUTION,
    REOPENED,
    RESOLVED_BY_PERSON,
    RESOLVED_SOME,
    SyncBack,
    classify,
    panther_ids,
)


@pytest.mark.parametrize(
    ("kind", "meaning"),
    [
        ("incident_resolved_ui_manually", RESOLVED_BY_PERSON),
        ("incident_resolved_api", RESOLVED_BY_PERSON),
        ("incident_resolved_api_", RESOLVED_BY_PERSON),
        ("incident_resolved_by_alerts", OWN_RESOLUTION),
        ("Incident_alerts_resolved", RESOLVED_SOME),
        ("incident_reopened", REOPENED),
        ("incident_reopen", REOPENED),
        ("incident_commented", COMMENTED),
        ("incident_snoozed", OTHER),
        (None, OTHER),
    ],
)
def test_classify_accepts_the_documented_variants(kind: Any, meaning: str) -> None:
    assert classify(kind) == meaning


def test_panther_ids_from_tags() -> None:
    incident = {"alerts": [
        {"id": "b1", "tags": [{"name": "panther_alert_id", "value": "p1"}]},
        {"id": "b2", "tags": [{"name": "host", "value": "x"}]},  # another source: not ours
        {"id": "b3", "tags": {"panther_alert_id": ["p3"]}},
    ]}
    assert panther_ids(incident) == ["p1", "p3"]
    assert panther_ids(incident, {"b3"}) == ["p3"]


class Rig:
    def __init__(self, store: IncidentStore, client: BigPandaIncidents, outbox: Outbox) -> None:
        self.store, self.client, self.outbox = store, client, outbox

    def sync_back(self, **settings: Any) -> SyncBack:
        config = SyncBackSettings(enabled=True, api_key="k", environment_id="sim-env", **settings)
        return SyncBack(self.client, self.outbox, Metrics(), config)

    def queued(self) -> list[tuple[str, str, str]]:
        return sorted((e.kind, e.alert_id, e.bp_status)
                      for e in self.outbox.due(1000, now=float("inf"), kinds=WRITEBACK_KINDS))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    bp = BigPandaSimulator(incidents=IncidentStore(rate_limit=None))
    outbox = Outbox.open(tmp_path / "state.db")
    for n, host in enumerate(["h1", "h1", "h2", "h2", "h3", "h3"]):
        bp.incidents.on_alert({"status": "critical", "host": host, "check": f"c{n}",
                               "incident_identifier": f"panther-p{n}", "panther_alert_id": f"p{n}"})
    async with serve_app(bp.app) as url, aiohttp.ClientSession() as session:
        client = BigPandaIncidents(session, api_url=url, api_key=DEFAULT_USER_API_KEY,
                                   environment_id="sim-env", rate=0)
        yield Rig(bp.incidents, client, outbox)
    outbox.close()


class TestSyncBack:
    """Only people's actions are written back; each once, across restarts."""

    async def test_people_only_once(self, rig: Rig) -> None:
        sync = rig.sync_back(ignore_user_ids=["bridge-bot"])
        assert (await sync.sync()).new_events == 0  # a fresh state starts now
        one, two, three = (rig.store.incident_of(f"panther-p{n}").id for n in (0, 2, 4))
        rig.store.resolve_incident(one, user="noc-jane", comment="fixed")
        rig.store.comment_incident(two, "noc-bob", "looking")
        rig.store.comment_incident(two, "bridge-bot", "echo")  # the bridge's own user
        for key in ("panther-p4", "panther-p5"):  # the bridge's own ok events
            rig.store.on_alert({"status": "ok", "host": "h3", "check": "c",
                                "incident_identifier": key})
        assert not rig.store.incidents[three].active
        result = await sync.sync()
        assert result.new_events == 6
        assert rig.queued() == [
            ("writeback_comment", "p0", ""), ("writeback_comment", "p1", ""),
            ("writeback_comment", "p2", ""), ("writeback_comment", "p3", ""),
            ("writeback_status", "p0", "RESOLVED"), ("writeback_status", "p1", "RESOLVED"),
        ]
        assert (await sync.sync()).new_events == 0
        assert (await rig.sync_back().sync()).new_events == 0  # a restarted bridge too

    async def test_resolve_as_comment_and_same_status(self, rig: Rig) -> None:
        sync = rig.sync_back(resolve_as="comment", comments=False)
        await sync.sync()
        rig.store.resolve_incident(rig.store.incident_of("panther-p0").id, user="noc-jane")
        rig.store.comment_incident(rig.store.incident_of("panther-p2").id, "noc-bob", "x")
        await sync.sync()
        assert rig.queued() == [("writeback_comment", "p0", ""), ("writeback_comment", "p1", "")]

    async def test_status_already_there_is_not_written(self, rig: Rig) -> None:
        rig.outbox.record([], track=[TrackedAlert("p2", 1.0, "CLOSED", 1, b"{}")])
        sync = rig.sync_back(resolve_as="CLOSED")
        await sync.sync()
        rig.store.add_activity(rig.store.incident_of("panther-p2").id, "incident_resolved_api_",
                               user="ops-script")
        await sync.sync()
        assert [q for q in rig.queued() if q[0] == "writeback_status"] == [
            ("writeback_status", "p3", "CLOSED")
        ]

    @pytest.mark.parametrize("enabled", [True, False])
    async def test_acknowledged_moves_open_alerts_to_triaged_only_when_asked(
        self, rig: Rig, enabled: bool
    ) -> None:
        # p0 is OPEN in Panther, p1 already RESOLVED there: only OPEN alerts go TRIAGED.
        rig.outbox.record([], track=[TrackedAlert("p0", 1.0, "OPEN", 0, b"{}"),
                                     TrackedAlert("p1", 1.0, "RESOLVED", 1, b"{}")])
        sync = rig.sync_back(acknowledge_to_triaged=enabled)
        await sync.sync()
        rig.store.add_activity(rig.store.incident_of("panther-p0").id, "incident_acknowledged",
                               user="noc-jane")
        result = await sync.sync()
        if enabled:
            assert rig.queued() == [("writeback_status", "p0", "TRIAGED")]
        else:
            assert rig.queued() == [] and result.skipped == 1

    async def test_skips_are_counted_by_why(self, rig: Rig) -> None:
        metrics = Metrics()
        config = SyncBackSettings(enabled=True, api_key="k", environment_id="sim-env",
                                  ignore_user_ids=["bridge-bot"])
        sync = SyncBack(rig.client, rig.outbox, metrics, config)
        await sync.sync()
        incident = rig.store.incident_of("panther-p0").id
        rig.store.add_activity(incident, "incident_snoozed", user="noc-jane")  # nothing to write
        rig.store.comment_incident(incident, "bridge-bot", "echo")  # the bridge's own user
        await sync.sync()

        def skipped(reason: str) -> float:
            counter = metrics.writebacks.labels(kind="activity", outcome=f"skipped_{reason}")
            return counter._value.get()

        assert (skipped("ignored"), skipped("own")) == (1, 1)


def test_odd_timestamps_are_tolerated() -> None:
    from bridge.sync_back import _stamp

    assert _stamp(1_700_000_000, 0.0) == 1_700_000_000.0
    assert _stamp("1700000000", 0.0) == 1_700_000_000.0
    assert _stamp(1_700_000_000_000, 0.0) == 1_700_000_000.0  # milliseconds
    assert _stamp("yesterday", 5.0) == 5.0
    assert _stamp(None, None) is None
