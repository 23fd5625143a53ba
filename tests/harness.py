"""A test rig for delivery: both simulators on loopback, a real config file, the real bridge.

`Rig` holds the simulators and writes config files for them with short settings (tests override
any key); `running()` runs `Bridge.run` in the test's loop; `wait_until()` is the suite's one
bounded wait. conftest.py wraps these as fixtures (`rig`).
Counting is done on the BigPanda simulator, which deduplicates exact resends like the real service.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
import yaml

from bridge.config import Settings, load_config
from bridge.errors import ConfigError
from bridge.service import Bridge
from bridge.sim import serve_app
from bridge.sim.bigpanda import ALERTS_PATH, BigPandaSimulator, RequestRecord
from bridge.sim.panther import PantherSimulator
from bridge.state.records import NewEvent, PendingEvent
from bridge.state.sqlite import Outbox

REPO = Path(__file__).resolve().parent.parent
PANTHER_TOKEN = "test-panther-token"
BIGPANDA_TOKEN = "test-bigpanda-token"
APP_KEY = "test-app-key"


def _defaults(rig: Rig) -> dict[str, dict[str, Any]]:
    """Settings that make every loop turn fast: the tests measure behaviour, not patience."""
    return {
        "panther": {
            "api_url": rig.panther_url,
            "api_token": PANTHER_TOKEN,
            "poll_interval": 0.2,
            "initial_lookback": "1h",
            "overlap": 0,
        },
        "bigpanda": {
            "api_url": rig.bigpanda_url,
            "api_token": BIGPANDA_TOKEN,
            "app_key": APP_KEY,
            "batch_size": 20,
            "max_in_flight": 2,
            "timeout": 2,
            "job_poll_interval": 0.1,
            "job_timeout": 5,
        },
        "state": {"path": str(rig.tmp / "bridge.db")},
        "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace": 1},
        "logging": {"level": "warning"},
        "retry": {
            "initial_backoff": 0.05,
            "max_backoff": 0.5,
            "give_up_after": "1h",
            "max_retry_after": 5,
        },
    }


@dataclass
class Rig:
    """Both simulators, served on ephemeral 127.0.0.1 ports, and a directory for state."""

    tmp: Path
    panther: PantherSimulator
    bigpanda: BigPandaSimulator
    panther_url: str = ""
    bigpanda_url: str = ""

    def write_config(self, name: str = "bridge.yaml", **sections: dict[str, Any]) -> Path:
        """A real config file: the defaults above, each section updated by `sections`."""
        doc = _defaults(self)
        for section, values in sections.items():
            doc.setdefault(section, {}).update(values)
        path = self.tmp / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def settings(self, **sections: dict[str, Any]) -> Settings:
        return load_config(self.write_config(**sections), environ={})

    def generate(self, n: int, spacing: float = 0.01) -> list[str]:
        """`n` Panther alerts created in the recent past; returns their incident identifiers."""
        return [f"panther-{a['id']}" for a in self.panther.generate(n, spacing=spacing)]

    def delivered(self) -> Counter[str]:
        """How many times BigPanda stored each incident identifier (exact resends count once)."""
        return Counter(a.alert.get("incident_identifier") for a in self.bigpanda.accepted)

    def posts(self) -> list[RequestRecord]:
        """The alerts POSTs BigPanda received, in arrival order."""
        return [r for r in self.bigpanda.requests if r.method == "POST" and r.path == ALERTS_PATH]

    def job_polls(self) -> list[RequestRecord]:
        return [r for r in self.bigpanda.requests if r.method == "GET"]


@contextlib.asynccontextmanager
async def make_rig(
    tmp: Path, *, app_keys: Sequence[str] = (APP_KEY,), **bigpanda_kwargs: Any
) -> AsyncIterator[Rig]:
    """The simulators served for one test; BigPanda knows `app_keys` (the config's is APP_KEY)."""
    rig = Rig(
        tmp=tmp,
        panther=PantherSimulator(token=PANTHER_TOKEN),
        bigpanda=BigPandaSimulator(
            token=BIGPANDA_TOKEN, app_keys=list(app_keys), **bigpanda_kwargs
        ),
    )
    async with serve_app(rig.panther.app) as p_url, serve_app(rig.bigpanda.app) as b_url:
        rig.panther_url, rig.bigpanda_url = p_url, b_url
        yield rig


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, stop_timeout: float = 10.0, serve: bool = False
) -> AsyncIterator[Bridge]:
    """The real service (`Bridge.run`) in this loop; stopped like SIGTERM stops it, on exit.
    `serve` also starts its HTTP server (health, metrics) as `bridge run` does."""
    stopping = asyncio.Event()
    async with Bridge(settings) as bridge:
        task = asyncio.create_task(bridge.run(stopping, serve=serve), name="bridge")
        try:
            yield bridge
        finally:
            stopping.set()
            await asyncio.wait_for(task, stop_timeout)


