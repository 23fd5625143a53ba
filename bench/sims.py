"""Both simulators in one helper process, plus a small control API for the benchmark runner.

`python -m bench.sims --alerts N --page-latency S --bigpanda-latency S` serves the Panther and
BigPanda simulators on ephemeral 127.0.0.1 ports and prints one JSON line with their URLs. The
runner talks to the control API (a third port) to start production, start or end an outage and
read counts and delivery latencies. Counting needs in-process access to the simulators, and the
process measured (the bridge, the naive client or the ceiling) must not share a CPU-bound event
loop with them: hence a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import resource
import sys
import time
from datetime import UTC, datetime

import orjson
from aiohttp import web

from bridge.sim import serve_app
from bridge.sim.bigpanda import BigPandaSimulator
from bridge.sim.panther import PantherSimulator
from bridge.timeutil import parse_timestamp

PANTHER_TOKEN = "bench-panther-token"
BIGPANDA_TOKEN = "bench-bigpanda-token"
APP_KEY = "bench-app-key"


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100); 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Sims:
    """The two simulators and what the runner asks of them."""

    def __init__(self, *, alerts: int, spacing: float, page_latency: float, bp_latency: float):
        self.panther = PantherSimulator(token=PANTHER_TOKEN, page_latency=page_latency)
        self.bigpanda = BigPandaSimulator(
            token=BIGPANDA_TOKEN, app_keys=[APP_KEY], latency=bp_latency
        )
        # alert id -> creation instant (epoch s) as the simulator knows it exactly.
        self.created: dict[str, float] = {}
        if alerts:
            for alert in self.panther.generate(alerts, spacing=spacing):
                self._remember(alert)
        # Late-indexed alerts: id -> the instant they became listable (latency is measured
        # from there: before it no client could have read them).
        self.listable: dict[str, float] = {}
        self.producing: asyncio.Task[None] | None = None
        self.produced = 0
        self._accepted_ids: set[str] = set()
        self._counted = 0

    def _remember(self, alert: dict) -> None:
        moment = parse_timestamp(alert["createdAt"])
        self.created[alert["id"]] = moment.timestamp() if moment else time.time()

    async def produce(
        self, rate: float, duration: float, late_fraction: float = 0.0, late_by: float = 0.0
    ) -> None:
        """`rate` new alerts per second for `duration` s, `createdAt` = the exact insertion time.

        The simulator's own `produce` draws `createdAt` styles that truncate to the second, which
        would add up to 1 s of phantom latency to ~3% of alerts; an exact instant keeps the
        latency figure honest. Paced against the start, so a busy loop catches up, not drifts.
        Every 1/late_fraction-th alert is listable only `late_by` s after its createdAt.
        """
        every = round(1 / late_fraction) if late_fraction > 0 else 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        total = math.ceil(rate * duration - 1e-9)
        while self.produced < total:
            elapsed = loop.time() - start
            due = min(total, math.floor(elapsed * rate) + 1)
            while self.produced < due:
                created = datetime.now(UTC)
                late = every and self.produced % every == every - 1
                alert = self.panther.add_alert(createdAt=created, late_by=late_by if late else None)
                self._remember(alert)
                if late:
                    self.listable[alert["id"]] = created.timestamp() + late_by
                self.produced += 1
            await asyncio.sleep(max(0.0, start + self.produced / rate - loop.time()))

    # -- control API -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/latency", self._latency)
        app.router.add_post("/produce", self._produce)
        app.router.add_post("/outage", self._outage)
        return app

    def accepted_alerts(self) -> int:
        """How many distinct generated alerts BigPanda accepted (counted incrementally)."""
        accepted = self.bigpanda.accepted
        for item in accepted[self._counted :]:
            alert_id = item.alert.get("panther_alert_id")
            if alert_id in self.created:
                self._accepted_ids.add(alert_id)
        self._counted = len(accepted)
        return len(self._accepted_ids)

    async def _stats(self, request: web.Request) -> web.Response:
        panther_requests = self.panther.requests
        bp_requests = self.bigpanda.requests
        accepted = self.bigpanda.accepted
        usage = resource.getrusage(resource.RUSAGE_SELF)
        body = {
            "alerts": len(self.created),
            "produced": self.produced,
            "producing": self.producing is not None and not self.producing.done(),
            "accepted": len(accepted),
            "accepted_alerts": self.accepted_alerts(),
            "duplicates": self.bigpanda.duplicates,
            "panther_requests": len(panther_requests),
            "panther_list_requests": sum(1 for r in panther_requests if r.path == "/alerts"),
            # Windowed listings of the overlap (created-before, no status filter): the sweep's.
            "panther_sweep_requests": sum(
                1 for r in panther_requests
                if r.path == "/alerts" and any(k == "created-before" for k, _ in r.query)
                and not any(k == "status" for k, _ in r.query)
            ),
            "bigpanda_requests": len(bp_requests),
            "bigpanda_errors": sum(1 for r in bp_requests if r.status >= 400),
            # Wall-clock instants (time.time()) of the first Panther request and the last accept:
            # the catch-up time is measured between them, on the simulators' side, for every client.
            "first_panther_at": self._first_request_wall(),
            "last_accepted_at": accepted[-1].received_at if accepted else None,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    def _first_request_wall(self) -> float | None:
        if not self.panther.requests:
            return None
        # Request records carry monotonic time; convert with the current offset.
        return self.panther.requests[0].at + (time.time() - time.monotonic())

    async def _latency(self, request: web.Request) -> web.Response:
        """Creation -> accepted by BigPanda, in seconds, over every alert delivered once; with
        `?late=1`, listable -> accepted over the late-indexed alerts only."""
        late = request.query.get("late") == "1"
        seen: set[str] = set()
        values = []
        for accepted in self.bigpanda.accepted:
            alert_id = accepted.alert.get("panther_alert_id")
            created = (self.listable if late else self.created).get(alert_id)
            if created is None or alert_id in seen:
                continue
            seen.add(alert_id)
            values.append(max(0.0, accepted.received_at - created))
        values.sort()
        body = {
            "count": len(values),
            "p50": percentile(values, 50),
            "p99": percentile(values, 99),
            "max": values[-1] if values else 0.0,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _produce(self, request: web.Request) -> web.Response:
        rate = float(request.query["rate"])
        duration = float(request.query["duration"])
        late_fraction = float(request.query.get("late_fraction", 0))
        late_by = float(request.query.get("late_by", 0))
        self.producing = asyncio.create_task(
            self.produce(rate, duration, late_fraction, late_by)
        )
        return web.json_response({"started": True})

    async def _outage(self, request: web.Request) -> web.Response:
        # outage(0) ends one in progress: its end is "now".
        self.bigpanda.outage(float(request.query["seconds"]))
        return web.json_response({"ok": True})


async def main_async(args: argparse.Namespace) -> None:
    sims = Sims(
        alerts=args.alerts,
        spacing=args.spacing,
        page_latency=args.page_latency,
        bp_latency=args.bigpanda_latency,
    )
    if args.outage:
        sims.bigpanda.outage(args.outage)
    async with (
        serve_app(sims.panther.app) as panther_url,
        serve_app(sims.bigpanda.app) as bigpanda_url,
        serve_app(sims.app()) as control_url,
    ):
        ready = {
            "panther": panther_url,
            "bigpanda": bigpanda_url,
            "control": control_url,
            "oldest": min(sims.created.values(), default=time.time()),
        }
        sys.stdout.write(orjson.dumps(ready).decode() + "\n")
        sys.stdout.flush()
        # Until the runner closes our stdin (or dies): never outlive it.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        if sims.producing is not None:
            sims.producing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sims.producing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sims", description=__doc__)
    parser.add_argument("--alerts", type=int, default=0, help="alerts waiting in Panther")
    parser.add_argument("--spacing", type=float, default=0.1, help="seconds between them")
    parser.add_argument("--page-latency", type=float, default=0.05)
    parser.add_argument("--bigpanda-latency", type=float, default=0.02)
    parser.add_argument("--outage", type=float, default=0.0, help="BigPanda answers 503 for S s")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
