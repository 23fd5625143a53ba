"""The poller against the Panther simulator: no alert missed or recorded twice, cheap polls."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from harness import PANTHER_TOKEN, Rig, metric, settled, wait_until

from bridge.errors import RetriableApiError
from bridge.filters import AlertFilter
from bridge.metrics import Metrics
from bridge.normalize import MappingRules
from bridge.panther.client import PantherClient
from bridge.poller import Forwarding, Poller, watermark_key
from bridge.service import Bridge
from bridge.sim import serve_app
from bridge.sim.panther import PantherSimulator
from bridge.state.sqlite import Outbox


class Setup:
    """A simulator on loopback and a Poller reading it into a fresh outbox."""

    def __init__(self, sim: PantherSimulator, client: PantherClient, outbox: Outbox) -> None:
        self.sim = sim
        self.client = client
        self.outbox = outbox
        self.metrics = Metrics()

    def poller(self, *, filters: AlertFilter | None = None, **kwargs: Any) -> Poller:
        forwarding = Forwarding(lambda _a: "app", MappingRules(), filters=filters or AlertFilter())
        options: dict[str, Any] = {"initial_lookback": 3600.0, "overlap": 120.0, **kwargs}
        return Poller(self.client, self.outbox, self.metrics, forwarding, **options)

    def alert_requests(self) -> list[dict[str, list[str]]]:
        out = []
        for r in self.sim.requests:
            if r.path == "/alerts":
                params: dict[str, list[str]] = {}
                for k, v in r.query:
                    params.setdefault(k, []).append(v)
                out.append(params)
        return out

    def recorded_ids(self) -> list[str]:
        rows = self.outbox._conn.execute(  # test-only peek at what was recorded
            "SELECT alert_id FROM events WHERE kind = 'alert' ORDER BY id"
        ).fetchall()
        return [r[0] for r in rows]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    sim = PantherSimulator(token=PANTHER_TOKEN, seed=3)
    outbox = Outbox.open(tmp_path / "state.db")
    async with serve_app(sim.app) as url, aiohttp.ClientSession() as session:
        client = PantherClient(session, api_url=url, api_token=PANTHER_TOKEN, page_size=50)
        yield Setup(sim, client, outbox)
    outbox.close()


def ago(seconds: float) -> datetime:
    return datetime.fromtimestamp(time.time() - seconds, tz=UTC)


class TestHeadPoll:
    """The head poll reads forward from the watermark, every alert exactly once."""

    async def test_ties_across_page_boundaries(self, setup: Setup) -> None:
        # 130 alerts share one instant: three pages of it, and the watermark lands on it.
        instant = ago(600)
        tied = setup.sim.generate(130, start=instant, spacing=0.0)
        later = setup.sim.generate(20, start=instant.timestamp() + 1, spacing=1.0)
        poller = setup.poller()
        first = await poller.poll_head()
        assert first.new_events == 150
        again = await poller.poll_head()
        assert again.new_events == 0
        ids = setup.recorded_ids()
        assert sorted(ids) == sorted(a["id"] for a in tied + later)
        assert setup.outbox.watermark() == pytest.approx(instant.timestamp() + 20, abs=1e-3)

    async def test_tie_at_watermark_arriving_later_is_read(self, setup: Setup) -> None:
        instant = ago(300)
        setup.sim.generate(3, start=instant, spacing=0.0)
        poller = setup.poller()
        await poller.poll_head()
        late_tie = setup.sim.add_alert(createdAt=instant)
        result = await poller.poll_head()
        assert result.new_alert_ids == [late_tie["id"]]

    async def test_a_pass_reports_what_it_did(self, setup: Setup) -> None:
        setup.sim.generate(120, spacing=1.0)
        poller = setup.poller()
        first = await poller.poll_head()
        again = await poller.poll_head()
        assert first.log_fields() == {
            "pages": first.pages, "alerts_seen": 120, "new_events": 120, "rejected": 0
        }
        assert first.pages >= 3
        assert again.log_fields()["new_events"] == 0 and again.log_fields()["alerts_seen"] > 0

    async def test_limit_never_above_50(self, setup: Setup) -> None:
        setup.sim.generate(120, spacing=1.0)
        setup.client.page_size = 50
        await setup.poller().poll_head()
        limits = [int(p["limit"][0]) for p in setup.alert_requests()]
        assert limits and max(limits) <= 50
        assert all(p["sort-dir"] == ["asc"] for p in setup.alert_requests())

    async def test_listing_changing_between_pages(self, setup: Setup) -> None:
        setup.sim.generate(120, spacing=1.0)
        poller = setup.poller()
        inserted: list[dict[str, Any]] = []
        original = setup.client.list_alerts

        async def list_and_insert(**kwargs: Any):
            page = await original(**kwargs)
            if len(inserted) < 6:
                # One alert behind the cursor (late), one ahead of it, on every page.
                inserted.append(setup.sim.add_alert(createdAt=ago(100)))
                inserted.append(setup.sim.add_alert(createdAt=ago(5)))
            return page

        setup.client.list_alerts = list_and_insert  # type: ignore[method-assign]
        await poller.poll_head()
        await poller.sweep_overlap()
        await poller.poll_head()
        ids = setup.recorded_ids()
        assert len(ids) == len(set(ids)) == 120 + len(inserted)

    async def test_watermark_moves_only_with_recorded_pages(self, setup: Setup) -> None:
        alerts = setup.sim.generate(120, start=ago(1000), spacing=1.0)
        setup.sim.script("ok,500")  # page 1 fine, page 2 fails
        # Page by page (the catch-up's slices are TestCatchUp's): exactly the first page stays.
        poller = setup.poller(catchup_concurrency=1)
        with pytest.raises(RetriableApiError):
            await poller.poll_head()
        assert len(setup.recorded_ids()) == 50
        newest_recorded = datetime.fromisoformat(
            alerts[49]["createdAt"].replace("Z", "+00:00")
        ).timestamp()
        assert setup.outbox.watermark() == pytest.approx(newest_recorded, abs=1e-3)
        result = await poller.poll_head()
        assert result.new_events == 70
        assert len(set(setup.recorded_ids())) == 120


class TestCatchUp:
    """Far behind (a full page more than `catchup_lag` old), the head poll pages the rest of the
    way to now in concurrent slices: every alert once, the watermark never past an unfinished
    slice."""

    async def test_slices_record_every_alert_once(self, setup: Setup) -> None:
        alerts = setup.sim.generate(900, start=ago(1800), spacing=2.0)
        poller = setup.poller(catchup_concurrency=4, catchup_lag=60.0)
        result = await poller.poll_head()
        assert result.new_events == 900
        ids = setup.recorded_ids()
        assert len(ids) == len(set(ids)) == 900
        assert set(ids) == {a["id"] for a in alerts}
        newest = max(
            datetime.fromisoformat(a["createdAt"].replace("Z", "+00:00")).timestamp()
            for a in alerts
        )
        assert setup.outbox.watermark() == pytest.approx(newest, abs=1e-3)
        # Slices (bounded listings) were read, and concurrently: more than one pager's worth.
        bounded = [p for p in setup.alert_requests() if "created-before" in p]
        assert len(bounded) >= 4 * 4
        again = await poller.poll_head()
        assert again.new_events == 0

    async def test_each_stored_group_tells_the_dispatcher_before_the_poll_ends(
        self, setup: Setup
    ) -> None:
        """A catch-up is one long poll: delivery must not wait for its end to start."""
        setup.sim.generate(900, start=ago(1800), spacing=2.0)
        recorded_when_told: list[int] = []
        poller = setup.poller(
            catchup_concurrency=4,
            catchup_lag=60.0,
            on_recorded=lambda: recorded_when_told.append(len(setup.recorded_ids())),
        )
        await poller.poll_head()
        assert len(recorded_when_told) >= 4  # several stores, each one told
        assert recorded_when_told[0] < 900 and recorded_when_told[-1] == 900
        assert recorded_when_told == sorted(recorded_when_told)
        told = len(recorded_when_told)
        await poller.poll_head()  # nothing new: nobody is told
        assert len(recorded_when_told) == told

    async def test_watermark_stays_behind_a_failed_slice(self, setup: Setup) -> None:
        alerts = setup.sim.generate(900, start=ago(1800), spacing=2.0)
        created = {
            a["id"]: datetime.fromisoformat(a["createdAt"].replace("Z", "+00:00")).timestamp()
            for a in alerts
        }
        cut = time.time() - 900  # slices starting past this fail: the catch-up cannot finish
        original = setup.client.list_alerts
        failing = True

        async def flaky(**kwargs: Any):
            after = kwargs.get("created_after")
            if failing and kwargs.get("created_before") is not None and after.timestamp() > cut:
                raise RetriableApiError("panther GET /alerts: 503", target="panther", status=503)
            return await original(**kwargs)

        setup.client.list_alerts = flaky  # type: ignore[method-assign]
        poller = setup.poller(catchup_concurrency=4, catchup_lag=60.0)
        with pytest.raises(RetriableApiError):
            await poller.poll_head()
        mark = setup.outbox.watermark()
        assert mark is not None and mark <= cut
        recorded = set(setup.recorded_ids())
        # Everything up to the watermark is durably recorded: a crash now would lose nothing.
        assert {i for i, t in created.items() if t <= mark} <= recorded
        assert len(recorded) < 900

        failing = False
        result = await poller.poll_head()
        ids = setup.recorded_ids()
        assert len(ids) == len(set(ids)) == 900
        assert result.new_events == 900 - len(recorded)
        assert setup.outbox.watermark() == pytest.approx(max(created.values()), abs=1e-3)

    async def test_steady_polls_never_slice(self, setup: Setup) -> None:
        """Recent alerts (within the lag) are paged from the watermark one page after another."""
        setup.sim.generate(200, start=ago(30), spacing=0.1)
        await setup.poller(catchup_concurrency=4, catchup_lag=60.0).poll_head()
        assert not [p for p in setup.alert_requests() if "created-before" in p]
        assert len(setup.recorded_ids()) == 200


class TestPerListingWatermarks:
    """Each alert type is its own listing with its own watermark."""

    async def test_detection_and_system_errors(self, setup: Setup) -> None:
        setup.sim.generate(5, spacing=1.0)
        setup.sim.generate(3, spacing=1.0, type="RULE_ERROR")
        setup.sim.generate(2, spacing=1.0, type="SYSTEM_ERROR")
        only_alerts = setup.poller()
        assert (await only_alerts.poll_head()).new_events == 5
        all_types = setup.poller(
            filters=AlertFilter(alert_types=("ALERT", "DETECTION_ERROR", "SYSTEM_ERROR"))
        )
        assert (await all_types.poll_head()).new_events == 5
        for listing in ("ALERT", "DETECTION_ERROR", "SYSTEM_ERROR"):
            assert setup.outbox.watermark(watermark_key(listing)) is not None
        assert setup.outbox.get_meta("watermark") == setup.outbox.get_meta(watermark_key("ALERT"))
        types = {p["type"][0] for p in setup.alert_requests()}
        assert types == {"ALERT", "DETECTION_ERROR", "SYSTEM_ERROR"}


class TestFilters:
    """Severity, detection-id and log-type filter in the query; globs and excludes here."""

    async def test_query_and_client_side(self, setup: Setup) -> None:
        sim = setup.sim
        root = "AWS.CloudTrail.RootActivity"
        sim.generate(4, spacing=1.0, severity="HIGH", detection=root)
        sim.generate(4, spacing=1.0, severity="LOW", detection=root)
        sim.generate(3, spacing=1.0, severity="HIGH", detection="AWS.Console.LoginWithoutMFA")
        sim.generate(3, spacing=1.0, severity="HIGH", detection="Okta.BruteForceLogins",
                     log_types=["AWS.CloudTrail"])
        poller = setup.poller(
            filters=AlertFilter(
                severities=("HIGH", "CRITICAL"),
                detection_ids=("AWS.*",),
                exclude_detection_ids=("AWS.Console.*",),
                log_types=("AWS.CloudTrail",),
            )
        )
        await poller.poll_head()
        params = setup.alert_requests()[0]
        assert params["severity"] == ["HIGH", "CRITICAL"]
        assert params["log-type"] == ["AWS.CloudTrail"]
        assert "detection-id" not in params  # a glob: filtered here
        assert len(setup.recorded_ids()) == 4
        # 3 AWS.Console (excluded) + 3 Okta (not AWS.*) were filtered here: counted once each,
        # even when read again.
        dropped = poller._metrics.events_dropped.labels(reason="filtered")
        assert dropped._value.get() == 6
        await poller.read_window(0, None, advance_watermark=False)
        assert dropped._value.get() == 6


class TestSteadyState:
    """At 50 alerts/s with a 2-minute overlap, a head poll costs the new alerts' pages (+2 at
    most), while a late alert inside the overlap is still delivered, by the sweep."""

    async def test_head_poll_cost_and_late_alert(self, rig: Rig) -> None:
        # Two minutes of history at 50/s, ending now: the overlap is full of alerts.
        rig.panther.generate(6000, spacing=0.02)
        settings = rig.settings(
            panther={"overlap": "2m", "poll_interval": 1, "late_sweep_interval": "5m"},
            bigpanda={"batch_size": 500, "max_in_flight": 4},
            catalog={"enabled": False},
        )
        async with Bridge(settings) as bridge:
            assert (await bridge.poll_cycle()).new_events == 6000
            for _ in range(3):
                # One poll interval (3 s) of new alerts at 50/s, after the last ones.
                start = datetime.fromtimestamp(bridge.outbox.watermark() + 0.02, tz=UTC)
                before = len(rig.panther.requests)
                rig.panther.generate(50 * 3, spacing=0.02, start=start)
                result = await bridge.poll_cycle()
                requests = len(rig.panther.requests) - before
                assert result.new_events == 150
                assert requests <= math.ceil(150 / 50) + 2, requests

            # A late-indexed alert, created a minute behind the watermark: the head poll
            # cannot see it, the sweep does.
            late = rig.panther.add_alert(createdAt=bridge.outbox.watermark() - 60)
            assert (await bridge.poll_cycle()).new_events == 0
            # This is storm volume: a sweep within its budget stops early and the next goes
            # on from there; given the pages, one sweep reads the whole uncovered window.
            partial = await bridge.sweep_cycle()
            assert late["id"] not in partial.new_alert_ids
            assert partial.pages < (6000 + 450) / 50  # stopped within its budget
            swept = await bridge.poller.sweep_overlap(max_pages=10_000)
            assert swept.new_alert_ids == [late["id"]]
            assert swept.pages >= 60  # the sweep, not the head poll, pays for the overlap
            assert await bridge.drain(timeout=10)
            assert f"panther-{late['id']}" in rig.delivered()
            assert len(rig.delivered()) == 6000 + 450 + 1
            assert max(rig.delivered().values()) == 1
            assert settled(bridge)

    async def test_sweep_covers_since_previous_sweep(self, rig: Rig) -> None:
        """A sweep reads from `overlap` before the previous sweep's watermark, so an alert late by
        less than `overlap` is caught however long the sweep interval is."""
        rig.panther.generate(10, spacing=1.0, start=datetime.fromtimestamp(time.time() - 600,
                                                                           tz=UTC))
        settings = rig.settings(panther={"overlap": 30}, catalog={"enabled": False})
        async with Bridge(settings) as bridge:
            await bridge.poll_cycle()
            await bridge.sweep_cycle()
            first_mark = bridge.outbox.watermark()
            rig.panther.generate(10, spacing=10.0, start=datetime.fromtimestamp(
                first_mark + 1, tz=UTC))
            await bridge.poll_cycle()
            # Late by 20 s (< overlap), but 60 s behind the new watermark.
            late = rig.panther.add_alert(createdAt=first_mark + 20)
            swept = await bridge.sweep_cycle()
            assert late["id"] in swept.new_alert_ids


class TestRunLoops:
    """`bridge run` schedules the sweep on its own cadence and keeps delivering."""

    async def test_run_delivers_late_alert_via_sweep(self, rig: Rig) -> None:
        from harness import running

        expected = rig.generate(30, spacing=1.0)
        settings = rig.settings(
            panther={"overlap": "1m", "late_sweep_interval": 0.3, "poll_interval": 0.1},
            catalog={"enabled": False},
        )
        async with running(settings) as bridge:
            await wait_until(lambda: set(expected) <= set(rig.delivered()), 8)
            late = rig.panther.add_alert(createdAt=bridge.outbox.watermark() - 30)
            await wait_until(lambda: f"panther-{late['id']}" in rig.delivered(), 8)
            assert metric(bridge, "bridge_events_received_total", kind="alert") == 31
