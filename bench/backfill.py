"""Backfill benchmark: concurrent slices against one sequential pager.

    python -m bench.backfill [--alerts 5000] [--latency 0.05] [--concurrency 8] [--lead 0] [--quick]

The Panther simulator (`bridge sim panther`, a process of its own, as a real Panther is remote and
must not share the bridge's CPU) holds `--alerts` alerts spread over the last hour and answers
every `/alerts` page after `--latency` seconds. Both runs read the same window into a fresh state
file (so dedup helps neither): first one pager following `next` from the start of the window to
its end, then `Poller.backfill` with `--concurrency` pagers over time slices. Prints both times
and the ratio, then one JSON line for `python -m bench`. `--lead S` starts the window S seconds
before the alerts' hour: the alerts bunch at its far end, as after an outage that ended in a storm,
and most slices start empty (idle pagers must take over the busy ones for the speed-up to hold).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import Processes, free_port, print_json
from bridge.metrics import Metrics
from bridge.normalize import MappingRules
from bridge.panther.client import PantherClient
from bridge.poller import Forwarding, Poller, PollResult
from bridge.sim.panther import DEFAULT_TOKEN
from bridge.state.sqlite import Outbox

TOKEN = DEFAULT_TOKEN
WINDOW = 3600.0  # `bridge sim panther --alerts N` spreads them over the last hour


async def timed_read(url: str, state: Path, since: float, until: float, concurrency: int | None
                     ) -> tuple[float, int, int]:
    """(seconds, alerts recorded, pages) of one backfill; concurrency None: one plain pager."""
    outbox = Outbox.open(state)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(8, 2 * (concurrency or 1)))
        ) as session:
            client = PantherClient(session, api_url=url, api_token=TOKEN, page_size=50)
            poller = Poller(
                client, outbox, Metrics(), Forwarding(lambda _a: "bench", MappingRules()),
                initial_lookback=3600, overlap=0, backfill_concurrency=concurrency or 1,
            )
            started = time.perf_counter()
            if concurrency is None:
                result = PollResult()
                await poller.read_window(since, until, advance_watermark=False, result=result)
            else:
                result = await poller.backfill(since, until)
            return time.perf_counter() - started, result.new_events, result.pages
    finally:
        outbox.close()


async def run(alerts: int, latency: float, concurrency: int, lead: float = 0.0
              ) -> dict[str, float]:
    procs = Processes()
    port = free_port()
    sim = await procs.spawn(
        sys.executable, "-m", "bridge", "sim", "panther", "--host", "127.0.0.1",
        "--port", str(port), "--alerts", str(alerts), "--latency", str(latency),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert sim.stdout is not None
        line = await asyncio.wait_for(sim.stdout.readline(), 60)
        if b"panther simulator on" not in line:
            raise SystemExit(f"simulator did not start: {line.decode(errors='replace')}")
        url = f"http://127.0.0.1:{port}"
        now = time.time()
        since, until = now - WINDOW - 60 - lead, now + 60
        with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
            seq_s, seq_n, seq_pages = await timed_read(
                url, Path(tmp) / "seq.db", since, until, None
            )
            con_s, con_n, con_pages = await timed_read(
                url, Path(tmp) / "con.db", since, until, concurrency
            )
    finally:
        await procs.close()
    if seq_n != alerts or con_n != alerts:
        raise SystemExit(f"expected {alerts} alerts, read {seq_n} sequentially, {con_n} sliced")
    print(f"{alerts} alerts, page latency {latency * 1000:.0f} ms"
          + (f", after {lead:.0f} s of window without alerts" if lead else ""))
    print(f"  sequential pager:      {seq_s:6.2f} s  {seq_pages:4d} pages  "
          f"{alerts / seq_s:8,.0f} alerts/s")
    print(f"  {concurrency} concurrent slices: {con_s:6.2f} s  {con_pages:4d} pages  "
          f"{alerts / con_s:8,.0f} alerts/s")
    print(f"  speed-up: {seq_s / con_s:.1f}x")
    return {
        "alerts": alerts,
        "latency_s": latency,
        "concurrency": concurrency,
        "lead_s": lead,
        "sequential_s": round(seq_s, 3),
        "concurrent_s": round(con_s, 3),
        "speedup": round(seq_s / con_s, 2),
        "concurrent_alerts_per_s": round(alerts / con_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__)
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lead", type=float, default=0.0,
                        help="seconds of window without alerts before them (default 0)")
    parser.add_argument("--quick", action="store_true", help="1,000 alerts (smoke run)")
    args = parser.parse_args(argv)
    alerts = 1000 if args.quick else args.alerts
    summary = asyncio.run(run(alerts, args.latency, args.concurrency, args.lead))
    print_json(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
