"""What every bench script needs: child processes, ports, a process's CPU and RSS, the JSON line.

The runner (`bench/run.py`) and the scripts it runs as processes of their own (`bench/ha.py`,
`bench/backfill.py`, ...) start children the same way, wait for things the same way and end by
printing their figures as one JSON line, which is what the runner keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
POLL_INTERVAL = 1.0  # the bridge's panther.poll_interval in every scenario: targets follow it
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A scenario could not complete (timeout, a process died): the benchmark fails loudly."""


# -- processes ---------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Children get SIGTERM if the runner dies, so no simulator or bridge outlives a crash."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    """Every child the runner started; `close()` ends those still running, each by its pid."""

    def __init__(self) -> None:
        self.children: list[asyncio.subprocess.Process] = []

    async def spawn(self, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, env=env, preexec_fn=_die_with_parent, **kwargs
        )
        self.children.append(proc)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process, grace: float = 15.0) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        with contextlib.suppress(ValueError):
            self.children.remove(proc)

    async def close(self) -> None:
        for proc in list(self.children):
            await self.stop(proc, grace=5.0)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/<pid>/stat (fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a live process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until(
    what: str, check: Callable[[], Any], timeout: float, *, every: float = 0.1,
    alive: asyncio.subprocess.Process | None = None,
) -> Any:
    """Call async `check` until it returns something truthy; BenchError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if alive is not None and alive.returncode is not None:
            raise BenchError(f"{what}: the process under test exited with {alive.returncode}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not reached within {timeout:.0f}s")
        await asyncio.sleep(every)


# -- output ------------------------------------------------------------------------------------


def print_json(figures: Any) -> None:
    """The figures as one JSON line on stdout: the last line, the one `bench/run.py` keeps."""
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")
    sys.stdout.flush()


def print_result(summary: str, figures: Any) -> int:
    """A script's ending: its one-line summary for people, then its figures as JSON; exit 0."""
    print(summary, flush=True)
    print_json(figures)
    return 0
