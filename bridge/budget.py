"""Panther request budgets: how much of a tenant's API the bridge may use, and for what.

Panther documents no rate limit (shared/api/PANTHER.md), so the bridge sets its own: every request
to Panther (head poll, sweep, status sync, catalog, backfill) draws a token from one bucket per
tenant (`panther.max_requests_per_second`, `panther.request_burst`). A misbehaving listing (a
cursor that leads nowhere, a retry storm) then costs at most the budget, never a tight loop.

Within it, the late sweep has a share of its own (`SweepBudget`): it may always spend
`panther.sweep_requests_per_minute`, and beyond that at most `panther.sweep_share` of the Panther
requests the bridge made, so at storm volume re-reading the overlap cannot crowd out the head poll.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

# The window over which the sweep's share of requests is measured.
SHARE_WINDOW = 300.0


class RequestBudget:
    """A token bucket: `rate` requests per second on average, at most `burst` at once.

    `acquire()` waits (asyncio) until a token is there; callers queue in arrival order. A rate of
    0 means no limit.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()
        self.granted = 0
        self.waited = 0.0  # seconds callers spent waiting for a token, in total

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        """Take one token, waiting for it if the bucket is empty."""
        self.granted += 1
        if self.rate <= 0:
            return
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                wait = (1.0 - self._tokens) / self.rate
                self.waited += wait
                await self._sleep(wait)  # type: ignore[misc]
                self._refill()
            self._tokens -= 1.0


class SweepBudget:
    """How many list requests the late sweep may spend now, by the requests made lately.

    `spent(kind, n)` records Panther requests (`kind` "sweep" or anything else). Over the last
    `SHARE_WINDOW` seconds, sweeping may take `per_minute` requests a minute, or `share` of all
    requests when that is more: small sweeps after every poll at normal volume, and at storm
    volume (when the head poll alone makes many requests) never more than the share.
    """

    def __init__(
        self,
        *,
        per_minute: float,
        share: float,
        clock: Callable[[], float] = time.monotonic,
        window: float = SHARE_WINDOW,
    ) -> None:
        self.per_minute = per_minute
        self.share = share
        self._clock = clock
        self._window = window
        self._log: deque[tuple[float, bool, int]] = deque()  # (when, sweep?, requests)
        self._started = clock()
        self.sweep_requests = 0  # since start, for the bench and tests
        self.other_requests = 0

    def spent(self, kind: str, requests: int) -> None:
        if requests <= 0:
            return
        sweep = kind == "sweep"
        if sweep:
            self.sweep_requests += requests
        else:
            self.other_requests += requests
        self._log.append((self._clock(), sweep, requests))

    def _recent(self) -> tuple[int, int]:
        horizon = self._clock() - self._window
        while self._log and self._log[0][0] < horizon:
            self._log.popleft()
        sweep = sum(n for _, s, n in self._log if s)
        other = sum(n for _, s, n in self._log if not s)
        return sweep, other

    def allowance(self) -> int:
        """The list requests a sweep may make now (0: none)."""
        sweep, other = self._recent()
        # The per-minute allowance accrues from start (a minute's worth at once): a process
        # started a minute ago has not earned five minutes of sweeping.
        span = min(self._window, max(60.0, self._clock() - self._started))
        floor = self.per_minute * span / 60.0
        if self.share >= 1.0:
            return 1 << 30
        by_share = self.share / (1.0 - self.share) * other
        return max(0, int(max(floor, by_share) - sweep))
