"""Backfill: a past window re-read in concurrent slices, nothing already recorded sent again."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import Rig

from bridge import cli
from bridge.service import Bridge
from bridge.sim.panther import RequestRecord, parse_instant_ns
from bridge.state.sqlite import Outbox


def alert_listings(rig: Rig) -> list[RequestRecord]:
    return [r for r in rig.panther.requests if r.path == "/alerts"]


class TestBackfill:
    """`Bridge.backfill` reads [since, until) and delivers only what was never recorded."""

    async def test_fills_the_gap_without_resending(self, rig: Rig) -> None:
        # 3 hours of alerts; the first poll only looks back 30 minutes.
        start = datetime.fromtimestamp(time.time() - 3 * 3600, tz=UTC)
        generated = rig.panther.generate(360, start=start, spacing=30.0)
        settings = rig.settings(
            panther={"initial_lookback": "30m", "backfill_concurrency": 4},
            bigpanda={"batch_size": 100},
            catalog={"enabled": False},
        )
        async with Bridge(settings) as bridge:
            assert await bridge.once(timeout=5)
            # The first poll delivered exactly what its own window held: the last 30 minutes.
            since = parse_instant_ns(dict(alert_listings(rig)[0].query)["created-after"])
            recent = {f"panther-{a['id']}" for a in generated
                      if parse_instant_ns(a["createdAt"]) >= since}
            assert set(rig.delivered()) == recent
            assert 0 < len(recent) < len(generated)
            watermark = bridge.outbox.watermark()
            assert await bridge.backfill(time.time() - 4 * 3600, time.time(), timeout=5)
            assert bridge.outbox.watermark() == watermark
            # A second backfill of the same window sends nothing.
            posts = len(rig.posts())
            assert await bridge.backfill(time.time() - 4 * 3600, time.time(), timeout=5)
            assert len(rig.posts()) == posts
        delivered = rig.delivered()
        assert set(delivered) == {f"panther-{a['id']}" for a in generated}
        assert max(delivered.values()) == 1
        assert len(rig.bigpanda.accepted) == 360

    async def test_slices_are_paged_concurrently(self, rig: Rig) -> None:
        start = datetime.fromtimestamp(time.time() - 7200, tz=UTC)
        rig.panther.generate(800, start=start, spacing=7200 / 800)
        rig.panther.page_latency = 0.1
        settings = rig.settings(
            panther={"backfill_concurrency": 8}, catalog={"enabled": False}
        )
        async with Bridge(settings) as bridge:
            result = await bridge.poller.backfill(time.time() - 7300, time.time())
        assert result.new_events == 800
        listings = alert_listings(rig)
        # The 8 pagers each opened a slice before any page came back (100 ms each).
        first = [dict(r.query) for r in listings[:8]]
        assert all("cursor" not in q for q in first)
        assert len({(q["created-after"], q["created-before"]) for q in first}) == 8
        # Paid per alert: 16 pages of alerts, plus at most 2 per pager.
        assert len(listings) <= math.ceil(800 / 50) + 2 * 8 + 2, len(listings)


class TestCommandLine:
    """`bridge backfill` refuses to run beside another process holding the state."""

    def test_refused_while_state_is_locked(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        state = tmp_path / "state" / "bridge.db"
        config = tmp_path / "bridge.yaml"
        config.write_text(
            f"""
panther:
  api_url: http://127.0.0.1:9
  api_token: ptok-0123456789
bigpanda:
  api_url: http://127.0.0.1:9
  api_token: btok-0123456789
  app_key: app
state:
  path: {state}
logging:
  level: error
"""
        )
        holder = Outbox.open(state)  # as `bridge run` would hold it
        try:
            code = cli.main(["backfill", "--since", "2h", "--config", str(config)])
        finally:
            holder.close()
        assert code != 0
        err = capsys.readouterr().err
        assert "in use by another bridge process" in err
        assert "backfill cannot run beside `bridge run`" in err

    def test_until_before_since_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "bridge.yaml"
        config.write_text(
            "panther: {api_url: 'http://127.0.0.1:9', api_token: p}\n"
            "bigpanda: {api_token: b, app_key: a}\n"
        )
        code = cli.main(["backfill", "--since", "1h", "--until", "2h", "--config", str(config)])
        assert code == 2
        assert "--since must be before --until" in capsys.readouterr().err
