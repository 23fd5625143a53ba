"""Status sync against the simulators: every status change once, in order, for a few requests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import Rig, metric, running, wait_until

from bridge.service import Bridge
from bridge.status_sync import event_count_key, status_change_key


def sync_settings(rig: Rig, mapping: dict[str, Any] | None = None, **panther: Any) -> Any:
    return rig.settings(
        panther={"status_sync_interval": 60, **panther},
        bigpanda={"batch_size": 200},
        catalog={"enabled": False},
        **({"mapping": mapping} if mapping else {}),
    )


def status_events(bridge: Bridge) -> list[tuple[str, str, str]]:
    rows = bridge.outbox._conn.execute(  # test-only peek
        "SELECT alert_id, dedup_key, bp_status FROM events WHERE kind = 'status_change'"
        " ORDER BY id"
    ).fetchall()
    return [tuple(r) for r in rows]


def sent_for(rig: Rig, alert_id: str) -> list[str]:
    return [
        a.alert["status"]
        for a in rig.bigpanda.accepted
        if a.alert.get("incident_identifier") == f"panther-{alert_id}"
    ]


class TestCost:
    """1,000 tracked alerts of which 10 changed: one sync costs fewer than 10 requests."""

    async def test_thousand_tracked_ten_changed(self, rig: Rig) -> None:
        alerts = rig.panther.generate(1000, spacing=1.0)
        async with Bridge(sync_settings(rig)) as bridge:
            assert (await bridge.poll_cycle()).new_events == 1000
            assert bridge.outbox.tracked_count() == 1000
            changes = {
                **{a["id"]: "RESOLVED" for a in alerts[10:15]},
                **{a["id"]: "TRIAGED" for a in alerts[500:503]},
                **{a["id"]: "CLOSED" for a in alerts[990:992]},
            }
            for alert_id, status in changes.items():
                rig.panther.set_status(alert_id, status)

            before = len(rig.panther.requests)
            result = await bridge.sync_cycle()
            cost = len(rig.panther.requests) - before
            assert cost < 10, cost
            assert result.changes == 10 and result.new_events == 10
            events = status_events(bridge)
            assert {e[0] for e in events} == set(changes)
            expected_bp = {"RESOLVED": "ok", "CLOSED": "ok", "TRIAGED": "acknowledged"}
            for alert_id, key, bp_status in events:
                assert bp_status == expected_bp[changes[alert_id]]
                assert key == status_change_key(alert_id, 1, bp_status)
            assert metric(bridge, "bridge_events_received_total", kind="status_change") == 10

            # Nothing changed since: one listing request, no event.
            before = len(rig.panther.requests)
            again = await bridge.sync_cycle()
            assert again.new_events == 0
            assert len(rig.panther.requests) - before == 1
            listing = rig.panther.requests[-1]
            assert sorted(v for k, v in listing.query if k == "status") == [
                "CLOSED", "RESOLVED", "TRIAGED"
            ]


class TestTransitions:
    """OPEN -> TRIAGED -> RESOLVED -> OPEN reaches BigPanda once each, in order."""

    async def test_each_change_delivered_once_in_order(self, rig: Rig) -> None:
        (alert,) = rig.panther.generate(1, spacing=1.0, severity="HIGH")
        rig.panther.generate(20, spacing=1.0)  # bystanders that never change
        alert_id = alert["id"]
        # Changes a few seconds apart, as analysts make them (the two RESOLVED events would
        # otherwise be byte-identical, and BigPanda drops a byte-identical resend).
        offset = [0.0]
        clock = lambda: time.time() + offset[0]  # noqa: E731
        async with Bridge(sync_settings(rig), clock=clock) as bridge:
            await bridge.poll_cycle()
            assert await bridge.drain(timeout=5)
            for status in ("TRIAGED", "RESOLVED", "OPEN", "RESOLVED"):
                offset[0] += 5
                rig.panther.set_status(alert_id, status)
                assert (await bridge.sync_cycle()).new_events == 1
                assert (await bridge.sync_cycle()).new_events == 0  # seen once only
                assert await bridge.drain(timeout=5)
            assert sent_for(rig, alert_id) == [
                "critical", "acknowledged", "ok", "critical", "ok"
            ]
            keys = [e[1] for e in status_events(bridge)]
            assert keys == [
                status_change_key(alert_id, 1, "acknowledged"),
                status_change_key(alert_id, 2, "ok"),
                status_change_key(alert_id, 3, "critical"),
                status_change_key(alert_id, 4, "ok"),
            ]
            # The bystanders were sent once, as new alerts, and never again.
            assert len(rig.bigpanda.accepted) == 21 + 4
            assert metric(bridge, "bridge_events_received_total", kind="status_change") == 4

    async def test_status_change_payload_is_stamped_with_observation(
        self, rig: Rig, tmp_path: Path
    ) -> None:
        (alert,) = rig.panther.generate(1, spacing=1800.0)
        async with Bridge(sync_settings(rig)) as bridge:
            await bridge.poll_cycle()
            rig.panther.set_status(alert["id"], "TRIAGED")
            await bridge.sync_cycle()
            assert await bridge.drain(timeout=5)
        first, change = [a.alert for a in rig.bigpanda.accepted]
        assert change["status"] == "acknowledged"
        assert change["panther_status"] == "TRIAGED"
        assert change["incident_identifier"] == first["incident_identifier"]
        assert change["timestamp"] > first["timestamp"] + 1700

    async def test_run_loop_syncs(self, rig: Rig) -> None:
        (alert,) = rig.panther.generate(1, spacing=1.0, severity="LOW")
        settings = rig.settings(
            panther={"status_sync_interval": 0.2}, catalog={"enabled": False}
        )
        async with running(settings):
            await wait_until(lambda: sent_for(rig, alert["id"]) == ["warning"], 5)
            rig.panther.set_status(alert["id"], "CLOSED")
            await wait_until(lambda: sent_for(rig, alert["id"]) == ["warning", "ok"], 5)


class TestCrashSafety:
    """A crash between listing and recording derives the same dedup keys again."""

    async def test_failed_record_then_retry(self, rig: Rig) -> None:
        alerts = rig.panther.generate(3, spacing=1.0)
        async with Bridge(sync_settings(rig)) as bridge:
            await bridge.poll_cycle()
            rig.panther.set_status(alerts[0]["id"], "RESOLVED")
            original = bridge.outbox.record

            def crash(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("disk full")

            bridge.outbox.record = crash  # type: ignore[method-assign]
            with pytest.raises(RuntimeError):
                await bridge.status_sync.sync()
            bridge.outbox.record = original  # type: ignore[method-assign]
            assert status_events(bridge) == []
            tracked = {t.alert_id: t for t in bridge.outbox.tracked()}
            assert tracked[alerts[0]["id"]].status == "OPEN"
            await bridge.status_sync.sync()
            await bridge.status_sync.sync()
            assert status_events(bridge) == [
                (alerts[0]["id"], status_change_key(alerts[0]["id"], 1, "ok"), "ok")
            ]
            tracked = {t.alert_id: t for t in bridge.outbox.tracked()}
            assert tracked[alerts[0]["id"]].status == "RESOLVED"
            assert tracked[alerts[0]["id"]].transitions == 1


class TestFallbackAndExpiry:
    """GET /alerts/{id} only for alerts missing where expected; old alerts stop being tracked."""

    async def test_reopen_confirmed_by_get_and_deleted_alert_untracked(
        self, rig: Rig, tmp_path: Path
    ) -> None:
        alerts = rig.panther.generate(5, spacing=1.0, severity="MEDIUM")
        async with Bridge(sync_settings(rig)) as bridge:
            await bridge.poll_cycle()
            for a in alerts[:2]:
                rig.panther.set_status(a["id"], "TRIAGED")
            await bridge.sync_cycle()
            rig.panther.set_status(alerts[0]["id"], "OPEN")  # reopened
            del rig.panther.alerts[alerts[1]["id"]]  # gone (test-only: as if deleted)
            rig.panther._unindex(rig.panther._hidden.pop(alerts[1]["id"]))
            before = len(rig.panther.requests)
            result = await bridge.sync_cycle()
            paths = [r.path for r in rig.panther.requests[before:]]
            assert paths.count("/alerts") == 1
            assert sorted(p for p in paths if p != "/alerts") == sorted(
                f"/alerts/{a['id']}" for a in alerts[:2]
            )
            assert result.changes == 1 and result.gone == 1
            assert status_events(bridge)[-1] == (
                alerts[0]["id"], status_change_key(alerts[0]["id"], 2, "warning"), "warning"
            )
            assert alerts[1]["id"] not in {t.alert_id for t in bridge.outbox.tracked()}

    async def test_old_alerts_expire(self, rig: Rig) -> None:
        rig.panther.generate(4, spacing=100.0)  # created 400 s .. 100 s ago
        async with Bridge(sync_settings(rig, track_for=1000)) as bridge:
            await bridge.poll_cycle()
            assert bridge.outbox.tracked_count() == 4
            bridge.status_sync._track_for = 250  # as if time had passed
            result = await bridge.sync_cycle()
            assert result.expired == 2 and result.tracked == 2
            assert metric(bridge, "bridge_tracking_expired_total") == 2
            assert metric(bridge, "bridge_tracked_alerts") == 2
            row = bridge.outbox.tracked()[0]
            assert orjson.loads(row.alert)["id"] == row.alert_id


def sent_alerts(rig: Rig, alert_id: str) -> list[dict[str, Any]]:
    return [
        a.alert
        for a in rig.bigpanda.accepted
        if a.alert.get("incident_identifier") == f"panther-{alert_id}"
    ]


def all_events(bridge: Bridge) -> list[tuple[str, str, str, str]]:
    rows = bridge.outbox._conn.execute(  # test-only peek
        "SELECT alert_id, kind, dedup_key, bp_status FROM events ORDER BY id"
    ).fetchall()
    return [tuple(r) for r in rows]


class TestEventCount:
    """mapping.forward_event_count: a grown eventCount is one tag update, same identity/status."""

    async def test_flag_off_sends_nothing_and_costs_the_same(self, rig: Rig) -> None:
        alerts = rig.panther.generate(30, spacing=1.0)
        async with Bridge(sync_settings(rig)) as bridge:
            await bridge.poll_cycle()
            assert await bridge.drain(timeout=5)
            sent = len(rig.bigpanda.accepted)
            rig.panther.alerts[alerts[3]["id"]]["eventCount"] = 999
            before = len(rig.panther.requests)
            result = await bridge.sync_cycle()
            assert len(rig.panther.requests) - before == 1
            listing = rig.panther.requests[-1]
            assert sorted(v for k, v in listing.query if k == "status") == [
                "CLOSED", "RESOLVED", "TRIAGED"
            ]
            assert result.new_events == 0 and result.count_changes == 0
            assert await bridge.drain(timeout=5)
            assert len(rig.bigpanda.accepted) == sent
            assert [e[1] for e in all_events(bridge)] == ["alert"] * 30

    async def test_grown_count_is_one_update_delivered_once(self, rig: Rig) -> None:
        (alert,) = rig.panther.generate(1, spacing=1.0, severity="HIGH")
        rig.panther.generate(20, spacing=1.0)  # bystanders whose counts never change
        alert_id = alert["id"]
        offset = [0.0]
        clock = lambda: time.time() + offset[0]  # noqa: E731
        settings = sync_settings(rig, mapping={"forward_event_count": True})
        async with Bridge(settings, clock=clock) as bridge:
            await bridge.poll_cycle()
            assert await bridge.drain(timeout=5)
            first_count = rig.panther.alerts[alert_id]["eventCount"]
            new_count = first_count + 7
            rig.panther.alerts[alert_id]["eventCount"] = new_count
            offset[0] += 30

            before = len(rig.panther.requests)
            result = await bridge.sync_cycle()
            requests = rig.panther.requests[before:]
            assert [r.path for r in requests] == ["/alerts"]  # one listing, no GET
            assert not [v for k, v in requests[0].query if k == "status"]  # every status
            assert result.count_changes == 1 and result.changes == 0
            assert result.new_events == 1
            assert await bridge.drain(timeout=5)
            first, update = sent_alerts(rig, alert_id)
            assert update["incident_identifier"] == first["incident_identifier"]
            assert update["status"] == first["status"] == "critical"
            assert update["panther_status"] == "OPEN"
            assert first["event_count"] == first_count
            assert update["event_count"] == new_count
            assert isinstance(update["timestamp"], int)
            assert update["timestamp"] >= first["timestamp"] + 29
            events = [e for e in all_events(bridge) if e[1] == "event_count"]
            assert events == [
                (alert_id, "event_count", event_count_key(alert_id, new_count), "critical")
            ]
            assert metric(bridge, "bridge_events_received_total", kind="event_count") == 1
            tracked = {t.alert_id: t for t in bridge.outbox.tracked()}
            assert tracked[alert_id].event_count == new_count
            assert tracked[alert_id].status == "OPEN"
            assert tracked[alert_id].transitions == 0
            assert orjson.loads(tracked[alert_id].alert)["eventCount"] == first_count

            # Nothing changed since: one listing, no event, nothing sent again.
            sent = len(rig.bigpanda.accepted)
            again = await bridge.sync_cycle()
            assert again.new_events == 0 and again.count_changes == 0
            assert await bridge.drain(timeout=5)
            assert len(rig.bigpanda.accepted) == sent == 22

    async def test_status_and_count_together_are_one_event(self, rig: Rig) -> None:
        alerts = rig.panther.generate(3, spacing=1.0, severity="MEDIUM")
        alert_id = alerts[1]["id"]
        settings = sync_settings(rig, mapping={"forward_event_count": True})
        async with Bridge(settings) as bridge:
            await bridge.poll_cycle()
            assert await bridge.drain(timeout=5)
            new_count = rig.panther.alerts[alert_id]["eventCount"] + 5
            rig.panther.set_status(alert_id, "TRIAGED")
            rig.panther.alerts[alert_id]["eventCount"] = new_count
            result = await bridge.sync_cycle()
            assert result.changes == 1 and result.count_changes == 0
            assert result.new_events == 1
            assert [e for e in all_events(bridge) if e[1] != "alert"] == [
                (
                    alert_id,
                    "status_change",
                    status_change_key(alert_id, 1, "acknowledged"),
                    "acknowledged",
                )
            ]
            tracked = {t.alert_id: t for t in bridge.outbox.tracked()}
            assert tracked[alert_id].event_count == new_count
            assert (await bridge.sync_cycle()).new_events == 0
            assert await bridge.drain(timeout=5)
            first, change = sent_alerts(rig, alert_id)
            assert change["incident_identifier"] == first["incident_identifier"]
            assert change["status"] == "acknowledged"
            assert change["event_count"] == new_count
