"""What the naive baseline and the ceiling share: the command line and a minimal payload.

Both run as their own process against `bench.sims`, like the bridge, and print one JSON line
with what they did and their own CPU and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import Any

import orjson


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--panther", required=True, help="Panther API base URL")
    p.add_argument("--panther-token", required=True)
    p.add_argument("--bigpanda", required=True, help="BigPanda API base URL")
    p.add_argument("--bigpanda-token", required=True)
    p.add_argument("--app-key", required=True)
    p.add_argument("--since", type=float, required=True, help="epoch s: list alerts from here")
    p.add_argument("--limit", type=int, default=0, help="stop after this many alerts (0: all)")
    return p


def minimal_alert(raw: dict[str, Any]) -> dict[str, Any]:
    """The least a BigPanda alert needs to be accepted as distinct: status, host, an identity."""
    alert_id = raw["id"]
    return {
        "status": "critical" if raw.get("severity") in ("CRITICAL", "HIGH") else "warning",
        "host": (raw.get("detection") or {}).get("id") or "panther",
        "check": raw.get("title") or alert_id,
        "incident_identifier": f"panther-{alert_id}",
        "panther_alert_id": alert_id,
    }


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1e6):06d}Z"


def report(**figures: Any) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")
    sys.stdout.flush()
