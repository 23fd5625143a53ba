"""Run Panther Labs' own REST client (the `mcp-panther` package) against `bridge sim panther`.

    python tools/mcp_panther_check.py [--python /path/to/python3.12] [--venv DIR]

mcp-panther needs Python 3.12: this script creates a venv with it (cached in `.venv-mcp/` at the
top of the repository, or DIR), installs `mcp-panther==2.4.0` there once, starts the simulator on a
loopback port, then runs itself inside that venv and calls mcp-panther's tool functions, which use
its REST client, pointed at the simulator through the environment variables it reads
(`PANTHER_REST_API_URL`, `PANTHER_INSTANCE_URL`, `PANTHER_API_TOKEN`). One ✓/✗ line per call;
exit 0 when every call succeeded, 1 otherwise. Nothing leaves the machine but the package install.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

MCP_PANTHER = "mcp-panther==2.4.0"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PYTHONS = ("/root/.pyenv/versions/3.12.1/bin/python3", "python3.12")
SIM_TOKEN = "sim-panther-token"  # bridge.sim.panther.DEFAULT_TOKEN


def find_python(given: str | None) -> str:
    for candidate in (given,) if given else DEFAULT_PYTHONS:
        path = shutil.which(candidate) or (candidate if Path(candidate).exists() else None)
        if path:
            return path
    sys.exit("no Python 3.12 found: pass --python /path/to/python3.12 (mcp-panther needs 3.12)")


def ensure_venv(python: str, venv: Path) -> Path:
    inner = venv / "bin" / "python"
    if not inner.exists():
        print(f"creating {venv} with {python}", flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run(
        [str(inner), "-c", "import mcp_panther"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        print(f"installing {MCP_PANTHER} into {venv}", flush=True)
        subprocess.run([str(inner), "-m", "pip", "install", "-q", MCP_PANTHER], check=True)
    return inner


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sim", "panther", "--port", "0", "--alerts", "20"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        proc.terminate()
        sys.exit(f"the simulator did not start: {line!r}")
    return proc, match.group(1)


def outer(args: argparse.Namespace) -> int:
    inner = ensure_venv(find_python(args.python), Path(args.venv))
    sim, url = start_simulator()
    try:
        env = {
            **os.environ,
            "PANTHER_REST_API_URL": url,
            "PANTHER_INSTANCE_URL": url,
            "PANTHER_API_TOKEN": SIM_TOKEN,
        }
        return subprocess.run([str(inner), __file__, "--inner"], env=env, check=False).returncode
    finally:
        sim.terminate()
        sim.wait(10)


# --- inside the 3.12 venv -------------------------------------------------------------------------


def _ok(result: Any) -> tuple[bool, str]:
    """mcp-panther's tools answer `{"success": bool, ...}`; anything else is a failure."""
    if isinstance(result, dict) and result.get("success") is True:
        keys = [k for k in result if k != "success"]
        return True, ", ".join(keys[:4])
    text = json.dumps(result, default=str)
    return False, text[:300]


async def inner() -> int:
    import aiohttp
    from mcp_panther.panther_mcp_core import client as mcp_client
    from mcp_panther.panther_mcp_core.tools import alerts, detections, scheduled_queries

    # The tools take their REST session from the server's lifespan; open one the same way.
    mcp_client._rest_session = aiohttp.ClientSession()
    failures = 0
    try:
        listed = await alerts.list_alerts(
            start_date="2020-01-01T00:00:00Z",
            end_date="2100-01-01T00:00:00Z",
            severities=["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"],
            statuses=["OPEN", "TRIAGED", "RESOLVED", "CLOSED"],
            page_size=5,
            alert_type="ALERT",
        )
        found = listed.get("alerts") if isinstance(listed, dict) else None
        alert_id = found[0]["id"] if found else "missing"
        calls = [
            ("list_alerts", listed),
            ("get_alert", await alerts.get_alert(alert_id=alert_id)),
            ("get_alert_events", await alerts.get_alert_events(alert_id=alert_id, limit=10)),
            (
                "list_detections (severity HIGH)",
                await detections.list_detections(detection_types=["rules"], severity=["HIGH"]),
            ),
            ("list_scheduled_queries", await scheduled_queries.list_scheduled_queries()),
            (
                "update_alert_status",
                await alerts.update_alert_status(alert_ids=[alert_id], status="TRIAGED"),
            ),
            (
                "add_alert_comment",
                await alerts.add_alert_comment(alert_id=alert_id, comment="mcp-panther check"),
            ),
            ("list_alert_comments", await alerts.list_alert_comments(alert_id=alert_id)),
        ]
        for name, result in calls:
            ok, detail = _ok(result)
            failures += not ok
            print(f"{'✓' if ok else '✗'} {name}: {detail}", flush=True)
        rules = calls[3][1].get("rules", []) if isinstance(calls[3][1], dict) else []
        if any(r.get("severity") != "HIGH" for r in rules):
            failures += 1
            print("✗ list_detections (severity HIGH): returned rules of other severities")
    finally:
        await mcp_client._rest_session.close()
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=None, help="a Python 3.12 interpreter")
    parser.add_argument("--venv", default=str(ROOT / ".venv-mcp"), help="venv for mcp-panther")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        return asyncio.run(inner())
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
