"""bridge.catchup: a window read by concurrent pagers loses no alert, pays per alert, and says a
prefix is done only once every alert in it has been read."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.catchup import Slice, SplitReader
from bridge.errors import TransportError

SINCE, UNTIL = 0.0, 1000.0


class Listing:
    """Panther's listing as a pager sees it: the alerts of [start, end) ascending, `page` at a
    time behind a cursor; the end is the slice's at the first request, as a cursor keeps it."""

    def __init__(self, times: list[float], page: int) -> None:
        self.times = sorted(times)
        self.page = page
        self.requests = 0
        self.stored: list[float] = []
        self.marks: list[float] = []
        self.unsafe_marks: list[float] = []
        self.pagers = 0
        self.slices: list[tuple[float, float]] = []  # as each was first taken

    async def read(self, piece: Slice) -> None:
        self.slices.append((piece.start, piece.end))
        window = [t for t in self.times if piece.start <= t < piece.end]
        for first in range(0, max(len(window), 1), self.page):
            self.requests += 1
            await asyncio.sleep(0)  # the other pagers run while this page is on the wire
            page = window[first : first + self.page]
            self.stored.extend(page)
            piece.advance(page[-1] if page else None, more=first + self.page < len(window))
            if piece.position is not None and piece.position >= piece.end:
                break  # a split moved this slice's end: the thief reads on from there

    def prefix_done(self, mark: float) -> None:
        self.marks.append(mark)
        if any(t <= mark and t not in self.stored for t in self.times):
            self.unsafe_marks.append(mark)


def read_all(times: list[float], *, pagers: int, page: int) -> Listing:
    listing = Listing(times, page)
    asyncio.run(SplitReader(listing.read, pagers, listing.prefix_done).run(SINCE, UNTIL))
    listing.pagers = pagers
    return listing


# A window read through: up to 200 alerts anywhere in it, 1 to 8 pagers, pages of 1 to 10.
windows_read = st.builds(
    read_all,
    st.lists(st.floats(SINCE, UNTIL, exclude_max=True, allow_nan=False), max_size=200, unique=True),
    pagers=st.integers(1, 8),
    page=st.integers(1, 10),
)


@settings(max_examples=60, deadline=None)
@given(listing=windows_read)
def test_no_alert_is_lost_and_the_cost_follows_the_alerts(listing: Listing) -> None:
    assert set(listing.stored) == set(listing.times)
    assert listing.requests <= math.ceil(len(listing.times) / listing.page) + 2 * listing.pagers
    # One slice per pager, and at most pagers // 2 taken from a busy one.
    assert len(listing.slices) <= listing.pagers + listing.pagers // 2


@settings(max_examples=60, deadline=None)
@given(listing=windows_read)
def test_a_prefix_is_done_only_once_all_its_alerts_are_read(listing: Listing) -> None:
    assert listing.unsafe_marks == []
    assert listing.marks == sorted(listing.marks)
    if listing.times:
        assert listing.marks[-1] == max(listing.times)


def test_a_burst_at_the_far_end_is_split_among_idle_pagers() -> None:
    burst = [990.0 + i * 0.01 for i in range(400)]  # the whole storm in the last pager's slice
    split = read_all(burst, pagers=4, page=10)
    alone = read_all(burst, pagers=1, page=10)
    assert set(split.stored) == set(burst)
    assert len(split.slices) == 4 + 2, "idle pagers did not take over the busy slice"
    assert alone.requests == 40
    assert split.requests <= 40 + 2 * 4


def test_one_pager_reads_the_window_in_order() -> None:
    times = [float(t) for t in range(0, 1000, 7)]
    listing = read_all(times, pagers=1, page=10)
    assert listing.stored == times


def test_a_failed_slice_raises_its_own_error() -> None:
    async def read(piece: Slice) -> None:
        if piece.start > SINCE:
            raise TransportError("panther unreachable", target="panther")
        await asyncio.sleep(0)

    with pytest.raises(TransportError, match="panther unreachable"):
        asyncio.run(SplitReader(read, 4).run(SINCE, UNTIL))
