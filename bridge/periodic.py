"""Periodic loops that stop at once when the service is stopping.

Every long-lived loop of the bridge (poll, sweep, status sync, gauges, checkpoints, job polls,
catalog refresh) has the same shape: do the work, wait, again, until SIGTERM. Written out, the
wait is `wait_for(stopping.wait(), delay)` inside a `suppress(TimeoutError)`, easy to get subtly
wrong (a loop that sleeps through shutdown). Here it is written once, as arq's worker does it:
`async for _ in every(interval, stopping): await work()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable


async def pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`, or less if stopping is set meanwhile; True when stopping."""
    if not stopping.is_set() and seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


async def every(
    interval: float | Callable[[], float],
    stopping: asyncio.Event,
    *,
    first: bool = True,
) -> AsyncIterator[None]:
    """Yield once per `interval` seconds until `stopping` is set.

    `interval` may be a callable, asked before each wait, so a loop can back off after failures
    (the delay depends on how the last round went). With `first`, the first round runs at once;
    without, after one interval. The wait is interrupted by stopping, never slept through.
    """
    if first and not stopping.is_set():
        yield
    while not stopping.is_set():
        delay = interval() if callable(interval) else interval
        if await pause(stopping, delay):
            return
        yield
