"""Instructions per alert of a catch-up, counted by valgrind: `python -m bench.instructions`.

CPU seconds on this shared 2-core machine vary by +-20 % from one run to the next, which hides
any change smaller than that. Instructions executed do not: the bridge catches up on a small and
a large backlog (the same scenario as the catch-up benchmark: simulators, 8 pagers, batches)
under `valgrind --tool=cachegrind`, and the difference of the two totals divided by the
difference of the sizes is what one more alert costs, without the interpreter start, imports and
shutdown. Two runs of the same commit agree to within ~1 %, so an A/B of two commits can be read
off one run each. It is slower than the bridge by ~10x (a minute or two) and needs valgrind
(Debian: `apt-get install valgrind`); the bench's other figures do not.

Instructions are not time: a cache miss or a system call costs more than its instruction count
says. They rank changes to the Python and SQLite work reliably, which is what they are for here.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import BenchError, Processes, print_result
from bench.rig import Options
from bench.run import catchup_bridge

VALGRIND = (
    "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
)
_I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def instructions_in(log: str) -> int:
    """The `I refs` total cachegrind prints as the process exits (the last one in the log)."""
    found = _I_REFS.findall(log)
    if not found:
        raise BenchError("no instruction count in the bridge log: did valgrind run to the end?")
    return int(found[-1].replace(",", ""))


async def count(alerts: int, opts: Options) -> int:
    """Instructions the bridge process executes to start, catch up on `alerts`, and stop."""
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="bench-instr-"))
    try:
        opts = Options(
            alerts=alerts, page_latency=opts.page_latency,
            bigpanda_latency=opts.bigpanda_latency, bridge_wrapper=VALGRIND,
        )
        await catchup_bridge(procs, opts, workdir)
    finally:
        await procs.close()
    try:
        return instructions_in((workdir / "catchup.log").read_text(errors="replace"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def measure(small: int, large: int, opts: Options) -> dict[str, Any]:
    low = await count(small, opts)
    high = await count(large, opts)
    per_alert = (high - low) / (large - small)
    return {
        "small": small,
        "large": large,
        "instructions_small": low,
        "instructions_large": high,
        "instructions_per_alert": round(per_alert),
        "instructions_fixed": round(low - per_alert * small),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--small", type=int, default=1_000, help="alerts of the small run")
    parser.add_argument("--large", type=int, default=5_000, help="alerts of the large run")
    args = parser.parse_args(argv)
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    if shutil.which("valgrind") is None:
        print("bench.instructions needs valgrind on PATH (Debian: apt-get install valgrind)",
              file=sys.stderr)
        return 2
    result = asyncio.run(measure(args.small, args.large, Options()))
    return print_result(
        f"catch-up under valgrind: {result['instructions_per_alert']:,} instructions per alert"
        f" (runs of {args.small:,} and {args.large:,} alerts; fixed part"
        f" {result['instructions_fixed'] / 1e9:.2f} G: start, imports, stop)",
        result,
    )


if __name__ == "__main__":
    raise SystemExit(main())
