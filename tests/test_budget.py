"""Panther request budgets: the tenant's token bucket and the late sweep's share."""

from __future__ import annotations

from bridge.budget import RequestBudget, SweepBudget


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class TestRequestBudget:
    """Every Panther request takes a token; beyond the burst, requests go at the average rate."""

    async def test_burst_then_rate(self) -> None:
        t = FakeTime()
        budget = RequestBudget(2.0, 5, clock=t.clock, sleep=t.sleep)
        for _ in range(5):
            await budget.acquire()
        assert t.slept == []  # the burst goes at once
        for _ in range(10):
            await budget.acquire()
        # Ten more at 2 a second: five seconds of waiting, never more requests than the budget.
        assert abs(t.now - 5.0) < 1e-9
        assert budget.granted == 15
        assert 15 <= 5 + 2.0 * t.now + 1e-9

    async def test_refills_while_idle(self) -> None:
        t = FakeTime()
        budget = RequestBudget(1.0, 3, clock=t.clock, sleep=t.sleep)
        for _ in range(3):
            await budget.acquire()
        t.now += 100.0  # idle: the bucket refills to its burst, no further
        for _ in range(3):
            await budget.acquire()
        assert t.slept == []
        await budget.acquire()
        assert t.slept == [1.0]

    async def test_zero_rate_means_no_limit(self) -> None:
        t = FakeTime()
        budget = RequestBudget(0.0, 1, clock=t.clock, sleep=t.sleep)
        for _ in range(1000):
            await budget.acquire()
        assert t.slept == []


class TestSweepBudget:
    """The sweep may always spend its per-minute allowance, beyond it only its share."""

    def test_small_sweeps_always_run(self) -> None:
        t = FakeTime()
        budget = SweepBudget(per_minute=12, share=0.25, clock=t.clock)
        # 3-page sweeps after every 1-page poll every 30 s: within 12 a minute.
        for _ in range(40):
            budget.spent("poll", 1)
            assert budget.allowance() >= 3
            budget.spent("sweep", 3)
            t.now += 30

    def test_storm_keeps_the_share(self) -> None:
        t = FakeTime()
        budget = SweepBudget(per_minute=12, share=0.25, clock=t.clock)
        for _ in range(1800):  # half an hour of polls every second, 2 pages each
            budget.spent("poll", 2)
            budget.spent("sweep", min(120, budget.allowance()))
            t.now += 1
        assert budget.sweep_requests > 0
        share = budget.sweep_requests / (budget.sweep_requests + budget.other_requests)
        assert share <= 0.25 + 0.01, share

    def test_nothing_spent_grants_the_floor(self) -> None:
        t = FakeTime()
        budget = SweepBudget(per_minute=12, share=0.25, clock=t.clock)
        assert budget.allowance() == 12  # a minute's worth at start
        t.now += 600
        assert budget.allowance() == 60  # 12 a minute over the 5-minute window
