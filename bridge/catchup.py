"""Catch-up and backfill slicing: one time window read by concurrent pagers, paying per alert.

A catch-up (after an outage, a storm) or a backfill pages its window with `pagers` concurrent
readers. The window starts as one slice per pager, and a pager that runs out of work takes the far
half of the busiest slice still being read (at most `pagers // 2` times), so a window costs about
ceil(alerts / page) + 2 x pagers requests, not a fixed number of slices. A pager whose slice was
empty waits for the busy ones to show a full page rather than stopping: on a window whose alerts
bunch at one end (an outage that ended in a storm) most slices are empty and answer first.

This module only schedules the slices; what reading one means (listing Panther, storing the
pages) is the caller's `read` (`bridge.poller.Poller`). The reader keeps a slice's `position`
(newest `createdAt` read) and `more` (its last page had a `next`) up to date: splitting needs them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bridge.errors import BridgeError


@dataclass(slots=True)
class Slice:
    """A time slice of a catch-up or backfill window and how far its pager has read it."""

    start: float
    end: float
    taken: bool = False
    done: bool = False
    position: float | None = None  # newest createdAt read so far
    more: bool = True  # its last page had a `next`: more to read
    newest: float | None = None
    # Told after each page, so pagers waiting for work can take half of this slice.
    moved: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def advance(self, newest: float | None, *, more: bool) -> None:
        """A page of this slice was read: its newest `createdAt` (None: an empty page), and
        whether another page follows."""
        if newest is not None:
            self.position = newest if self.position is None else max(self.position, newest)
        self.more = more
        if self.moved is not None:
            self.moved()


class SplitReader:
    """Reads [since, until) with `pagers` concurrent `read(slice)` calls, paying per alert.

    The window starts as one slice per pager. A pager out of work takes the far half of the
    slice with the most left to read, if that slice's last page was full, at most `pagers // 2`
    times: each split costs at most two requests (the thief's last, partial page; the victim's
    page that overshoots the new bound), so N alerts cost at most ceil(N / page) + 2 x pagers.
    `prefix_done(mark)` is told the newest alert of the contiguous prefix of finished slices.
    """

    def __init__(
        self,
        read: Callable[[Slice], Awaitable[None]],
        pagers: int,
        prefix_done: Callable[[float], None] | None = None,
    ) -> None:
        self._read = read
        self._pagers = max(1, pagers)
        self._prefix_done = prefix_done
        self._slices: list[Slice] = []
        self._splits_left = self._pagers // 2
        self._prefix = 0
        self._mark: float | None = None
        # Set (and replaced) whenever a slice reads a page or ends: idle pagers wait on it.
        self._progress = asyncio.Event()

    async def run(self, since: float, until: float) -> None:
        step = (until - since) / self._pagers
        bounds = [since + i * step for i in range(self._pagers)] + [until]
        self._slices = [Slice(a, b, moved=self._moved) for a, b in itertools.pairwise(bounds)]
        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(self._pagers):
                    tg.create_task(self._pager())
        except ExceptionGroup as group:
            # One failed slice stops the others (what was recorded stays); say why plainly.
            failures = [e for e in group.exceptions if isinstance(e, BridgeError)]
            if failures and len(failures) == len(group.exceptions):
                raise failures[0] from None
            raise

    def _next_slice(self) -> Slice | None:
        for piece in self._slices:
            if not piece.taken:
                piece.taken = True
                return piece
        if self._splits_left <= 0:
            return None
        busy = [p for p in self._slices if not p.done and p.more and p.position is not None]
        if not busy:
            return None
        victim = max(busy, key=lambda p: p.end - (p.position or p.start))
        mid = ((victim.position or victim.start) + victim.end) / 2
        if victim.end - mid < 1e-3:
            return None
        self._splits_left -= 1
        thief = Slice(mid, victim.end, taken=True, moved=self._moved)
        victim.end = mid
        self._slices.insert(self._slices.index(victim) + 1, thief)
        return thief

    async def _pager(self) -> None:
        while True:
            piece = self._next_slice()
            if piece is None:
                if not self._may_split_later():
                    return
                # The busy slices have not shown a full page yet (on a window whose alerts
                # bunch at one end, the empty slices answer first): wait for one to.
                await self._progress.wait()
                continue
            await self._read(piece)
            if piece.position is not None:
                piece.newest = min(piece.position, piece.end)
            piece.done = True
            self._advance()
            self._moved()

    def _moved(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    def _may_split_later(self) -> bool:
        """Whether a slice still being read may yet be split: one whose first page is not back,
        or whose last page was full."""
        return self._splits_left > 0 and any(
            not p.done and (p.position is None or p.more) for p in self._slices
        )

    def _advance(self) -> None:
        mark: float | None = None
        while self._prefix < len(self._slices) and self._slices[self._prefix].done:
            newest = self._slices[self._prefix].newest
            if newest is not None:
                mark = newest if mark is None else max(mark, newest)
            self._prefix += 1
        if mark is not None and self._prefix_done is not None:
            self._mark = mark if self._mark is None else max(self._mark, mark)
            self._prefix_done(self._mark)
