"""The benchmark runner: `python -m bench`.

Every scenario starts fresh simulators in a helper process (`bench.sims`) and the client under
test in a process of its own: the real bridge (`python -m bridge run --config F`), the naive
baseline (`bench.naive`) or the transport ceiling (`bench.ceiling`). The bridge's CPU time and
peak RSS are read from /proc/<pid>/stat and /proc/<pid>/status while it runs; catch-up times are
taken on the simulators' side (first Panther request -> last alert accepted by BigPanda), the
same way for every client. Ratios are computed from figures of the same run only: the machine is
shared and noisy, so figures from different runs do not compare.

The processes and the waits on them are `bench.rig`'s; the table, its order and the targets it
holds the figures to are `bench.report`'s.

Scenarios (`--only`): catchup (bridge, naive, ceiling; also gives the catch-up RSS and CPU and
the bridge's list requests), steady (also the sweep's share of Panther requests), late (late-indexed
alerts at normal volume: listable -> delivered latency; and the list requests of a small
catch-up, 137 alerts over 30 minutes), outage, normalizer, backfill (bench/backfill.py, also
with the alerts bunched at the window's end), ha (bench/ha.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import (
    POLL_INTERVAL,
    ROOT,
    BenchError,
    Processes,
    cpu_seconds,
    wait_until,
)
from bench.report import machine, render_table, rows
from bench.rig import (
    DEFAULT_JSON,
    SCENARIOS,
    Options,
    await_first_request,
    bridge_process,
    catchup_rate,
    simulators,
    start_profiler,
    stop_profiler,
    wait_caught_up,
)
from bench.sims import APP_KEY, BIGPANDA_TOKEN, PANTHER_TOKEN

# -- scenarios ---------------------------------------------------------------------------------


async def catchup_bridge(procs: Processes, opts: Options, workdir: Path) -> dict[str, Any]:
    n = opts.alerts
    async with simulators(procs, opts, alerts=n) as sims:
        sim_cpu_before = (await sims.stats())["cpu_seconds"]
        async with bridge_process(
            procs, sims, workdir, "catchup", wrapper=opts.bridge_wrapper
        ) as run:
            pid = run.pid
            spy = await start_profiler(procs, pid, opts.profile) if opts.profile else None
            await await_first_request(run, sims)
            stats = await wait_caught_up("bridge catch-up", run, sims, n)
            cpu_total = cpu_seconds(pid)
            mem = run.sample()
            if spy is not None:
                await stop_profiler(procs, spy)
    rate = catchup_rate(stats, n)
    startup_cpu = run.cpu_at_first_request or 0.0
    return {
        **rate,
        "peak_rss_mb": mem["VmHWM"],
        "cpu_seconds": cpu_total,
        "cpu_seconds_startup": startup_cpu,
        # Per 10,000 delivered, without the interpreter start and imports (reported apart).
        "cpu_seconds_per_10k": (cpu_total - startup_cpu) * 10_000 / n,
        "cpu_seconds_per_10k_with_startup": cpu_total * 10_000 / n,
        "duplicates": stats["duplicates"],
        "bigpanda_requests": stats["bigpanda_requests"],
        "panther_requests": stats["panther_requests"],
        "list_requests": stats["panther_list_requests"],
        "sims_cpu_share": (stats["cpu_seconds"] - sim_cpu_before) / max(rate["seconds"], 1e-9),
    }


async def catchup_client(
    procs: Processes, opts: Options, module: str, n: int, *extra: str
) -> dict[str, Any]:
    """Run `bench.naive` or `bench.ceiling` against fresh simulators holding `n` alerts."""
    async with simulators(procs, opts, alerts=n) as sims:
        sim_cpu_before = (await sims.stats())["cpu_seconds"]
        proc = await procs.spawn(
            sys.executable, "-m", module,
            "--panther", sims.urls["panther"], "--panther-token", PANTHER_TOKEN,
            "--bigpanda", sims.urls["bigpanda"], "--bigpanda-token", BIGPANDA_TOKEN,
            "--app-key", APP_KEY, "--since", str(sims.urls["oldest"] - 1), "--limit", str(n),
            *extra, stdout=asyncio.subprocess.PIPE,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 120 + n / 5)
        except TimeoutError:
            raise BenchError(f"{module}: did not finish") from None
        finally:
            await procs.stop(proc)
        if proc.returncode != 0:
            raise BenchError(f"{module} exited with {proc.returncode}")
        own = orjson.loads(out.splitlines()[-1])
        stats = await sims.stats()
    if stats["accepted_alerts"] < n:
        raise BenchError(f"{module}: only {stats['accepted_alerts']} of {n} alerts accepted")
    rate = catchup_rate(stats, n)
    return {
        **rate,
        "client_seconds": own["seconds"],
        "cpu_seconds_per_10k": own["cpu_seconds"] * 10_000 / n,
        "peak_rss_mb": own["peak_rss_mb"],
        "sims_cpu_share": (stats["cpu_seconds"] - sim_cpu_before) / max(rate["seconds"], 1e-9),
    }


def bridge_concurrency() -> tuple[int, int, int]:
    """(max_in_flight, batch_size, catch-up pagers): the bridge's defaults, which the ceiling
    must match. A head poll far behind pages in `panther.backfill_concurrency` slices."""
    from bridge.config import BigPandaSettings, PantherSettings

    fields = BigPandaSettings.model_fields
    pagers = PantherSettings.model_fields["backfill_concurrency"].default
    return fields["max_in_flight"].default, fields["batch_size"].default, pagers


async def scenario_catchup(procs: Processes, opts: Options, workdir: Path) -> dict[str, Any]:
    in_flight, batch, pagers = bridge_concurrency()
    common = ("--max-in-flight", str(in_flight), "--batch-size", str(batch))
    say(f"catch-up: bridge, {opts.alerts} alerts waiting")
    bridge = await catchup_bridge(procs, opts, workdir)
    say(f"catch-up: naive baseline, {opts.naive_alerts} alerts")
    naive = await catchup_client(procs, opts, "bench.naive", opts.naive_alerts)
    say(f"catch-up: ceiling ({pagers} concurrent pagers, as the bridge), {opts.alerts} alerts")
    ceiling = await catchup_client(
        procs, opts, "bench.ceiling", opts.alerts, "--slices", str(pagers), *common
    )
    result: dict[str, Any] = {
        "bridge": bridge,
        "naive": naive,
        "ceiling": ceiling,
        "bridge_over_naive": bridge["alerts_per_second"] / naive["alerts_per_second"],
        "bridge_over_ceiling": bridge["alerts_per_second"] / ceiling["alerts_per_second"],
        "bridge_peak_rss_mb": bridge["peak_rss_mb"],
        "bridge_cpu_seconds_per_10k": bridge["cpu_seconds_per_10k"],
        "max_in_flight": in_flight,
        "batch_size": batch,
        "pagers": pagers,
    }
    if opts.ceiling_slices != pagers:
        # Not a target: the transport with another number of pagers (default one sequential
        # pager, the ceiling before the bridge paged a catch-up concurrently).
        say(f"catch-up: ceiling with {opts.ceiling_slices} pager(s)")
        other = await catchup_client(
            procs, opts, "bench.ceiling", opts.alerts, "--slices", str(opts.ceiling_slices),
            *common,
        )
        result["ceiling_other"] = dict(other, slices=opts.ceiling_slices)
        result["ceiling_other_over_naive"] = (
            other["alerts_per_second"] / naive["alerts_per_second"]
        )
    return result


async def scenario_steady(procs: Processes, opts: Options, workdir: Path) -> dict[str, Any]:
    total = int(opts.steady_rate * opts.steady_seconds)
    say(f"steady: {opts.steady_rate:g} alerts/s for {opts.steady_seconds:g}s")
    async with (
        simulators(procs, opts) as sims,
        bridge_process(procs, sims, workdir, "steady") as run,
    ):
        await await_first_request(run, sims)
        cpu_start = cpu_seconds(run.pid)
        await sims.post("/produce", rate=opts.steady_rate, duration=opts.steady_seconds)
        await wait_caught_up("steady delivery", run, sims, total,
                             timeout=opts.steady_seconds + 60, every=0.25, produced=True)
        cpu = cpu_seconds(run.pid) - cpu_start
        latency = await sims.get("/latency")
        mem = run.sample()
        stats = await sims.stats()
    return {
        "alerts": total,
        "rate": opts.steady_rate,
        "seconds": opts.steady_seconds,
        "poll_interval": POLL_INTERVAL,
        "p50_seconds": latency["p50"],
        "p99_seconds": latency["p99"],
        "max_seconds": latency["max"],
        "bridge_cpu_share": cpu / opts.steady_seconds,
        "bridge_peak_rss_mb": mem["VmHWM"],
        "sweep_requests": stats["panther_sweep_requests"],
        "panther_requests": stats["panther_requests"],
        "sweep_request_share": stats["panther_sweep_requests"] / max(1, stats["panther_requests"]),
    }


# The default timing (poll 30s, overlap 2m, sweep 12 requests a minute) 30 times faster, so that
# a minute shows what half an hour would: the same pages per sweep and per poll, the same ratios.
LATE_TIMING = """\
  overlap: 4s
  sweep_requests_per_minute: 360
