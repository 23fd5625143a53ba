"""High availability figures: PostgreSQL catch-up beside SQLite's, and failover time.

    python -m bench.ha [--quick] [--alerts N] [--failovers N]

The PostgreSQL server is $BRIDGE_BENCH_POSTGRES_URL (or $BRIDGE_TEST_POSTGRES_URL); without one a
throwaway server is started from the pip-installed pgserver. Each run works in a database of its
own, dropped at the end. Catch-up: the same waiting alerts delivered by one bridge on SQLite, then
one on PostgreSQL, in this run (target: PostgreSQL at least 0.5x SQLite's rate). Failover: two
replicas with the default `state.lease_ttl`; the leader is SIGKILLed and the time until a standby
holds the lease at a new term is measured, `--failovers` times (median and max). The last line
printed is the JSON of the figures (bench/run.py keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.common import BenchError, Processes, free_port, print_result, wait_until
from bench.rig import (
    Options,
    bridge_config,
    bridge_process,
    catchup_rate,
    simulators,
    spawn_bridge,
    wait_caught_up,
)

TARGET_RATIO = 0.5


def say(text: str) -> None:
    print(f"[bench.ha] {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def postgres_database():
    """A throwaway database URL on the configured (or a pgserver) PostgreSQL."""
    import psycopg

    url = os.environ.get("BRIDGE_BENCH_POSTGRES_URL") or os.environ.get("BRIDGE_TEST_POSTGRES_URL")
    server = None
    tmp = None
    if not url:
        import pgserver

        tmp = tempfile.TemporaryDirectory(prefix="bench-pg-")
        server = pgserver.get_server(tmp.name, cleanup_mode="stop")
        url = server.get_uri()
    name = f"bench_ha_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(url)._replace(path="/" + name))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if server is not None:
            server.cleanup()
        if tmp is not None:
            tmp.cleanup()


async def catchup(procs: Processes, opts: Options, workdir: Path, name: str,
                  state: dict[str, str]) -> dict[str, float]:
    n = opts.alerts
    async with (
        simulators(procs, opts, alerts=n) as sims,
        bridge_process(procs, sims, workdir, name, state=state) as run,
    ):
        stats = await wait_caught_up(f"{name} catch-up", run, sims, n)
    return {**catchup_rate(stats, n), "duplicates": stats["duplicates"]}


async def failover(procs: Processes, opts: Options, workdir: Path, url: str,
                   times: int) -> dict[str, object]:
    from bridge.state.lease import Lease
    from bridge.state.postgres import PostgresStore

    namespace = "bench_failover"
    PostgresStore.open(url, namespace).close()
    lease = Lease(url, namespace, ttl=5.0, holder="bench")
    takeovers: list[float] = []
    async with simulators(procs, opts, alerts=200) as sims:
        log = workdir / "failover.log"
        started = 0

        async def replica() -> asyncio.subprocess.Process:
            nonlocal started
            started += 1  # a config each: each replica serves its metrics on a port of its own
            config = bridge_config(workdir, f"failover{started}", sims, port=free_port(),
                                   state={"url": url, "namespace": namespace})
            return await spawn_bridge(procs, config, log, append=True)

        group = [await replica() for _ in range(2)]

        def leader() -> tuple[int | None, int]:
            info = lease.info()
            pid = int(info.holder.split(":")[-2]) if info.holder and info.valid else None
            return pid, info.term

        try:
            for _ in range(times):
                async def led():
                    return leader()[0] in {p.pid for p in group if p.returncode is None}

                await wait_until("a leader", led, 60, every=0.05)
                pid, term = leader()
                await asyncio.sleep(1.0)  # a standby is up and trying
                victim = next(p for p in group if p.pid == pid)
                killed = time.monotonic()
                victim.send_signal(signal.SIGKILL)
                await victim.wait()

                async def taken(t=term):
                    pid_now, term_now = leader()
                    return pid_now is not None and term_now > t

                await wait_until("takeover", taken, 60, every=0.02)
                takeovers.append(time.monotonic() - killed)
                say(f"failover {len(takeovers)}: {takeovers[-1]:.2f}s")
                group.remove(victim)
                group.append(await replica())
        finally:
            for p in group:
                await procs.stop(p)
            lease.close()
    return {
        "lease_ttl_seconds": 5.0,
        "failovers": len(takeovers),
        "takeover_seconds": [round(t, 3) for t in takeovers],
        "median_seconds": statistics.median(takeovers),
        "max_seconds": max(takeovers),
    }


async def run(opts: Options, failovers: int) -> dict[str, object]:
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ha-") as tmp, postgres_database() as url:
            workdir = Path(tmp)
            say(f"catch-up on SQLite, {opts.alerts} alerts")
            sqlite = await catchup(procs, opts, workdir, "sqlite",
                                   {"path": str(workdir / "sqlite.db")})
            say(f"catch-up on PostgreSQL, {opts.alerts} alerts")
            pg = await catchup(procs, opts, workdir, "postgresql",
                               {"url": url, "namespace": "bench_catchup"})
            say(f"failover x{failovers}, default lease_ttl")
            fo = await failover(procs, opts, workdir, url, failovers)
    finally:
        await procs.close()
    ratio = pg["alerts_per_second"] / sqlite["alerts_per_second"]
    return {
        "catchup_sqlite": sqlite,
        "catchup_postgresql": pg,
        "postgresql_over_sqlite": ratio,
        "postgresql_over_sqlite_target": TARGET_RATIO,
        "postgresql_over_sqlite_met": ratio >= TARGET_RATIO,
        "failover": fo,
        "postgresql_alerts_per_s": pg["alerts_per_second"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ha", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes")
    p.add_argument("--alerts", type=int, default=None, help="catch-up alerts (default 20000)")
    p.add_argument("--failovers", type=int, default=5)
    args = p.parse_args(argv)
    opts = Options()
    opts.alerts = args.alerts or (2000 if args.quick else 20_000)
    try:
        results = asyncio.run(run(opts, args.failovers))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    fo = results["failover"]
    return print_result(
        f"catch-up: SQLite {results['catchup_sqlite']['alerts_per_second']:.0f} alerts/s,"
        f" PostgreSQL {results['catchup_postgresql']['alerts_per_second']:.0f} alerts/s"
        f" ({results['postgresql_over_sqlite']:.2f}x, target >= {TARGET_RATIO}x);"
        f" failover with lease_ttl 5s: median {fo['median_seconds']:.2f}s,"
        f" max {fo['max_seconds']:.2f}s over {fo['failovers']}",
        results,
    )


if __name__ == "__main__":
    sys.exit(main())
