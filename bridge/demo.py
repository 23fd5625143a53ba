"""`bridge demo`: the whole flow on loopback, no credentials needed.

Starts the Panther and BigPanda simulators on ephemeral 127.0.0.1 ports, writes a real config file
for them in a temporary directory, runs the real bridge service against them, and reports what
flowed. It exits 0 only when every generated alert arrived in BigPanda.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bridge import logs
from bridge.config import load_config
from bridge.service import Bridge
from bridge.sim import serve_app
from bridge.sim.bigpanda import BigPandaSimulator
from bridge.sim.panther import PantherSimulator

PANTHER_TOKEN = "demo-panther-token"
BIGPANDA_TOKEN = "demo-bigpanda-token"
APP_KEY = "demo-app-key"
LATE_BY = 3.0  # seconds a late alert's listing trails its createdAt

CONFIG_TEMPLATE = """\
panther:
  api_url: {panther_url}
  api_token: ${{DEMO_PANTHER_TOKEN}}
  console_url: https://demo.runpanther.net
  poll_interval: 1s
  status_sync_interval: 1s
  initial_lookback: 1h
bigpanda:
  api_url: {bigpanda_url}
  api_token: ${{DEMO_BIGPANDA_TOKEN}}
  app_key: {app_key}
  job_poll_interval: 1s
state:
  path: {state_path}
server:
  host: 127.0.0.1
  port: 0
logging:
  level: warning
sync_back:
  enabled: true
  api_key: {user_api_key}
  environment_id: {environment_id}
  interval: 1s
