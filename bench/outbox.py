"""The state file's cost per alert, alone and after a long history: `python -m bench.outbox`.

A catch-up's outbox work without the network: simulator alerts, normalized once up front, are
recorded 400 at a time with their tracked rows (as the catch-up's 8-page commits do), then read
back and marked sent in batches of 100 (as the dispatcher does), with a WAL checkpoint every
4,000. Measured over the last `--alerts` alerts after `--history` alerts were recorded and
delivered before them, because the state keeps every dedup key forever: what one more alert costs
must not grow much with the history. Reported: CPU microseconds per alert (best of `--rounds`)
and KiB written per alert (the process's write() bytes: WAL frames and checkpoint copies), the
second being nearly deterministic.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import print_result
from bridge.intake import alert_key
from bridge.intake import tracked_form as _tracked_form
from bridge.mapping import MappingRules
from bridge.normalize import EVENT_ALERT, normalize
from bridge.panther.models import Alert
from bridge.sim.panther import PantherSimulator
from bridge.state.records import NewEvent, TrackedAlert
from bridge.state.sqlite import Outbox

GROUP = 400  # alerts per intake transaction: 8 pages of 50
BATCH = 100  # events per delivered batch


def written_bytes() -> int:
    """Bytes this process handed to write() so far (/proc/self/io `wchar`)."""
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def sample_events(n: int) -> list[tuple[NewEvent, TrackedAlert]]:
    """`n` distinct (event, tracked row) pairs built from simulator alerts."""
    sim = PantherSimulator(seed=11)
    raw_alerts = orjson.loads(orjson.dumps(sim.generate(min(n, 5_000), spacing=1.0)))
    rules = MappingRules(console_url="https://bench.runpanther.net")
    base: list[tuple[NewEvent, TrackedAlert]] = []
    for raw in raw_alerts:
        alert = Alert.model_validate(raw)
        out = normalize(alert, kind=EVENT_ALERT, observed_at=int(time.time()), rules=rules)
        if not isinstance(out, dict) or alert.created_at is None:
            continue
        created = alert.created_at.timestamp()
        event = NewEvent(alert_key(alert.id), alert.id, EVENT_ALERT, out["status"], "bench",
                         orjson.dumps(out), created)
        base.append((event, TrackedAlert(alert.id, created, alert.status, 0, _tracked_form(raw))))
    pairs = []
    start = time.time() - n
    for i in range(n):
        # As Panther's: ids random hex, each alert created after the one before.
        event, tracked = base[i % len(base)]
        alert_id = hashlib.md5(str(i).encode()).hexdigest()
        created = start + i
        pairs.append((
            event._replace(dedup_key=alert_key(alert_id), alert_id=alert_id, event_time=created),
            tracked._replace(alert_id=alert_id, created_at=created),
        ))
    return pairs


def cycle(outbox: Outbox, pairs: list[tuple[NewEvent, TrackedAlert]]) -> None:
    """Record in intake transactions, deliver in batches, checkpoint now and then."""
    for start in range(0, len(pairs), GROUP):
        group = pairs[start : start + GROUP]
        outbox.record([e for e, _ in group], track=[t for _, t in group])
        while batch := outbox.due(BATCH, now=time.time()):
            outbox.mark_sent([e.id for e in batch])
        if start % (10 * GROUP) == 0:
            outbox.checkpoint()


def measure(history: int, alerts: int, rounds: int) -> dict[str, Any]:
    pairs = sample_events(history + alerts)
    best_cpu = float("inf")
    written = 0
    for _ in range(rounds):
        workdir = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
        outbox = Outbox.open(workdir / "state.db")
        try:
            cycle(outbox, pairs[:history])
            gc.collect()
            cpu, wrote = time.process_time(), written_bytes()
            cycle(outbox, pairs[history:])
            cpu, wrote = time.process_time() - cpu, written_bytes() - wrote
        finally:
            outbox.close()
            shutil.rmtree(workdir, ignore_errors=True)
        if cpu < best_cpu:
            best_cpu, written = cpu, wrote
    return {
        "history": history,
        "alerts": alerts,
        "cpu_us_per_alert": round(best_cpu / alerts * 1e6, 1),
        "kib_written_per_alert": round(written / alerts / 1024, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__)
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts measured")
    parser.add_argument("--history", type=int, action="append",
                        help="alerts recorded and delivered before (repeatable; default 0 and"
                             " 100000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best CPU is kept")
    parser.add_argument("--quick", action="store_true", help="1,000 alerts, history 0 and 2,000")
    args = parser.parse_args(argv)
    histories = args.history or [0, 100_000]
    alerts, rounds = args.alerts, args.rounds
    if args.quick:
        histories, alerts, rounds = [0, 2_000], 1_000, 1
    results = [measure(h, alerts, rounds) for h in histories]
    summary = "\n".join(
        f"outbox: history {r['history']:>7,}: {r['cpu_us_per_alert']:6.1f} us CPU and"
        f" {r['kib_written_per_alert']:5.2f} KiB written per alert (last {alerts:,})"
        for r in results
    )
    return print_result(summary, {"results": results, "python": sys.version.split()[0]})


if __name__ == "__main__":
    raise SystemExit(main())
