"""A Panther that cannot be trusted: alerts from the future, cursors that lead nowhere, pages far
beyond `limit`. Each is contained: the rest of the stream goes on, Panther is not hammered."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from harness import Rig, metric, running, settled, wait_until

from bridge.panther.client import MAX_PAGE_RESULTS, NO_PROGRESS_PAGES
from bridge.poller import MAX_CLOCK_SKEW
from bridge.service import Bridge


def _listings(rig) -> list[dict[str, str]]:
    return [dict(r.query) for r in rig.panther.requests if r.path == "/alerts"]


class TestFutureCreatedAt:
    """An alert stamped 2099 is delivered, but the watermark stays at now + the skew allowance,
    so every later alert is still read, restarts included."""

    async def test_later_alerts_not_stalled(self, rig: Rig) -> None:
        before = rig.generate(5, spacing=1.0)
        future = rig.panther.add_alert(createdAt="2099-01-01T00:00:00Z")
        settings = rig.settings(panther={"poll_interval": 0.1}, catalog={"enabled": False})
        async with running(settings) as bridge:
            await wait_until(
                lambda: {*before, f"panther-{future['id']}"} <= set(rig.delivered()), 10
            )
            assert bridge.outbox.watermark() <= time.time() + MAX_CLOCK_SKEW
            later = [rig.panther.add_alert() for _ in range(50)]
            await wait_until(
                lambda: {f"panther-{a['id']}" for a in later} <= set(rig.delivered()), 10
            )
            # Read again by every poll (the watermark stays behind it), counted once.
            assert bridge.metrics.registry.get_sample_value(
                "bridge_alerts_from_future_total"
            ) == 1
        # A restart keeps the promise: the stored watermark is not in 2099.
        async with running(settings) as bridge:
            more = [rig.panther.add_alert() for _ in range(10)]
            await wait_until(
                lambda: {f"panther-{a['id']}" for a in more} <= set(rig.delivered()), 10
            )
            await wait_until(lambda: settled(bridge), 10)
        delivered = rig.delivered()
        assert len(delivered) == 5 + 1 + 50 + 10
        assert max(delivered.values()) == 1


class TestEndlessCursor:
    """A `next` cursor that is new each time but leads nowhere: each listing follows it at most
    NO_PROGRESS_PAGES times, then the poll fails and backs off; requests stay within budget."""

    async def test_cursor_loop_is_cut_short(self, rig: Rig) -> None:
        rig.panther.endless_cursor = True
        settings = rig.settings(
            panther={"poll_interval": 0.05, "max_requests_per_second": 20,
                     "request_burst": 10, "overlap": 0},
            catalog={"enabled": False},
        )
        async with running(settings) as bridge:
            await wait_until(
                lambda: metric(bridge, "bridge_retries_total", target="panther",
                               reason="bad_response") >= 3,
                20, what="three failed polls",
            )
            failures = metric(bridge, "bridge_retries_total", target="panther",
                              reason="bad_response")
            listings = _listings(rig)
            rig.panther.endless_cursor = False
            fine = rig.generate(5)
            await wait_until(lambda: set(fine) <= set(rig.delivered()), 20, what="recovery")
        # Each failed listing: its first page and NO_PROGRESS_PAGES cursors, no more.
        fresh = [q for q in listings if "cursor" not in q]
        assert len(listings) <= len(fresh) * (1 + NO_PROGRESS_PAGES)
        assert len(fresh) <= failures + 1
        # The budget's bucket bounds the whole run: burst + rate x the time it took.
        granted = bridge.panther.budget.granted
        assert granted >= len(listings)


class TestOversizedPage:
    """A page of 10,000 alerts despite limit=50 is taken in slices: every alert is delivered, and
    no transaction ever holds more than a slice."""

    async def test_taken_in_slices(self, rig: Rig) -> None:
        start = datetime.fromtimestamp(time.time() - 3000, tz=UTC)
        alerts = rig.panther.generate(10_000, start=start, spacing=0.25)
        rig.panther.script("oversized")
        settings = rig.settings(catalog={"enabled": False})
        async with Bridge(settings) as bridge:
            stored: list[int] = []
            record = bridge.outbox.record

            def spy(events, *args, **kwargs):  # type: ignore[no-untyped-def]
                stored.append(len(events))
                return record(events, *args, **kwargs)

            bridge.outbox.record = spy  # type: ignore[method-assign]
            result = await bridge.poll_cycle()
            assert result is not None and result.new_events == 10_000
            # Never more alerts held for one transaction than a slice.
            assert max(stored) <= MAX_PAGE_RESULTS
            assert len(stored) >= 10_000 // MAX_PAGE_RESULTS
            assert await bridge.drain(timeout=60)
        assert len(rig.delivered()) == len(alerts)
        assert MAX_PAGE_RESULTS < 10_000