"""


async def run_demo(*, alerts: int = 25, timeout: float = 60.0, out=print) -> int:
    """Run the demo; returns the process exit code."""
    logs.configure("warning", "console")
    panther = PantherSimulator(token=PANTHER_TOKEN)
    bigpanda = BigPandaSimulator(token=BIGPANDA_TOKEN, app_keys=[APP_KEY])
    generated = panther.generate(alerts, start=None, spacing=2.0)
    expected = {a["id"] for a in generated}

    with tempfile.TemporaryDirectory(prefix="bridge-demo-") as tmp:
        async with serve_app(panther.app) as panther_url, serve_app(bigpanda.app) as bigpanda_url:
            config_path = Path(tmp) / "bridge.yaml"
            config_path.write_text(
                CONFIG_TEMPLATE.format(
                    panther_url=panther_url,
                    bigpanda_url=bigpanda_url,
                    app_key=APP_KEY,
                    state_path=Path(tmp) / "bridge.db",
                    user_api_key=bigpanda.incidents.user_api_key,
                    environment_id=bigpanda.incidents.environment_id,
                )
            )
            settings = load_config(
                config_path,
                environ={
                    "DEMO_PANTHER_TOKEN": PANTHER_TOKEN,
                    "DEMO_BIGPANDA_TOKEN": BIGPANDA_TOKEN,
                },
            )
            out(f"Panther simulator  {panther_url}  ({alerts} alerts generated)")
            out(f"BigPanda simulator {bigpanda_url}")
            stopping = asyncio.Event()
            async with Bridge(settings) as bridge:
                service = asyncio.create_task(bridge.run(stopping))
                started = time.monotonic()
                arrived = await _wait_for(
                    bigpanda, lambda: _alert_ids(bigpanda) >= expected, timeout, service
                )
                elapsed = time.monotonic() - started
                # Panther indexes some alerts late (shared/api/PANTHER.md): listable seconds
                # after newer ones. The bridge's sweep must catch them within a few polls.
                late = [panther.add_alert(late_by=LATE_BY) for _ in range(max(2, alerts // 5))]
                await asyncio.sleep(0.5)
                newer = [panther.add_alert() for _ in range(2)]
                initial = set(expected)
                generated.extend(late + newer)
                expected |= {a["id"] for a in late + newer}
                late_ids = {a["id"] for a in late}
                await _wait_for(
                    bigpanda, lambda: _alert_ids(bigpanda) >= expected, timeout, service
                )
                # An analyst works the queue in Panther: the bridge must carry that over too.
                changes = _work_the_queue(panther, generated)
                synced = await _wait_for(
                    bigpanda, lambda: _changes_seen(bigpanda) >= set(changes), timeout, service
                )
                # Two-way sync: the NOC works incidents in BigPanda; the Panther alerts follow.
                noc = _noc_works_incidents(bigpanda, panther)
                followed = await _wait_for(
                    bigpanda, lambda: _noc_followed(panther, noc), timeout, service
                )
                metrics_url = f"{bridge.server_url}/metrics" if bridge.server_url else "(none)"
                ready = await _fetch_readyz(bridge.server_url)
                metrics_text = bridge.metrics.render().decode()
                stopping.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(service, 30)

    alert_events = [a.alert for a in bigpanda.accepted if _is_first(a.alert, generated)]
    change_events = [a.alert for a in bigpanda.accepted if not _is_first(a.alert, generated)]
    out("")
    out(f"Bridge metrics were at {metrics_url} (readyz: {ready})")
    first = [a for a in alert_events if a.get("panther_alert_id") in initial]
    out(f"Alerts generated in Panther:       {len(initial)}")
    out(f"New-alert events in BigPanda:      {len(first)} in {elapsed:.1f}s")
    out(f"Late-indexed alerts caught:        {len(late_ids & _alert_ids(bigpanda))} of "
        f"{len(late_ids)} (listed {LATE_BY:g}s after their createdAt, behind "
        f"{len(expected) - len(initial) - len(late_ids)} newer ones)")
    out(f"All new alerts in BigPanda:        {len(_alert_ids(bigpanda) & expected)} of "
        f"{len(expected)} generated (what the counters below count)")
    out(f"Status changes made in Panther:    {len(changes)} ({_tally(changes.values())})")
    out(
        f"Status-change events in BigPanda:  {len(change_events)} "
        f"({_tally(a['status'] for a in change_events)})"
    )
    for line in metrics_text.splitlines():
        if line.startswith(("bridge_events_received_total", "bridge_events_sent_total")):
            out(f"  {line}")
    if bigpanda.accepted:
        sample = bigpanda.accepted[0].alert
        shown = ("status", "host", "check", "timestamp", "incident_identifier")
        out("A delivered event: " + ", ".join(f"{k}={sample[k]!r}" for k in shown if k in sample))
    missing = expected - _alert_ids(bigpanda)
    if missing or not arrived:
        out(
            f"FAILED: {len(missing)} alert(s) did not arrive within {timeout:.0f}s,"
            f" e.g. {sorted(missing)[:3]}"
        )
        return 1
    unsynced = set(changes) - _changes_seen(bigpanda)
    if unsynced or not synced:
        out(f"FAILED: {len(unsynced)} status change(s) did not arrive within {timeout:.0f}s")
        return 1
    if len(alert_events) != len(expected) or len(change_events) != len(changes):
        out("FAILED: some events arrived more than once")
        return 1
    out("OK: every alert and every status change arrived in BigPanda exactly once.")
    for line in _noc_report(panther, noc):
        out(line)
    if not followed:
        out(f"FAILED: the Panther alerts did not follow BigPanda within {timeout:.0f}s")
        return 1
    out("OK: the NOC's resolution and comment in BigPanda reached the Panther alerts.")
    return 0


def _noc_works_incidents(bigpanda: BigPandaSimulator, panther: PantherSimulator) -> dict:
    """A NOC engineer resolves one open incident (with a comment) and comments another."""
    store = bigpanda.incidents
    tagged = {}
    for key, alert in store.alerts.items():
        if key.startswith("panther-") and panther.alerts[key[8:]]["status"] == "OPEN":
            tagged.setdefault(alert.incident_id, []).append(key[8:])
    open_ones = [i for i, inc in store.incidents.items() if inc.active and i in tagged]
    noc = {"resolved": {}, "commented": {}}
    if open_ones:
        store.resolve_incident(open_ones[0], user="noc-jane", comment="upstream fix deployed")
        noc["resolved"] = {open_ones[0]: tagged[open_ones[0]]}
    if len(open_ones) > 1:
        store.comment_incident(open_ones[1], "noc-bob", "paging the network team")
        noc["commented"] = {open_ones[1]: tagged[open_ones[1]]}
    return noc


def _noc_followed(panther: PantherSimulator, noc: dict) -> bool:
    comments = panther.writes.comments
    return all(
        panther.alerts[a]["status"] == "RESOLVED" and comments.get(a)
        for ids in noc["resolved"].values() for a in ids
    ) and all(comments.get(a) for ids in noc["commented"].values() for a in ids)


def _noc_report(panther: PantherSimulator, noc: dict) -> list[str]:
    lines = [""]
    for incident_id, ids in noc["resolved"].items():
        lines.append(f"BigPanda incident {incident_id} resolved by noc-jane ({len(ids)} alerts):")
        for alert_id in ids:
            comments = panther.writes.comments_on(alert_id)
            lines.append(f"  Panther alert {alert_id}: {panther.alerts[alert_id]['status']},"
                         f" comment {comments[-1]!r}" if comments else
                         f"  Panther alert {alert_id}: {panther.alerts[alert_id]['status']}")
    for incident_id, ids in noc["commented"].items():
        lines.append(f"BigPanda incident {incident_id} commented by noc-bob ({len(ids)} alerts):")
        for alert_id in ids:
            comments = panther.writes.comments_on(alert_id)
            lines.append(f"  Panther alert {alert_id}: {panther.alerts[alert_id]['status']},"
                         f" {len(comments)} comment(s)")
    return lines


STATUS_FOR = {"TRIAGED": "acknowledged", "RESOLVED": "ok", "CLOSED": "ok"}


def _work_the_queue(panther: PantherSimulator, generated: list[dict]) -> dict[str, str]:
    """Triage, resolve and close a few alerts; returns alert id -> expected BigPanda status."""
    plan = ["TRIAGED", "TRIAGED", "RESOLVED", "RESOLVED", "RESOLVED", "CLOSED"]
    changes: dict[str, str] = {}
    for alert, status in zip(generated, plan, strict=False):
        panther.set_status(alert["id"], status, by="demo-analyst")
        changes[alert["id"]] = STATUS_FOR[status]
    return changes


def _alert_ids(bigpanda: BigPandaSimulator) -> set[str]:
    return {a.alert.get("panther_alert_id") for a in bigpanda.accepted}


def _changes_seen(bigpanda: BigPandaSimulator) -> set[str]:
    return {
        a.alert.get("panther_alert_id")
        for a in bigpanda.accepted
        if a.alert.get("panther_status") in STATUS_FOR
    }


def _is_first(alert: dict, generated: list[dict]) -> bool:
    return alert.get("panther_status") == "OPEN"


def _tally(statuses) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(Counter(statuses).items())) or "none"


async def _wait_for(
    bigpanda: BigPandaSimulator,
    done: Callable[[], bool],
    timeout: float,
    service: asyncio.Task,
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not service.done():
        if done():
            return True
        await asyncio.sleep(0.1)
    return done()


async def _fetch_readyz(base_url: str | None) -> str:
    if not base_url:
        return "not served"
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{base_url}/readyz") as resp:
            return f"{resp.status}"
    except aiohttp.ClientError as exc:
        return f"unreachable ({exc})"
