"""The dispatcher on its own: outbox in, BigPanda simulator out, no Panther in the way.

These pin down what the end-to-end tests cannot see from outside: batch shapes, how many requests
are in flight, how many events are held in memory, and the order of decisions under concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest
import structlog
from dispatch_rig import all_sent
from harness import APP_KEY, sample_event, wait_until
from structlog.testing import capture_logs

from bridge import dispatch
from bridge.dispatch import CIRCUIT_THRESHOLD, MAX_BATCH_BYTES, encode_batch


class TestBatching:
    """Batches hold one app key, at most batch_size events and MAX_BATCH_BYTES."""

    def test_encode_batch_keeps_payload_bytes(self) -> None:
        payloads = [b'{"b":1,"a":2}', b'{"z":"\\u00e9"}']
        body = encode_batch("key", payloads)
        assert body == b'{"app_key":"key","alerts":[{"b":1,"a":2},{"z":"\\u00e9"}]}'
        assert orjson.loads(body)["alerts"] == [{"b": 1, "a": 2}, {"z": "é"}]

    async def test_by_count(self, make_setup) -> None:
        async with make_setup(batch_size=10, max_in_flight=1) as s:
            s.add(25)
            await s.run_until_sent(25)
            assert [p.alert_count for p in s.posts()] == [10, 10, 5]
            assert s.delivered() == 25

    async def test_by_bytes(self, make_setup) -> None:
        async with make_setup(batch_size=100, max_in_flight=1) as s:
            s.add(8, blob="x" * 300_000)
            await s.run_until_sent(8)
            posts = s.posts()
            assert all(len(p.body) <= MAX_BATCH_BYTES for p in posts)
            assert [p.alert_count for p in posts] == [3, 3, 2]

    async def test_one_app_key_per_batch(self, make_setup) -> None:
        async with make_setup(batch_size=10) as s:
            s.outbox.record(
                [sample_event(i, app_key=f"key-{i % 3}") for i in range(30)]
            )
            await s.run_until_sent(30)
            for post in s.posts():
                body = orjson.loads(post.body)
                keys = {a["incident_identifier"] for a in body["alerts"]}
                assert all(int(k[-32:], 16) % 3 == int(body["app_key"][-1]) for k in keys)


class TestConcurrency:
    """max_in_flight batches at once, never sharing an event, and memory of about one batch."""

    async def test_max_in_flight_is_respected_and_events_not_shared(self, make_setup) -> None:
        async with make_setup(batch_size=5, max_in_flight=3, latency=0.05) as s:
            s.add(60)
            await s.run_until_sent(60)
            assert s.client.most_in_flight == 3
            assert sum(p.alert_count for p in s.posts()) == 60, "an event went out twice"
            assert s.sim.duplicates == 0

    async def test_a_slot_goes_on_with_a_backlog_and_stops_at_a_failure(self, make_setup) -> None:
        """A finished slot takes the next full batch itself (no round through the run loop);
        a failed batch, a short batch or stopping hands control back to the loop."""
        async with make_setup(batch_size=10, max_in_flight=1) as s:
            s.add(55)
            assert await s.dispatcher.step() == 1  # one task...
            await s.dispatcher.wait_in_flight()
            assert s.delivered() == 50  # ...five full batches; the short rest waits for the loop
            assert len(s.posts()) == 5
            s.add(30, start=100)
            s.sim.script("500")
            assert await s.dispatcher.step() == 1
            await s.dispatcher.wait_in_flight()
            assert len(s.posts()) == 6 and s.delivered() == 50  # no second batch after the 500

    async def test_long_outage_keeps_events_on_disk(self, make_setup) -> None:
        """2,000 events queued behind an outage: no `due()` call ever loads more than a batch."""
        async with make_setup(batch_size=50, max_in_flight=2) as s:
            s.add(2000)
            s.sim.outage(0.6)
            await s.run_until_sent(2000, timeout=9)
            assert s.outbox.most_loaded <= 50
            assert s.delivered() == 2000

    async def test_bisection_waits_out_a_pause(self, make_setup) -> None:
        """A 429 met halfway through a bisection parks the other half until the pause ends."""
        async with make_setup(batch_size=8, max_in_flight=1) as s:
            s.add(8)
            s.sim.poison(f"{5:032x}")
            s.sim.script("400,429:Retry-After=1")
            async with s.running():
                await wait_until(lambda: s.outbox.counts()["pending"] == 0, 6, what="settle")
            posts = s.posts()
            assert [p.status for p in posts[:2]] == [400, 429]
            assert posts[2].at - posts[1].at >= 1.0 - 0.02, "half a bisection sent while paused"
            (letter,) = s.outbox.dead_letters()
            assert letter.alert_id == f"{5:032x}" and letter.reason == "rejected"
            assert s.delivered() == 7

    async def test_refused_credentials_do_not_start_expiry(self, make_setup) -> None:
        """A long 401 spell followed by one 500 must not expire events: the 401s were ours."""
        async with make_setup(give_up_after=0.1, max_in_flight=1) as s:
            s.add(3)
            s.sim.script("401,401,401,500")
            await s.run_until_sent(3)
            assert not s.outbox.dead_letters()
            assert s.health.bigpanda_refused is None

    async def test_retry_behind_a_slow_batch_is_not_delayed(
        self, make_setup, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A due retry goes out on time even while another batch is stuck on the wire."""
        # Only the retry's own timer may end the idle wait, never the idle safety net.
        monkeypatch.setattr(dispatch, "IDLE_MAX", 60.0)
        async with make_setup(batch_size=2, max_in_flight=2) as s:
            s.add(4)
            s.sim.script("slow:0.8,500")
            await s.run_until_sent(4)
            failed = next(c for c in s.client.calls if not c.ok)
            (retry,) = [c for c in s.client.calls if c.ok and c.body == failed.body]
            # Before the fix the retry waited for the slow batch's end to wake the idle loop.
            assert retry.on_the_wire == 2, "the retry waited for the slow batch"


