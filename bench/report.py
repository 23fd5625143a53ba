"""The report of `python -m bench`: which figures it shows, in what order and format, and the
targets they are held to (bench/RESULTS.md keeps the latest table).

The figures come from the scenarios' results (`bench.run`), looked up by dotted key; a figure
with a target is `met` or not, one without is shown for context.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import platform
from typing import Any

from bench.common import POLL_INTERVAL

# The targets: figure key -> (comparison, bound).
TARGETS: dict[str, tuple[str, float]] = {
    "catchup.bridge_over_naive": (">=", 50.0),
    "catchup.bridge_over_ceiling": (">=", 0.5),
    "steady.p99_seconds": ("<=", POLL_INTERVAL + 0.5),
    "catchup.bridge_peak_rss_mb": ("<=", 120.0),
    "outage.bridge_peak_rss_mb": ("<=", 120.0),
    "catchup.bridge_cpu_seconds_per_10k": ("<=", 1.0),
    "normalizer.alerts_per_second": (">=", 20_000.0),
    # Late-visible alerts: delivered within 2 x poll_interval + 1 s of becoming listable; the
    # sweep within the default panther.sweep_share; a catch-up's requests follow its alerts.
    "late.p99_seconds": ("<=", 2 * POLL_INTERVAL + 1.0),
    "late.max_seconds": ("<=", 2 * POLL_INTERVAL + 1.0),
    "steady.sweep_request_share": ("<=", 0.25),
    "late.catchup_137_list_requests": ("<=", 21.0),
    "late.storm.sweep_request_share": ("<=", 0.25),
    # High availability: PostgreSQL keeps at least half SQLite's catch-up rate.
    "ha.output.postgresql_over_sqlite": (">=", 0.5),
}


def lookup(results: dict[str, Any], key: str) -> Any:
    node: Any = results
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# The table, in its order: (figure, results key, format). `{pagers}` and `{other}` in a figure
# stand for the pagers of the two ceiling runs.
FIGURES: list[tuple[str, str, str]] = [
    ("catch-up: bridge (alerts/s)", "catchup.bridge.alerts_per_second", "{:,.0f}"),
    ("catch-up: bridge (s for all)", "catchup.bridge.seconds", "{:.1f}"),
    ("catch-up: naive (alerts/s)", "catchup.naive.alerts_per_second", "{:,.1f}"),
    ("catch-up: ceiling, {pagers} pagers as the bridge (alerts/s)",
     "catchup.ceiling.alerts_per_second", "{:,.0f}"),
    ("catch-up: ceiling, {other} pager(s) (alerts/s)",
     "catchup.ceiling_other.alerts_per_second", "{:,.0f}"),
    ("ratio bridge / naive", "catchup.bridge_over_naive", "{:.1f}x"),
    ("ratio bridge / ceiling", "catchup.bridge_over_ceiling", "{:.2f}x"),
    ("ratio ceiling with {other} pager(s) / naive", "catchup.ceiling_other_over_naive",
     "{:.1f}x"),
    ("steady: p50 latency (s)", "steady.p50_seconds", "{:.2f}"),
    ("steady: p99 latency (s)", "steady.p99_seconds", "{:.2f}"),
    ("steady: max latency (s)", "steady.max_seconds", "{:.2f}"),
    ("steady: sweep share of Panther requests (at most panther.sweep_share)",
     "steady.sweep_request_share", "{:.0%}"),
    ("late alerts: p99 listable -> delivered (s; bound 2 x poll + 1)",
     "late.p99_seconds", "{:.2f}"),
    ("late alerts: max listable -> delivered (s)", "late.max_seconds", "{:.2f}"),
    ("late alerts at 50/s: p99 listable -> delivered (s; no bound)", "late.storm.p99_seconds",
     "{:.2f}"),
    ("late alerts at 50/s: max (s)", "late.storm.max_seconds", "{:.2f}"),
    ("late alerts at 50/s: sweep share of Panther requests", "late.storm.sweep_request_share",
     "{:.0%}"),
    ("list requests, catch-up of 137 alerts / 30 min (bound 21)",
     "late.catchup_137_list_requests", "{:,.0f}"),
    ("list requests, catch-up of the catch-up scenario's alerts",
     "catchup.bridge.list_requests", "{:,.0f}"),
    ("peak RSS, catch-up (MB)", "catchup.bridge_peak_rss_mb", "{:.1f}"),
    ("peak RSS, outage queue (MB)", "outage.bridge_peak_rss_mb", "{:.1f}"),
    ("outage: intake while BigPanda is down (alerts/s)",
     "outage.intake_alerts_per_second", "{:,.0f}"),
    ("outage: drain after recovery (s)", "outage.drain_seconds_after_outage", "{:.1f}"),
    ("CPU-s per 10k alerts (catch-up)", "catchup.bridge_cpu_seconds_per_10k", "{:.2f}"),
    ("CPU-s per 10k, incl. startup",
     "catchup.bridge.cpu_seconds_per_10k_with_startup", "{:.2f}"),
    ("CPU-s per 10k, ceiling client", "catchup.ceiling.cpu_seconds_per_10k", "{:.2f}"),
    ("normalizer (alerts/s)", "normalizer.alerts_per_second", "{:,.0f}"),
    ("normalizer, bench/normalizer.py (alerts/s)",
     "normalizer_external.alerts_per_second", "{:,.0f}"),
    ("backfill, bench/backfill.py (alerts/s)", "backfill.alerts_per_second", "{:,.0f}"),
    ("backfill: 8 slices / 1 pager", "backfill.output.speedup", "{:.1f}x"),
    ("backfill, alerts in the window's last quarter (alerts/s)",
     "backfill_bunched.alerts_per_second", "{:,.0f}"),
    ("backfill, last quarter: 8 slices / 1 pager", "backfill_bunched.output.speedup", "{:.1f}x"),
    ("HA: catch-up on SQLite, bench/ha.py (alerts/s)",
     "ha.output.catchup_sqlite.alerts_per_second", "{:,.0f}"),
    ("HA: catch-up on PostgreSQL (alerts/s)",
     "ha.output.catchup_postgresql.alerts_per_second", "{:,.0f}"),
    ("HA: ratio PostgreSQL / SQLite", "ha.output.postgresql_over_sqlite", "{:.2f}x"),
    ("HA: failover, leader SIGKILLed -> standby leads (median s)",
     "ha.output.failover.median_seconds", "{:.2f}"),
    ("HA: failover (max s)", "ha.output.failover.max_seconds", "{:.2f}"),
]


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The table: every figure with its target (if any) and whether it was met."""

    def row(label: str, key: str, fmt: str) -> dict[str, Any]:
        value = lookup(results, key)
        target = TARGETS.get(key)
        met = None
        if target is not None and value is not None:
            op, bound = target
            met = value >= bound if op == ">=" else value <= bound
        return {
            "figure": label,
            "key": key,
            "value": value,
            "shown": "-" if value is None else fmt.format(value),
            "target": f"{target[0]} {target[1]:g}" if target else "",
            "met": met,
        }

    pagers = lookup(results, "catchup.pagers") or "same"
    other = lookup(results, "catchup.ceiling_other.slices") or "other"
    return [row(label.format(pagers=pagers, other=other), key, fmt)
            for label, key, fmt in FIGURES]


def render_table(table: list[dict[str, Any]]) -> str:
    shown = [r for r in table if r["value"] is not None]
    width = max((len(r["figure"]) for r in shown), default=10)
    tw = max((len(r["target"]) for r in shown), default=6)
    lines = [f"| {'figure':<{width}} | {'value':>10} | {'target':<{tw}} | met? |",
             f"|{'-' * (width + 2)}|{'-' * 12}|{'-' * (tw + 2)}|------|"]
    for r in shown:
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(
            f"| {r['figure']:<{width}} | {r['shown']:>10} | {r['target']:<{tw}} | {met:<4} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "uvloop": importlib.util.find_spec("uvloop") is not None,
    }
