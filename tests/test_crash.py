"""Crash safety: `bridge run` SIGKILLed at random points, restarted, and still exactly once.

The bridge runs as a real subprocess (`python -m bridge run --config F`); both simulators run in
this test's event loop, so the test counts what BigPanda stored. BigPanda drops an exact resend
(204), so the batches in flight at a kill may go out twice but are stored once; anything lost or
re-stamped would show up as a missing or doubled incident identifier.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

from harness import Rig, kill_and_show_log, make_rig, spawn, wait_until

from bridge.state.sqlite import Outbox

ALERTS = 2000
KILLS = 10
SEED = 20_240_605


def fault_script(rng: random.Random, n: int) -> str:
    """Mostly plain accepts, with 202 jobs (polled across restarts) and 500s sprinkled in."""
    return ",".join(rng.choices(["201", "202", "500"], weights=[8, 2, 1], k=n))


def requests_seen(rig: Rig) -> int:
    return len(rig.bigpanda.requests) + len(rig.panther.requests)


async def test_sigkill_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    log = tmp_path / "bridge.log"
    async with make_rig(tmp_path, latency=0.03) as rig:
        expected = set(rig.generate(ALERTS, spacing=0.5))
        rig.bigpanda.script(fault_script(rng, 150))
        rig.bigpanda.job_script("pending,started,done")
        config = rig.write_config(
            panther={"page_size": 50, "poll_interval": 0.3},
            bigpanda={"batch_size": 25, "max_in_flight": 2, "job_poll_interval": 0.1},
            server={"shutdown_grace": 2},
        )
        started = time.monotonic()
        kill_points: list[int] = []
        try:
            for _ in range(KILLS):
                proc = await spawn(config, log)
                before = requests_seen(rig)
                # Kill somewhere in real work, not while Python is still importing.
                await wait_until(lambda b=before: requests_seen(rig) > b, 10, what="bridge start")
                await asyncio.sleep(rng.uniform(0.0, 0.6))
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                kill_points.append(len(rig.bigpanda.accepted))

            proc = await spawn(config, log)
            before = requests_seen(rig)
            await wait_until(lambda: requests_seen(rig) > before, 10, what="bridge start")
            await wait_until(lambda: expected <= set(rig.delivered()), 30, what="full delivery")
            await wait_until(lambda: _settled(config), 10, what="outbox settled", every=0.1)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        except BaseException:
            kill_and_show_log(proc, log)
            raise

        delivered = rig.delivered()
        assert set(delivered) == expected, "an alert was lost"
        doubled = {k: v for k, v in delivered.items() if v > 1}
        assert not doubled, f"stored twice (a resend that was not byte-identical): {doubled}"
        # The kills landed across the run, not all before or after the work.
        assert len(kill_points) == KILLS
        assert any(0 < k < ALERTS for k in kill_points)
        assert len(set(kill_points)) > KILLS // 2
        posts = [r for r in rig.bigpanda.requests if r.method == "POST"]
        assert any(p.status == 202 for p in posts) and any(p.status == 500 for p in posts)
        print(
            f"{KILLS} kills at {kill_points} alerts stored, {len(posts)} POSTs,"
            f" {rig.bigpanda.duplicates} exact resends dropped,"
            f" {time.monotonic() - started:.1f}s"
        )


def _settled(config: Path) -> bool:
    """The state says nothing is pending, in a job, or dead (read beside the running bridge)."""
    outbox = Outbox.open(config.parent / "bridge.db", exclusive=False)
    try:
        counts = outbox.counts()
    finally:
        outbox.close()
    busy = counts["pending"] + counts["job"] + counts["jobs"]
    return busy == 0 and counts["dead_letters"] == 0


LATE_SECONDS = 60.0  # a minute of kills, as a crash loop or a rolling deploy gives


async def test_sigkill_loop_with_late_alerts_loses_none(rig: Rig, tmp_path: Path) -> None:
    """A process killed every 2-4 s while alerts keep arriving, 30% of them listable 3 s late:
    each start sweeps (the sweep point is durable), so afterwards every alert arrived once."""
    rng = random.Random(SEED + 1)
    log = tmp_path / "bridge.log"
    rig.panther.late_fraction = 0.3
    rig.panther.late_by = 3.0
    config = rig.write_config(
        panther={"poll_interval": 0.5, "overlap": "30s", "late_sweep_interval": "1h"},
        bigpanda={"batch_size": 25, "max_in_flight": 2},
        catalog={"enabled": False},
        server={"shutdown_grace": 2},
    )
    producer = asyncio.create_task(rig.panther.produce(15, LATE_SECONDS))
    kills = 0
    proc: asyncio.subprocess.Process | None = None
    try:
        while not producer.done():
            proc = await spawn(config, log)
            await asyncio.sleep(rng.uniform(2.0, 4.0))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            kills += 1
        made = producer.result()
        expected = {f"panther-{a['id']}" for a in made}
        late = {f"panther-{i}" for i in rig.panther.late_ids}
        assert late and late <= expected

        proc = await spawn(config, log)
        await wait_until(lambda: rig.panther.unlisted == 0, 10, what="all listable")
        await wait_until(lambda: expected <= set(rig.delivered()), 60, what="full delivery")
        await wait_until(lambda: _settled(config), 10, what="outbox settled", every=0.1)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    except BaseException:
        producer.cancel()
        kill_and_show_log(proc, log)
        raise

    delivered = rig.delivered()
    assert set(delivered) == expected, f"lost: {len(expected - set(delivered))}"
    assert max(delivered.values()) == 1
    assert kills >= 12
    print(f"{kills} kills, {len(made)} alerts ({len(late)} late), all delivered once")
