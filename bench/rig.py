"""The bench's rig: what a run is asked to do (`Options`), the simulators in a helper process
(`bench.sims`) and the bridge under test in a process of its own, and the waits on them. Shared
by the scenarios of `bench.run` and by `bench.ha`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.common import (
    POLL_INTERVAL,
    BenchError,
    Processes,
    cpu_seconds,
    free_port,
    memory_mb,
    wait_until,
)
from bench.sims import APP_KEY, BIGPANDA_TOKEN, PANTHER_TOKEN

DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"
SCENARIOS = ("catchup", "steady", "late", "outage", "normalizer", "backfill", "ha")


CONFIG_TEMPLATE = """\
panther:
  api_url: {panther}
  api_token: {panther_token}
  poll_interval: {poll_interval}
  initial_lookback: {lookback}
{panther_extra}bigpanda:
  api_url: {bigpanda}
  api_token: {bigpanda_token}
  app_key: {app_key}
state:
{state}server:
  host: 127.0.0.1
  port: {port}
  shutdown_grace: 3s
retry:
  initial_backoff: 1s
  max_backoff: {max_backoff}
logging:
  level: info
  format: json
"""


@dataclass
class Options:
    alerts: int = 20_000
    naive_alerts: int = 500
    steady_seconds: float = 60.0
    steady_rate: float = 50.0
    late_rate: float = 5.0  # normal volume: the overlap holds a few pages
    late_fraction: float = 0.3
    late_by: float = 3.0
    page_latency: float = 0.05
    bigpanda_latency: float = 0.02
    ceiling_slices: int = 1  # pagers of the extra (no target) ceiling run; 1: one sequential
    normalizer_alerts: int = 5_000
    quick: bool = False
    only: list[str] = field(default_factory=lambda: list(SCENARIOS))
    json_path: Path = DEFAULT_JSON
    profile: str | None = None  # py-spy output path for the catch-up bridge, if any
    # Argv prefix for the bridge process (bench.instructions runs it under valgrind).
    bridge_wrapper: tuple[str, ...] = ()


# -- the simulators ----------------------------------------------------------------------------


class SimsHandle:
    def __init__(self, proc: asyncio.subprocess.Process, urls: dict[str, str]) -> None:
        self.proc = proc
        self.urls = urls
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def get(self, path: str) -> dict[str, Any]:
        async with self.session.get(self.urls["control"] + path) as resp:
            resp.raise_for_status()
            return orjson.loads(await resp.read())

    async def post(self, path: str, **params: Any) -> None:
        query = {k: str(v) for k, v in params.items()}
        async with self.session.post(self.urls["control"] + path, params=query) as resp:
            resp.raise_for_status()

    async def stats(self) -> dict[str, Any]:
        return await self.get("/stats")


@contextlib.asynccontextmanager
async def simulators(
    procs: Processes, opts: Options, *, alerts: int = 0, outage: float = 0.0,
    spacing: float | None = None,
):
    # Spread the waiting alerts over the last ~half hour (inside the bridge's initial lookback).
    if spacing is None:
        spacing = min(0.1, 1800 / max(alerts, 1))
    proc = await procs.spawn(
        sys.executable, "-m", "bench.sims", "--alerts", str(alerts), "--spacing", str(spacing),
        "--page-latency", str(opts.page_latency),
        "--bigpanda-latency", str(opts.bigpanda_latency), "--outage", str(outage),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60 + alerts / 5000)
        if not line:
            raise BenchError(f"bench.sims exited ({await proc.wait()}) before it was ready")
        handle = SimsHandle(proc, orjson.loads(line))
        try:
            yield handle
        finally:
            await handle.session.close()
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the helper exits when its stdin closes
        await procs.stop(proc)


# -- the bridge --------------------------------------------------------------------------------


@dataclass
class BridgeRun:
    proc: asyncio.subprocess.Process
    log_path: Path
    metrics_url: str
    pid: int = 0
    cpu_at_first_request: float | None = None
    max_rss_mb: float = 0.0

    def __post_init__(self) -> None:
        self.pid = self.pid or self.proc.pid

    def sample(self) -> dict[str, float]:
        mem = memory_mb(self.pid)
        self.max_rss_mb = max(self.max_rss_mb, mem.get("VmRSS", 0.0))
        return mem

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def bridge_config(
    workdir: Path, name: str, sims: SimsHandle, *, port: int, state: dict[str, str],
    max_backoff: str = "5m", panther_extra: str = "",
) -> Path:
    """Write `name`.yaml: a bridge config pointing at `sims`, serving metrics on `port`."""
    config = workdir / f"{name}.yaml"
    config.write_text(CONFIG_TEMPLATE.format(
        panther=sims.urls["panther"], panther_token=PANTHER_TOKEN,
        bigpanda=sims.urls["bigpanda"], bigpanda_token=BIGPANDA_TOKEN, app_key=APP_KEY,
        state="".join(f"  {key}: {value}\n" for key, value in state.items()), port=port,
        poll_interval=f"{POLL_INTERVAL:g}s", lookback="2h", max_backoff=max_backoff,
        panther_extra=panther_extra,
    ))
    return config


async def spawn_bridge(
    procs: Processes, config: Path, log: Path, *, wrapper: tuple[str, ...] = (),
    append: bool = False,
) -> asyncio.subprocess.Process:
    """`python -m bridge run --config F` (under `wrapper`, if any), its output into `log`."""
    argv = [*wrapper, sys.executable, "-m", "bridge", "run", "--config", str(config)]
    with log.open("ab" if append else "wb") as out:
        return await procs.spawn(*argv, stdout=out, stderr=out)


@contextlib.asynccontextmanager
async def bridge_process(
    procs: Processes,
    sims: SimsHandle,
    workdir: Path,
    name: str,
    *,
    max_backoff: str = "5m",
    wrapper: tuple[str, ...] = (),
    panther_extra: str = "",
    state: dict[str, str] | None = None,
):
    """A bridge against `sims`, its config and log `name`.yaml/.log in `workdir`; stopped on exit.

    `state` is the config's state section (default: a SQLite file `name`.db in `workdir`). A
    BenchError raised inside carries the last lines of the bridge's log.
    """
    port = free_port()
    config = bridge_config(
        workdir, name, sims, port=port, state=state or {"path": str(workdir / f"{name}.db")},
        max_backoff=max_backoff, panther_extra=panther_extra,
    )
    log_path = workdir / f"{name}.log"
    proc = await spawn_bridge(procs, config, log_path, wrapper=wrapper)
    run = BridgeRun(proc, log_path, f"http://127.0.0.1:{port}/metrics")
    try:
        yield run
    except BenchError as exc:
        raise BenchError(f"{exc}\n--- {log_path.name} (last lines) ---\n{run.log_tail()}") from None
    finally:
        await procs.stop(proc)


async def start_profiler(procs: Processes, pid: int, out: str) -> asyncio.subprocess.Process:
    """py-spy attached to the bridge (raw collapsed stacks in `out`); it adds its own CPU load,
    so figures of a profiled run are not for the table."""
    spy = Path(sys.executable).parent / "py-spy"
    proc = await procs.spawn(
        str(spy) if spy.exists() else "py-spy", "record", "--pid", str(pid), "--rate", "100",
        "--format", "raw", "--output", out, "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.5)
    return proc


async def stop_profiler(procs: Processes, proc: asyncio.subprocess.Process) -> None:
    """SIGINT makes py-spy write its output, as Ctrl-C does."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 30)
    await procs.stop(proc)


