"""The periodic loop helper: rounds on schedule, interrupted by stopping, never slept through."""

from __future__ import annotations

import asyncio

from bridge.periodic import every, pause


class TestEvery:
    """`every` yields per interval, asks a callable interval each time, and ends on stopping."""

    async def test_first_round_runs_at_once_and_stopping_ends_the_loop(self) -> None:
        stopping = asyncio.Event()
        rounds = 0
        async for _ in every(0.0, stopping):
            rounds += 1
            if rounds == 3:
                stopping.set()
        assert rounds == 3

    async def test_without_first_the_loop_waits_one_interval(self) -> None:
        stopping = asyncio.Event()
        stopping.set()
        rounds = [None async for _ in every(0.0, stopping, first=False)]
        assert rounds == []

    async def test_a_callable_interval_is_asked_before_each_wait(self) -> None:
        stopping = asyncio.Event()
        asked: list[int] = []

        def delay() -> float:
            asked.append(len(asked))
            return 0.0

        rounds = 0
        async for _ in every(delay, stopping):
            rounds += 1
            if rounds == 4:
                stopping.set()
        assert rounds == 4
        assert len(asked) == 3, "one wait between each pair of rounds"

    async def test_stopping_interrupts_a_long_wait(self) -> None:
        stopping = asyncio.Event()
        rounds = 0

        async def loop() -> None:
            nonlocal rounds
            async for _ in every(3600.0, stopping):
                rounds += 1

        task = asyncio.create_task(loop())
        await asyncio.sleep(0)
        stopping.set()
        await asyncio.wait_for(task, 10)  # an hour-long wait ended by the event
        assert rounds == 1


class TestPause:
    async def test_returns_whether_stopping(self) -> None:
        stopping = asyncio.Event()
        assert await pause(stopping, 0.0) is False
        stopping.set()
        assert await pause(stopping, 3600.0) is True
