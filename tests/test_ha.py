"""High availability on PostgreSQL: real `bridge run` replicas sharing one state.

Every replica is a subprocess (`python -m bridge run`) against the project's simulators, which
run in this test's event loop. The leader is found in the lease row (its holder names the
process id). BigPanda stores an exact resend once (204), so the batches in flight at a failover
may go out twice and still be stored once; anything lost or re-stamped shows up as a missing or
doubled (incident, status) pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml
from harness import Rig, make_rig, wait_until

from bridge.state.lease import Lease
from bridge.state.postgres import PostgresStore

REPO = Path(__file__).resolve().parent.parent
TTL = 2.0  # the tests' lease: short, so failovers come quickly (bench/ measures the default)


# -- processes and config ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ha_config(rig: Rig, name: str, url: str, namespace: str | None, **sections: dict) -> Path:
    """A replica's config: the rig's fast settings, the state in PostgreSQL."""
    base = {
        "panther": {"page_size": 50, "poll_interval": 0.3, "overlap": "10m",
                    "late_sweep_interval": 0.5, "status_sync_interval": 0.5},
        "bigpanda": {"batch_size": 25, "max_in_flight": 2, "job_poll_interval": 0.1},
        "server": {"shutdown_grace": 1},
        "logging": {"level": "info", "format": "json"},
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    path = rig.write_config(name, **base)
    doc = yaml.safe_load(path.read_text())
    doc["state"] = {"url": url, "lease_ttl": TTL}
    if namespace:
        doc["state"]["namespace"] = namespace
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Replica:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Replica:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", "run", "--config", str(self.config),
                cwd=REPO, stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), 30)

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


def observer(url: str, namespace: str) -> Lease:
    """The test's view of a namespace's lease (its schema created first, as a replica would)."""
    PostgresStore.open(url, namespace).close()
    return Lease(url, namespace, ttl=TTL, holder="observer")


def leader_pid(lease: Lease) -> tuple[int | None, int]:
    """(pid of the valid lease holder or None, term)."""
    info = lease.info()
    if not (info.holder and info.valid):
        return None, info.term
    return int(info.holder.split(":")[-2]), info.term


def pairs(rig: Rig) -> Counter[tuple[str, str]]:
    """How many times BigPanda stored each (incident, status): every event exactly once."""
    return Counter(
        (a.alert.get("incident_identifier"), a.alert.get("status")) for a in rig.bigpanda.accepted
    )


def settled(url: str, namespace: str) -> bool:
    store = PostgresStore.open(url, namespace)
    try:
        counts = store.counts()
    finally:
        store.close()
    return counts["pending"] + counts["job"] + counts["jobs"] + counts["dead_letters"] == 0


async def stop_all(replicas: list[Replica]) -> None:
    for r in replicas:
        if r.running():
            await r.kill(signal.SIGTERM)


def dump_logs(replicas: list[Replica]) -> None:
    for log in {r.log for r in replicas}:
        print(f"--- {log.name}\n" + log.read_text()[-4000:])


@contextlib.asynccontextmanager
async def supervised(group: list[Replica], *leases: Lease) -> AsyncIterator[None]:
    """Whatever happens, the replicas are stopped and the leases closed; on a failure their logs
    are printed first."""
    try:
        yield
    except BaseException:
        dump_logs(group)
        raise
    finally:
        await stop_all(group)
        for lease in leases:
            lease.close()


async def wait_settled(url: str, namespace: str) -> None:
    await wait_until(lambda: settled(url, namespace), 60, what="outbox settled", every=0.2)


# -- SIGKILL failovers --------------------------------------------------------------------------


@pytest.mark.timeout(420)
@pytest.mark.parametrize("replicas", [2, 3])
async def test_sigkill_the_leader_five_times_loses_and_doubles_nothing(
    tmp_path: Path, postgres_url: str, pg_namespace: str, replicas: int
) -> None:
    rng = random.Random(replicas)
    alerts, kills = 2000, 5
    async with make_rig(tmp_path, latency=0.02) as rig:
        ids = [a["id"] for a in rig.panther.generate(alerts, spacing=0.5)]
        expected = {(f"panther-{i}", None) for i in ids}
        rig.bigpanda.script(",".join(rng.choices(["201", "202"], weights=[8, 1], k=200)))
        rig.bigpanda.job_script("pending,done")
        config = ha_config(rig, "ha.yaml", postgres_url, pg_namespace)
        lease = observer(postgres_url, pg_namespace)
        log = tmp_path / "replicas.log"
        group = [await Replica(config, log).start() for _ in range(replicas)]
        takeovers: list[float] = []
        changed: set[str] = set()
        late: set[str] = set()
        async with supervised(group, lease):
            for n in range(kills):
                await wait_until(lambda: leader_pid(lease)[0] is not None, 60, what="a leader",
                                 every=0.05)
                pid, term = leader_pid(lease)
                stored = len(rig.bigpanda.accepted)
                # Kill in the middle of real work: after some deliveries of this term.
                await wait_until(lambda s=stored: len(rig.bigpanda.accepted) > s, 60,
                                 what="deliveries by the leader")
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                if n == 1:  # analysts resolve some of what was already forwarded
                    forwarded = {a.alert["incident_identifier"] for a in rig.bigpanda.accepted}
                    for alert_id in [i for i in ids if f"panther-{i}" in forwarded][:150]:
                        rig.panther.set_status(alert_id, "RESOLVED")
                        changed.add(alert_id)
                if n == 2:  # alerts indexed late, behind the watermark
                    past = datetime.now(UTC) - timedelta(minutes=2)
                    for k in range(30):
                        late.add(rig.panther.add_alert(createdAt=past + timedelta(seconds=k))["id"])
                victim = next(r for r in group if r.running() and r.pid == pid)
                killed_at = time.monotonic()
                await victim.kill()
                await wait_until(
                    lambda t=term: leader_pid(lease)[1] > t and leader_pid(lease)[0] is not None,
                    60, what="a standby taking over", every=0.02,
                )
                takeovers.append(time.monotonic() - killed_at)
                group.remove(victim)
                group.append(await Replica(config, log).start())

            everything = {f"panther-{i}" for i in [*ids, *late]}
            resolved = {f"panther-{i}" for i in changed}
            await wait_until(
                lambda: {k for k, _ in pairs(rig)} >= everything
                and {k for k, s in pairs(rig) if s == "ok"} >= resolved,
                180, what="every alert and status change delivered", every=0.2,
            )
            await wait_settled(postgres_url, pg_namespace)

        stored = pairs(rig)
        assert {k for k, _ in stored} == everything, "an alert was lost or invented"
        doubled = {p: c for p, c in stored.items() if c > 1}
        assert not doubled, f"stored twice (a resend that was not byte-identical): {doubled}"
        assert {k for k, s in stored if s == "ok"} == resolved
        assert len(expected) == alerts and len(takeovers) == kills
        print(
            f"{replicas} replicas, {kills} leader kills: takeover after"
            f" {', '.join(f'{t:.2f}s' for t in takeovers)} (lease_ttl {TTL}s);"
            f" {len(rig.bigpanda.accepted)} events stored, {rig.bigpanda.duplicates} exact"
            " resends dropped"
        )


# -- partition ---------------------------------------------------------------------------------


class Proxy:
    """A TCP proxy in this event loop that counts the bytes sent toward the target. `cut = True`
    is a cut link: open connections are torn down, new ones hang unanswered until healed."""

    def __init__(self, connect) -> None:
        self._connect = connect  # async () -> (reader, writer)
        self._healed = asyncio.Event()
        self._healed.set()
        self.bytes_up = 0
        self._server: asyncio.AbstractServer | None = None
        self.port = 0
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def cut(self) -> bool:
        return not self._healed.is_set()

    @cut.setter
    def cut(self, value: bool) -> None:
        if value:
            self._healed.clear()
            for writer in self._writers:
                with contextlib.suppress(Exception):
                    writer.transport.abort()
            self._writers.clear()
        else:
            self._healed.set()

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._healed.wait()  # a new connection during the cut hangs, as on a dead link
        try:
            up_reader, up_writer = await self._connect()
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]
        for src, dst, counted in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pipe(src, dst, counted))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src, dst, counted: bool) -> None:
        try:
            while data := await src.read(65536):
                if self.cut:
                    continue  # dropped on the floor
                if counted:
                    self.bytes_up += len(data)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()


def pg_connector(url: str):
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    port = parts.port or int(query.get("port", ["5432"])[0])
    if "host" in query and query["host"][0].startswith("/"):
        path = f"{query['host'][0]}/.s.PGSQL.{port}"
        return lambda: asyncio.open_unix_connection(path)
    host = parts.hostname or "127.0.0.1"
    return lambda: asyncio.open_connection(host, port)


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return f"postgresql://{user}@127.0.0.1:{port}{parts.path}"


def http_connector(url: str):
    parts = urlsplit(url)
    return lambda: asyncio.open_connection(parts.hostname, parts.port)


async def readiness(port: int) -> dict:
    try:
        async with aiohttp.ClientSession() as s, s.get(
            f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(total=2)
        ) as resp:
            body = await resp.json()
            body["http_status"] = resp.status
            return body
    except (aiohttp.ClientError, TimeoutError):
        return {}


@pytest.mark.timeout(300)
async def test_a_partitioned_leader_stops_and_stays_fenced_when_it_returns(
    tmp_path: Path, postgres_url: str, pg_namespace: str
) -> None:
    async with make_rig(tmp_path, latency=0.02) as rig:
        ids = [a["id"] for a in rig.panther.generate(600, spacing=1.0)]
        async with (
            Proxy(pg_connector(postgres_url)) as db,
            Proxy(http_connector(rig.bigpanda_url)) as bp,
            Proxy(http_connector(rig.panther_url)) as pan,
        ):
            port_a, port_b = free_port(), free_port()
            config_a = ha_config(
                rig, "a.yaml", through(postgres_url, db.port), pg_namespace,
                panther={"api_url": f"http://127.0.0.1:{pan.port}"},
                bigpanda={"api_url": f"http://127.0.0.1:{bp.port}"},
                server={"port": port_a},
            )
            config_b = ha_config(rig, "b.yaml", postgres_url, pg_namespace,
                                 server={"port": port_b})
            # Same Panther tenant and app key: one namespace, whichever URL reaches it.
            lease = observer(postgres_url, pg_namespace)
            a = await Replica(config_a, tmp_path / "a.log").start()
            group = [a]
            async with supervised(group, lease):
                await wait_until(lambda: leader_pid(lease)[0] == a.pid, 60, what="A leads",
                                 every=0.05)
                b = await Replica(config_b, tmp_path / "b.log").start()
                group.append(b)
                await wait_until(lambda: len(rig.bigpanda.accepted) >= 100, 60,
                                 what="A delivering")
                body = {}

                async def b_standby() -> bool:
                    nonlocal body
                    body = await readiness(port_b)
                    return body.get("role") == "standby"

                await wait_until(b_standby, 60, what="B ready as a standby", every=0.1)
                assert body["http_status"] == 200 and body["ready"] is True
                _, term_a = leader_pid(lease)
                assert leader_pid(lease)[0] == a.pid

                db.cut = True  # A keeps running, but its database is gone
                await wait_until(
                    lambda: leader_pid(lease)[0] == b.pid, 60, what="B takes over", every=0.02
                )
                _, term_b = leader_pid(lease)
                assert term_b > term_a
                sent_by_a = bp.bytes_up
                stored_at_takeover = len(rig.bigpanda.accepted)

                db.cut = False  # the old leader's connection comes back

                async def a_standby() -> bool:
                    state = await readiness(port_a)
                    return state.get("role") == "standby" and state.get("ready") is True

                await wait_until(a_standby, 60, what="A back as a healthy standby", every=0.1)
                polled_by_a = pan.bytes_up
                # More alerts: B delivers them; A, fenced and standing by, touches nothing.
                more = [x["id"] for x in rig.panther.generate(50, spacing=0.1)]
                everything = {f"panther-{i}" for i in [*ids, *more]}
                await wait_until(lambda: {k for k, _ in pairs(rig)} >= everything, 120,
                                 what="everything delivered by B", every=0.2)
                await wait_settled(postgres_url, pg_namespace)
                assert leader_pid(lease) == (b.pid, term_b)

        assert len(rig.bigpanda.accepted) > stored_at_takeover
        assert bp.bytes_up == sent_by_a, "the old leader sent to BigPanda after losing its lease"
        assert pan.bytes_up == polled_by_a, "the old leader, standing by, polled Panther"
        stored = pairs(rig)
        assert {k for k, _ in stored} == everything
        assert not {p: c for p, c in stored.items() if c > 1}
        log_a = (tmp_path / "a.log").read_text()
        assert '"leader.lost"' in log_a and f'"term": {term_a}' in log_a


# -- tenants ------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_two_tenants_with_two_replicas_each_share_one_database(
    tmp_path: Path, postgres_url: str
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    async with make_rig(tmp_path / "one") as one, make_rig(tmp_path / "two") as two:
        ids_one = {f"panther-{a['id']}" for a in one.panther.generate(300, spacing=1.0)}
        ids_two = {f"panther-{a['id']}" for a in two.panther.generate(300, spacing=1.0)}
        # No namespace configured: each is derived from its Panther URL and app key.
        configs = [ha_config(rig, "t.yaml", postgres_url, None) for rig in (one, two)]
        from bridge.config import load_config
        from bridge.state import namespace_of

        namespaces = [namespace_of(load_config(c, environ={})) for c in configs]
        assert namespaces[0] != namespaces[1]
        group = [await Replica(c, c.parent / f"r{i}.log").start()
                 for c in configs for i in range(2)]
        leases = [observer(postgres_url, ns) for ns in namespaces]
        async with supervised(group, *leases):
            for lease in leases:
                await wait_until(lambda lease=lease: leader_pid(lease)[0] is not None, 60,
                                 what="a leader per tenant", every=0.05)
            await wait_until(lambda: {k for k, _ in pairs(one)} >= ids_one
                             and {k for k, _ in pairs(two)} >= ids_two, 120,
                             what="both tenants delivered", every=0.2)
            for ns in namespaces:
                await wait_settled(postgres_url, ns)
            leaders = [leader_pid(lease)[0] for lease in leases]

        assert leaders[0] in {r.pid for r in group[:2]}
        assert leaders[1] in {r.pid for r in group[2:]}
        for rig, expected in ((one, ids_one), (two, ids_two)):
            stored = pairs(rig)
            assert {k for k, _ in stored} == expected  # nothing of the other tenant
            assert not {p: c for p, c in stored.items() if c > 1}