class TestCircuit:
    """Repeated 5xx / transport failures pause the whole sender, which then probes with one batch
    at a time: an outage costs a few requests, not one per queued batch per backoff."""

    async def test_outage_is_probed_one_batch_at_a_time(self, make_setup) -> None:
        async with make_setup(batch_size=10, max_in_flight=2) as s:
            s.add(500)  # 50 batches, each of which would retry on its own every <= 0.2 s
            s.sim.script(",".join(["503"] * 12))
            with capture_logs() as logs:
                await s.run_until_sent(500, timeout=10, what="delivery after the outage")
            failed = [c for c in s.client.calls if not c.ok]
            assert len(failed) == 12
            # The third failure in a row opens the circuit while at most one other batch is on
            # the wire; every later request goes alone, after a pause.
            assert all(c.on_the_wire == 1 for c in failed[CIRCUIT_THRESHOLD + 1 :]), failed
            pauses = [e["pause_seconds"] for e in logs
                      if e["event"] in ("bigpanda.unavailable", "bigpanda.still_unavailable")]
            assert len(pauses) >= len(failed) - CIRCUIT_THRESHOLD and min(pauses) > 0
            assert s.delivered() == 500
            assert s.sim.duplicates == 0
            assert s.dispatcher.paused_for(time.time()) == 0.0

    async def test_one_failure_does_not_pause(self, make_setup) -> None:
        """A single 500 is retried on the batch's own backoff; the others keep flowing."""
        async with make_setup(batch_size=5, max_in_flight=2) as s:
            s.add(20)
            s.sim.script("500")
            await s.run_until_sent(20)
            assert s.dispatcher._failures == 0
            assert [p.status for p in s.posts()].count(500) == 1