async def await_first_request(run: BridgeRun, sims: SimsHandle) -> None:
    """Wait for the bridge's first Panther request; note its CPU then (the startup cost)."""

    async def started() -> bool:
        if (await sims.stats())["first_panther_at"] is None:
            return False
        run.cpu_at_first_request = cpu_seconds(run.pid)
        return True

    await wait_until("bridge first request", started, 60, every=0.05, alive=run.proc)


async def wait_caught_up(
    what: str, run: BridgeRun, sims: SimsHandle, n: int, *, timeout: float | None = None,
    every: float = 0.2, produced: bool = False,
) -> dict[str, Any]:
    """The simulators' stats once BigPanda has accepted `n` alerts (with `produced`: once the
    Panther simulator has also made all `n`, for alerts produced at a rate); the bridge's memory
    is sampled meanwhile. Default timeout: 2 minutes plus 50 alerts a second."""

    async def delivered() -> dict[str, Any] | None:
        run.sample()
        stats = await sims.stats()
        made = not produced or stats["produced"] >= n
        return stats if made and stats["accepted_alerts"] >= n else None

    timeout = 120 + n / 50 if timeout is None else timeout
    return await wait_until(what, delivered, timeout, every=every, alive=run.proc)


def catchup_rate(stats: dict[str, Any], n: int) -> dict[str, Any]:
    """A catch-up's figures as the simulators saw it: first Panther request -> last alert
    accepted by BigPanda, the same way for every client."""
    seconds = stats["last_accepted_at"] - stats["first_panther_at"]
    return {"alerts": n, "seconds": seconds, "alerts_per_second": n / seconds}
