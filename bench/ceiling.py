"""The transport ceiling: the fastest a client can move alerts through these two APIs.

A bare aiohttp client with the bridge's concurrency and batch size: `--slices` pagers (1: the
bridge's sequential head poll), `--max-in-flight` concurrent POSTs of `--batch-size` alerts, one
keep-alive session per target. Per alert it only builds the least BigPanda accepts as distinct
(`minimal_alert`): no validation, no normalization, no state, no retries. What the bridge adds on
top of this is the price of its guarantees; the catch-up target is at least half this rate.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import aiohttp
import orjson

from bench._client import minimal_alert, parser, report, rfc3339


class Ceiling:
    def __init__(self, args) -> None:
        self.args = args
        self.buffer: deque[bytes] = deque()
        self.ready = asyncio.Condition()
        self.paging_done = False
        self.sent = 0
        self.listed = 0

    async def page(self, session: aiohttp.ClientSession, since: float, until: float | None):
        params = [("type", "ALERT"), ("sort-dir", "asc"), ("created-after", rfc3339(since)),
                  ("limit", "50")]
        if until is not None:
            params.append(("created-before", rfc3339(until)))
        headers = {"X-API-Key": self.args.panther_token}
        cursor = None
        while True:
            query = params + ([("cursor", cursor)] if cursor else [])
            async with session.get(
                f"{self.args.panther}/alerts", params=query, headers=headers
            ) as resp:
                resp.raise_for_status()
                page = orjson.loads(await resp.read())
            async with self.ready:
                self.buffer.extend(orjson.dumps(minimal_alert(r)) for r in page["results"])
                self.listed += len(page["results"])
                self.ready.notify_all()
            cursor = page.get("next")
            if not cursor or (self.args.limit and self.listed >= self.args.limit):
                return

    async def send(self, session: aiohttp.ClientSession) -> None:
        head = b'{"app_key":' + orjson.dumps(self.args.app_key) + b',"alerts":['
        headers = {
            "Authorization": f"Bearer {self.args.bigpanda_token}",
            "Content-Type": "application/json",
        }
        size = self.args.batch_size
        while True:
            async with self.ready:
                await self.ready.wait_for(lambda: len(self.buffer) >= size or self.paging_done)
                if not self.buffer:
                    return
                batch = [self.buffer.popleft() for _ in range(min(size, len(self.buffer)))]
            body = head + b",".join(batch) + b"]}"
            async with session.post(
                f"{self.args.bigpanda}/data/v2/alerts", data=body, headers=headers
            ) as resp:
                resp.raise_for_status()
            self.sent += len(batch)

    async def run(self) -> None:
        args = self.args
        started = time.perf_counter()
        now = time.time()
        bounds = [args.since + (now - args.since) * i / args.slices for i in range(args.slices + 1)]
        async with aiohttp.ClientSession() as panther, aiohttp.ClientSession() as bigpanda:
            senders = [asyncio.create_task(self.send(bigpanda)) for _ in range(args.max_in_flight)]
            # The last slice is open-ended, like the head poll: nothing created since is missed.
            await asyncio.gather(*(
                self.page(panther, bounds[i], bounds[i + 1] if i < args.slices - 1 else None)
                for i in range(args.slices)
            ))
            async with self.ready:
                self.paging_done = True
                self.ready.notify_all()
            await asyncio.gather(*senders)
        report(alerts=self.sent, seconds=time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    p = parser("python -m bench.ceiling", __doc__)
    p.add_argument("--slices", type=int, default=1, help="concurrent pagers over the window")
    p.add_argument("--max-in-flight", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=100)
    asyncio.run(Ceiling(p.parse_args(argv)).run())


if __name__ == "__main__":
    main()