class TestShutdown:
    """Stopping gives in-flight batches a grace period, then cancels them losing nothing."""

    async def test_grace_then_cancel_keeps_events_pending(self, make_setup) -> None:
        async with make_setup(shutdown_grace=0.2, max_in_flight=1) as s:
            s.add(3)
            s.sim.script("slow:1.2")
            await s.stop_mid_request(timeout=2)
            # Stopped before BigPanda answered: the batch was cancelled, not waited for.
            assert [p.status for p in s.posts()] == [0]
            counts = s.outbox.counts()
            assert counts["pending"] == 3 and counts["sent"] == 0
            assert all(e.attempts == 0 for e in s.outbox.due(10, now=time.time()))

    async def test_in_flight_batch_finishes_within_grace(self, make_setup) -> None:
        async with make_setup(shutdown_grace=2.0, max_in_flight=1) as s:
            s.add(3)
            s.sim.script("slow:0.3")
            await s.stop_mid_request(timeout=3)
            assert s.outbox.counts()["sent"] == 3

    async def test_cancelling_the_loop_cancels_its_batches(self, make_setup) -> None:
        async with make_setup(max_in_flight=2, batch_size=1) as s:
            s.add(2)
            s.sim.script("slow:1,slow:1")
            task = asyncio.create_task(s.dispatcher.run(asyncio.Event()))
            await wait_until(lambda: len(s.posts()) == 2, 2, what="two requests in flight")
            tasks = set(s.dispatcher._tasks)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert tasks and all(t.done() for t in tasks)
            assert s.outbox.counts()["pending"] == 2

    async def test_wake_ends_idle_immediately(
        self, make_setup, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(dispatch, "IDLE_MAX", 60.0)  # only a wake can end this idle wait
        async with make_setup() as s:
            async with s.running():
                await asyncio.sleep(0.05)  # now idle on an empty outbox
                s.add(1, start=0, status="warning")
                await wait_until(all_sent(s, 1), 5, what="delivery")
            assert APP_KEY in s.posts()[0].body.decode()


class TestBisection:
    """A rejected batch is bisected: each bad event is dead-lettered once, the rest delivered,
    without a crash, a retry or a resend of what was already isolated."""

    async def test_every_event_bad(self, make_setup) -> None:
        """400 for every batch: 200 events, all dead-lettered once, a full bisection each."""
        async with make_setup(batch_size=20, max_in_flight=2) as s:
            s.add(200)
            s.sim.script("400*")
            with structlog.testing.capture_logs() as logs:
                async with s.running():
                    await wait_until(
                        lambda: s.outbox.counts()["dead"] == 200, 30, what="200 dead letters"
                    )
            letters = s.outbox.dead_letters(limit=1000)
            assert sorted(int(d.alert_id, 16) for d in letters) == list(range(200))
            assert {d.reason for d in letters} == {"rejected"}
            assert all("HTTP 400" in d.detail and d.payload for d in letters)
            assert s.delivered() == 0
            # A batch of 20 bad events is a full binary tree of 39 requests, and nothing more:
            # no isolated event went out again.
            posts = s.posts()
            assert len(posts) == 10 * 39
            singles = [orjson.loads(p.body)["alerts"][0]["incident_identifier"]
                       for p in posts if p.alert_count == 1]
            assert len(singles) == len(set(singles)) == 200
            assert not [e for e in logs if e["event"] == "batch.crashed"]
            assert sum(e["event"] == "event.rejected" for e in logs) == 200
            assert s.outbox.counts()["pending"] == 0
            assert s.dispatcher._metrics.registry.get_sample_value(
                "bridge_events_dead_lettered_total", {"reason": "rejected"}
            ) == 200

    async def test_one_bad_in_200(self, make_setup) -> None:
        """One poisoned event among 200: it alone is dead-lettered, the 199 others delivered,
        the good batches in one request each and the bad one in a few."""
        async with make_setup(batch_size=20, max_in_flight=2) as s:
            s.add(200)
            bad = f"{137:032x}"
            s.sim.poison(bad)
            with structlog.testing.capture_logs() as logs:
                async with s.running():
                    await wait_until(all_sent(s, 199), 10, what="199 delivered")
                    await wait_until(
                        lambda: s.outbox.counts()["dead"] == 1, 5, what="a dead letter"
                    )
            (letter,) = s.outbox.dead_letters()
            assert letter.alert_id == bad and letter.reason == "rejected"
            assert "poisoned" in letter.detail
            accepted = [a.alert["panther_alert_id"] for a in s.sim.accepted]
            assert sorted(accepted) == sorted(f"{i:032x}" for i in range(200) if i != 137)
            assert s.sim.duplicates == 0
            posts = s.posts()
            rejected = [p for p in posts if p.status == 400]
            # 20 -> 10 -> 5 -> 2|3 -> ... : one rejection per level down to the bad event.
            assert 1 < len(rejected) <= 6
            assert len([p for p in posts if p.status == 201]) <= 9 + len(rejected)
            assert not [e for e in logs if e["event"] in ("batch.crashed", "batch.failed")]
            (event,) = [e for e in logs if e["event"] == "event.rejected"]
            assert event["alert_id"] == bad and event["status"] == 400
