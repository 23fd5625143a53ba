"""Late-indexed alerts (shared/api/PANTHER.md): listable seconds after newer ones, yet delivered
promptly and exactly once, from the first poll of a fresh state on."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from harness import Rig, metric, running, settled, wait_until

from bridge.service import Bridge


def _listings(rig) -> list[dict[str, str]]:
    return [dict(r.query) for r in rig.panther.requests if r.path == "/alerts"]


class TestLateAlertsWhileRunning:
    """With the sweep interval an hour away, late alerts still arrive: the sweep runs after
    polls whenever its budget allows, not on its interval."""

    async def test_late_alerts_delivered_before_any_sweep_interval(self, rig: Rig) -> None:
        rig.panther.late_fraction = 0.3
        rig.panther.late_by = 1.5
        settings = rig.settings(
            panther={"overlap": "30s", "poll_interval": 0.2, "late_sweep_interval": "1h"},
            catalog={"enabled": False},
        )
        async with running(settings) as bridge:
            made = await rig.panther.produce(40, 3.0)
            expected = {f"panther-{a['id']}" for a in made}
            late = {f"panther-{i}" for i in rig.panther.late_ids}
            assert late, "the simulator made no late alert"
            await wait_until(lambda: rig.panther.unlisted == 0, 10, what="all listable")
            await wait_until(lambda: expected <= set(rig.delivered()), 30, what="delivery")
            await wait_until(lambda: settled(bridge), 10, what="settled")
            assert metric(bridge, "bridge_events_received_total", kind="alert") == len(made)
        delivered = rig.delivered()
        assert set(delivered) == expected
        assert max(delivered.values()) == 1


class TestFreshStateCoverage:
    """A fresh state's first sweep covers from where its first poll started: an alert indexed late
    during the first polls is not left outside every sweep window."""

    async def test_late_alert_far_behind_the_first_watermark(self, rig: Rig) -> None:
        now = time.time()
        start = datetime.fromtimestamp(now - 600, tz=UTC)
        rig.panther.generate(20, start=start, spacing=30)  # 10 minutes, up to now
        settings = rig.settings(panther={"overlap": 30}, catalog={"enabled": False})
        async with Bridge(settings) as bridge:
            await bridge.poll_cycle()
            # Created 9 minutes ago, listable only now: far more than `overlap` behind the
            # watermark, but after the point the first poll started from.
            late = rig.panther.add_alert(createdAt=now - 540)
            swept = await bridge.sweep_cycle()
            assert swept is not None and late["id"] in swept.new_alert_ids
            assert await bridge.drain(timeout=10)
        assert rig.delivered()[f"panther-{late['id']}"] == 1

    async def test_bridge_once_sweeps_and_keeps_the_point(self, rig: Rig) -> None:
        """`bridge once` from cron: every run sweeps; the sweep point is stored, so an alert
        that turns up between runs behind the watermark is still read."""
        rig.panther.generate(10, spacing=1.0)
        settings = rig.settings(panther={"overlap": 20}, catalog={"enabled": False})
        async with Bridge(settings) as bridge:
            assert await bridge.once(timeout=10)
            mark = bridge.outbox.watermark()
        newer = rig.panther.generate(5, start=datetime.fromtimestamp(mark + 60, tz=UTC))
        late = rig.panther.add_alert(createdAt=mark + 5)
        async with Bridge(settings) as bridge:
            assert await bridge.once(timeout=10)
        delivered = rig.delivered()
        assert delivered[f"panther-{late['id']}"] == 1
        assert all(delivered[f"panther-{a['id']}"] == 1 for a in newer)


class TestCatchUpCost:
    """Catching up pays per alert: ceil(N / 50) + 2 x pagers + 2 list requests at most."""

    async def test_137_alerts_over_30_minutes(self, rig: Rig) -> None:
        start = datetime.fromtimestamp(time.time() - 1800, tz=UTC)
        rig.panther.generate(137, start=start, spacing=1800 / 137)
        settings = rig.settings(panther={"overlap": 0}, catalog={"enabled": False})
        async with Bridge(settings) as bridge:
            result = await bridge.poll_cycle()
            assert result is not None and result.new_events == 137
            pagers = bridge.settings.panther.backfill_concurrency
        requests = len(_listings(rig))
        assert requests <= math.ceil(137 / 50) + 2 * pagers + 2, requests

    async def test_2000_alerts_lose_and_double_nothing(self, rig: Rig) -> None:
        start = datetime.fromtimestamp(time.time() - 3000, tz=UTC)
        alerts = rig.panther.generate(2000, start=start, spacing=1.5)
        rig.panther.page_latency = 0.01
        settings = rig.settings(panther={"overlap": 0}, catalog={"enabled": False})
        async with Bridge(settings) as bridge:
            result = await bridge.poll_cycle()
            assert result is not None and result.new_events == 2000
            assert bridge.outbox.watermark() >= start.timestamp() + 1.5 * 1999 - 1e-3
            pagers = bridge.settings.panther.backfill_concurrency
            assert await bridge.drain(timeout=30)
        requests = len(_listings(rig))
        assert requests <= math.ceil(2000 / 50) + 2 * pagers + 2, requests
        delivered = rig.delivered()
        assert set(delivered) == {f"panther-{a['id']}" for a in alerts}
        assert max(delivered.values()) == 1


class TestSweepOutOfBudget:
    """A sweep out of pages resumes where it stopped, so small runs make progress and together
    read the whole window: a late alert deep inside it is found."""

    async def test_one_page_runs_cover_the_window(self, rig: Rig) -> None:
        start = datetime.fromtimestamp(time.time() - 300, tz=UTC)
        rig.panther.generate(500, start=start, spacing=0.5)
        settings = rig.settings(panther={"overlap": "10m"}, catalog={"enabled": False})
        async with Bridge(settings) as bridge:
            await bridge.poll_cycle()
            late = rig.panther.add_alert(createdAt=start.timestamp() + 200)
            found: list[str] = []
            for _ in range(20):
                swept = await bridge.poller.sweep_overlap(max_pages=1)
                assert swept.pages == 1
                found += swept.new_alert_ids
                if found:
                    break
            assert found == [late["id"]]