async def spawn(config: Path, log: Path) -> asyncio.subprocess.Process:
    """`python -m bridge run --config <config>` as its own process, its output added to `log`."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", "--config", str(config),
            cwd=REPO, stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def kill_and_show_log(proc: asyncio.subprocess.Process | None, log: Path) -> None:
    """After a failure: no process left behind, and the end of its log in the test's output."""
    if proc is not None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    print(log.read_text()[-5000:])


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    *,
    what: str = "condition",
    every: float = 0.02,
) -> None:
    """Poll `condition` (a plain or an async check) until true; AssertionError after `timeout`.

    The timeout only bounds a test that would otherwise hang: never assert on how long it took.
    """
    deadline = time.monotonic() + timeout
    while True:
        ok = condition()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


class RecordingOutbox(Outbox):
    """An outbox that remembers the most events one `due()` call ever loaded into memory."""

    most_loaded = 0

    def due(self, limit: int, **kwargs: Any) -> list[PendingEvent]:
        rows = super().due(limit, **kwargs)
        self.most_loaded = max(self.most_loaded, len(rows))
        return rows



def settled(bridge: Bridge) -> bool:
    """Nothing pending and no job open: whatever was going to be delivered was."""
    counts = bridge.outbox.counts()
    return counts["pending"] == 0 and counts["jobs"] == 0 and counts["job"] == 0


def all_delivered(rig: Rig, bridge: Bridge, expected: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        return set(expected) <= set(rig.delivered()) and settled(bridge)

    return check


def metric(bridge: Bridge, name: str, **labels: str) -> float:
    """The current value of one sample of the bridge's registry (0 when absent)."""
    value = bridge.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


class ConfigFiles:
    """Config files in a test's directory: the required keys, plus any top-level sections."""

    REQUIRED: ClassVar[dict[str, dict[str, str]]] = {
        "panther": {"api_url": "https://p.example", "api_token": "t"},
        "bigpanda": {"api_token": "t", "app_key": "k"},
    }

    def __init__(self, directory: Path) -> None:
        self.path = directory / "bridge.yaml"

    def write(self, **sections: Any) -> Path:
        self.path.write_text(yaml.safe_dump({**self.REQUIRED, **sections}, allow_unicode=True))
        return self.path

    def problems(self, environ: dict[str, str] | None = None, **sections: Any) -> list[str]:
        """What `load_config` refuses in the file with `sections` (the last file written, if
        none are given), under `environ`."""
        path = self.write(**sections) if sections or not self.path.exists() else self.path
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ=environ or {})
        return caught.value.problems


def sample_payload(i: int, **fields: Any) -> bytes:
    """A valid frozen BigPanda alert payload, as the normalizer would store it."""
    alert = {
        "status": "critical",
        "host": "rule.test",
        "check": f"check {i}",
        "timestamp": 1_700_000_000 + i,
        "incident_identifier": f"panther-{i:032x}",
        "panther_alert_id": f"{i:032x}",
        **fields,
    }
    return orjson.dumps(alert)


def sample_event(i: int, *, app_key: str = APP_KEY, **fields: Any) -> NewEvent:
    return NewEvent(
        dedup_key=f"alert:{i:032x}:OPEN:alert",
        alert_id=f"{i:032x}",
        kind="alert",
        bp_status="critical",
        app_key=app_key,
        payload=sample_payload(i, **fields),
        event_time=1_700_000_000.0 + i,
    )


def keyed_event(alert_id: str, *, app_key: str = "k", payload: bytes | None = None) -> NewEvent:
    """An alert event whose dedup key is `<alert_id>:alert`, for tests that write keys by hand."""
    return NewEvent(
        dedup_key=f"{alert_id}:alert",
        alert_id=alert_id,
        kind="alert",
        bp_status="critical",
        app_key=app_key,
        payload=payload or b'{"status":"critical","host":"h","id":"%s"}' % alert_id.encode(),
        event_time=1000.0,
    )