"""


async def scenario_late(procs: Processes, opts: Options, workdir: Path) -> dict[str, Any]:
    """Late-indexed alerts at normal volume (listable -> delivered), and what a small catch-up
    (137 alerts over 30 minutes) costs in list requests."""
    seconds = opts.steady_seconds
    total = int(opts.late_rate * seconds)
    say(f"late: {opts.late_rate:g} alerts/s for {seconds:g}s, "
        f"{opts.late_fraction:g} of them listable {opts.late_by:g}s late")
    async with (
        simulators(procs, opts) as sims,
        bridge_process(procs, sims, workdir, "late", panther_extra=LATE_TIMING) as run,
    ):
        await await_first_request(run, sims)
        await sims.post("/produce", rate=opts.late_rate, duration=seconds,
                        late_fraction=opts.late_fraction, late_by=opts.late_by)
        await wait_caught_up("late delivery", run, sims, total, timeout=seconds + 60,
                             every=0.25, produced=True)
        late = await sims.get("/latency?late=1")
    # At storm volume the sweep keeps to its share of requests, so late alerts wait longer than
    # at normal volume: shown, without a bound (the default timing, as in the steady scenario).
    storm_seconds = min(seconds, 30.0)
    storm_total = int(opts.steady_rate * storm_seconds)
    say(f"late: storm, {opts.steady_rate:g} alerts/s for {storm_seconds:g}s, "
        f"{opts.late_fraction:g} of them listable {opts.late_by:g}s late")
    async with (
        simulators(procs, opts) as sims,
        bridge_process(procs, sims, workdir, "late-storm") as run,
    ):
        await await_first_request(run, sims)
        await sims.post("/produce", rate=opts.steady_rate, duration=storm_seconds,
                        late_fraction=opts.late_fraction, late_by=opts.late_by)
        storm_stats = await wait_caught_up("storm delivery", run, sims, storm_total,
                                           timeout=storm_seconds + 600, every=0.25,
                                           produced=True)
        storm = await sims.get("/latency?late=1")
    small = 137
    say(f"late: catch-up of {small} alerts over 30 minutes")
    async with (
        simulators(procs, opts, alerts=small, spacing=1800 / small) as sims,
        bridge_process(procs, sims, workdir, "catchup-small") as run,
    ):
        stats = await wait_caught_up("small catch-up", run, sims, small, timeout=60, every=0.1)
    return {
        "alerts": total,
        "late_alerts": late["count"],
        "late_by": opts.late_by,
        "poll_interval": POLL_INTERVAL,
        "p50_seconds": late["p50"],
        "p99_seconds": late["p99"],
        "max_seconds": late["max"],
        "bound_seconds": 2 * POLL_INTERVAL + 1,
        "storm": {
            "alerts": storm_total,
            "rate": opts.steady_rate,
            "late_alerts": storm["count"],
            "p50_seconds": storm["p50"],
            "p99_seconds": storm["p99"],
            "max_seconds": storm["max"],
            "sweep_request_share": storm_stats["panther_sweep_requests"]
            / max(1, storm_stats["panther_requests"]),
        },
        # The first poll's listing (and the sweep right after) count too: what a start costs.
        "catchup_137_list_requests": stats["panther_list_requests"],
    }


async def metric_value(session: aiohttp.ClientSession, url: str, name: str) -> float:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.get(url) as resp:
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def scenario_outage(procs: Processes, opts: Options, workdir: Path) -> dict[str, Any]:
    n = opts.alerts
    say(f"outage: BigPanda down, {n} events queued in the outbox")
    async with (
        simulators(procs, opts, alerts=n, outage=3600) as sims,
        bridge_process(procs, sims, workdir, "outage", max_backoff="2s") as run,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        received = 'bridge_events_received_total{kind="alert"}'

        async def queued() -> bool:
            run.sample()
            return await metric_value(session, run.metrics_url, received) >= n

        await await_first_request(run, sims)
        intake_started = time.monotonic()
        await wait_until("outage intake", queued, 120 + n / 50, every=0.25, alive=run.proc)
        intake_seconds = time.monotonic() - intake_started
        # A few retry rounds against the outage with everything queued, then measure.
        for _ in range(12):
            run.sample()
            await asyncio.sleep(0.25)
        queued_mem = run.sample()
        await sims.post("/outage", seconds=0)
        ended = time.monotonic()

        async def drained() -> bool:
            run.sample()
            return (await sims.stats())["accepted_alerts"] >= n

        await wait_until("outage drain", drained, 120 + n / 50, every=0.2, alive=run.proc)
        drain_seconds = time.monotonic() - ended
        mem = run.sample()
        stats = await sims.stats()
    return {
        "events": n,
        # Reading the backlog while every delivery fails: retries compete with intake.
        "intake_alerts_per_second": n / intake_seconds,
        "peak_rss_queued_mb": queued_mem["VmHWM"],
        "bridge_peak_rss_mb": mem["VmHWM"],
        "drain_seconds_after_outage": drain_seconds,
        "bigpanda_errors": stats["bigpanda_errors"],
        "duplicates": stats["duplicates"],
    }


def scenario_normalizer(opts: Options) -> dict[str, Any]:
    """Alerts/s through `normalize` alone: validation + mapping + payload encoding, one core.

    Timed by this process's CPU clock (best of 5 rounds), not the wall clock: it runs right
    after the other scenarios, whose processes may still be ending on the same two cores, and
    the figure is about one core's work. The input set is frozen out of the collector's way,
    as a page of 50 alerts would be.
    """
    from bench.normalizer import best_round
    from bridge.normalize import MappingRules
    from bridge.sim.panther import PantherSimulator

    n = opts.normalizer_alerts
    say(f"normalizer: {n} simulator alerts")
    sim = PantherSimulator()
    # Through JSON and back, as the poller gets them off the wire; no catalog enrichment.
    alerts = orjson.loads(orjson.dumps(sim.generate(n, spacing=1.0)))
    rules = MappingRules(console_url="https://bench.runpanther.net")
    best, invalid = best_round([(raw, (None, [])) for raw in alerts], 5, rules)
    return {
        "source": "inline (bench/run.py)",
        "alerts": n,
        "invalid": invalid,
        "alerts_per_second": n / best,
        "microseconds_per_alert": best / n * 1e6,
    }


async def run_external(
    procs: Processes, opts: Options, module: str, *args: str
) -> dict[str, Any] | None:
    """Run another team's `bench/<module>.py` (if present) and keep what it printed.

    Its last line is taken as JSON when it parses; otherwise its output is kept as text and the
    first `<number> alerts/s` in it becomes `alerts_per_second`.
    """
    if importlib.util.find_spec(f"bench.{module}") is None:
        return None
    env_quick = ["--quick"] if opts.quick else []
    proc = await procs.spawn(
        sys.executable, "-m", f"bench.{module}", *env_quick, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60 if opts.quick else 600)
    except TimeoutError:
        await procs.stop(proc)
        return {"source": f"bench/{module}.py", "error": "timed out"}
    text = out.decode(errors="replace").strip()
    result: dict[str, Any] = {"source": f"bench/{module}.py", "exit_code": proc.returncode}
    last = text.splitlines()[-1] if text else ""
    try:
        parsed = orjson.loads(last)
        result["output"] = parsed
        if isinstance(parsed, dict):
            for key, value in parsed.items():
                if "per_s" in key and isinstance(value, int | float):
                    result.setdefault("alerts_per_second", value)
    except orjson.JSONDecodeError:
        result["output"] = text[-2000:]
        if match := re.search(r"([\d,]+(?:\.\d+)?)\s*alerts/s", text):
            result["alerts_per_second"] = float(match.group(1).replace(",", ""))
    return result


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# -- entry point -------------------------------------------------------------------------------


async def run_all(opts: Options) -> dict[str, Any]:
    results: dict[str, Any] = {}
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
            workdir = Path(tmp)
            if "catchup" in opts.only:
                results["catchup"] = await scenario_catchup(procs, opts, workdir)
            if "steady" in opts.only:
                results["steady"] = await scenario_steady(procs, opts, workdir)
            if "late" in opts.only:
                results["late"] = await scenario_late(procs, opts, workdir)
            if "outage" in opts.only:
                results["outage"] = await scenario_outage(procs, opts, workdir)
            if "normalizer" in opts.only:
                results["normalizer"] = scenario_normalizer(opts)
                external = await run_external(procs, opts, "normalizer")
                if external is not None:
                    results["normalizer_external"] = external
            if "backfill" in opts.only:
                external = await run_external(procs, opts, "backfill")
                if external is not None:
                    results["backfill"] = external
                # The same alerts after three hours of window without any: idle pagers must
                # take over the busy slices.
                external = await run_external(procs, opts, "backfill", "--lead", "10800")
                if external is not None:
                    results["backfill_bunched"] = external
            if "ha" in opts.only:  # PostgreSQL catch-up beside SQLite's, failover time
                external = await run_external(procs, opts, "ha")
                if external is not None:
                    results["ha"] = external
    finally:
        await procs.close()
    return results


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alerts", type=int, default=None,
                   help="alerts waiting for the catch-up and outage scenarios (default 20000)")
    p.add_argument("--naive-alerts", type=int, default=None, help="naive subset (default 500)")
    p.add_argument("--steady-seconds", type=float, default=None, help="default 60")
    p.add_argument("--steady-rate", type=float, default=None, help="alerts/s (default 50)")
    p.add_argument("--page-latency", type=float, default=0.05, help="Panther s per request")
    p.add_argument("--bigpanda-latency", type=float, default=0.02, help="BigPanda s per request")
    p.add_argument("--ceiling-slices", type=int, default=None,
                   help="pagers of the extra ceiling run (default 1: one sequential pager; "
                   "skipped when equal to the bridge's catch-up pagers)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: the smoke test's run")
    p.add_argument("--only", action="append", choices=SCENARIOS,
                   help="run only this scenario (repeatable)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, dest="json_path",
                   help=f"where to write the results (default {DEFAULT_JSON.relative_to(ROOT)})")
    p.add_argument("--profile", default=None, metavar="PATH",
                   help="attach py-spy to the catch-up bridge; collapsed stacks go to PATH")
    args = p.parse_args(argv)
    opts = Options(quick=args.quick, json_path=args.json_path, profile=args.profile,
                   page_latency=args.page_latency, bigpanda_latency=args.bigpanda_latency)
    if args.quick:
        opts.alerts, opts.naive_alerts, opts.steady_seconds = 300, 60, 2.5
        opts.normalizer_alerts = 300
    for name in ("alerts", "naive_alerts", "steady_seconds", "steady_rate", "ceiling_slices"):
        if getattr(args, name) is not None:
            setattr(opts, name, getattr(args, name))
    if args.only:
        opts.only = args.only
    elif args.quick:
        # The HA figures need two PostgreSQL catch-ups and five lease expiries: `--only ha`.
        opts.only = [name for name in SCENARIOS if name != "ha"]
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    started = time.monotonic()
    try:
        results = asyncio.run(run_all(opts))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    table = rows(results)
    doc = {
        "command": command.strip(),
        "machine": machine(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "wall_seconds": time.monotonic() - started,
        "results": results,
        "table": table,
        "targets_missed": [r["figure"] for r in table if r["met"] is False],
    }
    opts.json_path.parent.mkdir(parents=True, exist_ok=True)
    opts.json_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    m = doc["machine"]
    print(f"{m['cores']} cores, Python {m['python']}, {m['date']}; `{doc['command']}`")
    print(render_table(table))
    print(f"results written to {opts.json_path}")
    return 0
