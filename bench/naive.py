"""The naive baseline: how typical integrations move alerts, for the catch-up ratio.

One sequential pager; for each alert of a page, one POST of that alert alone, awaited before the
next; no state, no batching, no concurrency. It is given a keep-alive session and `json` from the
standard library, which is already kinder than many integrations (a new connection per request).
Run on a subset (`--limit`) and reported as a rate: at ~20 ms per request the full catch-up would
take many minutes.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from bench._client import minimal_alert, parser, report, rfc3339


async def run(args) -> None:
    sent = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        params: list[tuple[str, str]] = [
            ("type", "ALERT"), ("sort-dir", "asc"), ("created-after", rfc3339(args.since)),
            ("limit", "50"),
        ]
        cursor = None
        while True:
            query = params + ([("cursor", cursor)] if cursor else [])
            async with session.get(
                f"{args.panther}/alerts", params=query, headers={"X-API-Key": args.panther_token}
            ) as resp:
                resp.raise_for_status()
                page = await resp.json()
            for raw in page["results"]:
                body = dict(minimal_alert(raw), app_key=args.app_key)
                async with session.post(
                    f"{args.bigpanda}/data/v2/alerts",
                    data=json.dumps(body),
                    headers={
                        "Authorization": f"Bearer {args.bigpanda_token}",
                        "Content-Type": "application/json",
                    },
                ) as resp:
                    resp.raise_for_status()
                sent += 1
                if args.limit and sent >= args.limit:
                    break
            cursor = page.get("next")
            if not cursor or (args.limit and sent >= args.limit):
                break
    report(alerts=sent, seconds=time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parser("python -m bench.naive", __doc__).parse_args(argv)))


if __name__ == "__main__":
    main()
