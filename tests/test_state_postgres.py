"""The bridge on the PostgreSQL state: the same service, the same guarantees as on SQLite."""

from __future__ import annotations

from pathlib import Path

import yaml
from harness import Rig, running, wait_until

from bridge.config import load_config
from bridge.state import default_namespace, namespace_of, open_state
from bridge.state.postgres import PostgresStore, redact_url


def pg_settings(rig, url: str, namespace: str | None, **sections):
    path = rig.write_config(**sections)
    doc = yaml.safe_load(path.read_text())
    doc["state"] = {"url": url, **({"namespace": namespace} if namespace else {})}
    path.write_text(yaml.safe_dump(doc))
    return load_config(path, environ={})


async def test_the_service_delivers_everything_once_and_leads_alone(
    rig: Rig, postgres_url: str, pg_namespace: str
) -> None:
    expected = set(rig.generate(120))
    settings = pg_settings(rig, postgres_url, pg_namespace)
    async with running(settings) as bridge:
        await wait_until(lambda: expected <= set(rig.delivered()), 30, what="delivery")
        assert bridge.health.role == "leader" and bridge.leadership.term >= 1
        assert bridge.metrics.leader._value.get() == 1
    assert set(rig.delivered()) == expected
    assert all(n == 1 for n in rig.delivered().values())
    store = PostgresStore.open(postgres_url, pg_namespace)
    try:
        assert store.counts()["sent"] == 120 and store.watermark() is not None
        assert store.backlog()["pending"] == 0
    finally:
        store.close()


def test_state_survives_reopen_and_jobs_too(postgres_url: str, pg_namespace: str) -> None:
    from bridge.state.records import NewEvent

    box = PostgresStore.open(postgres_url, pg_namespace)
    box.record([NewEvent("a:alert", "a", "alert", "critical", "k", b"{}", 1.0)], watermark=42.0)
    box.add_job("http://bp/jobs/9", [e.id for e in box.due(1, now=0)], deadline=5.0)
    box.close()
    box = PostgresStore.open(postgres_url, pg_namespace)
    try:
        assert box.watermark() == 42.0
        assert box.known(["a:alert", "b:alert"]) == {"a:alert"}
        assert [j.url for j in box.jobs()] == ["http://bp/jobs/9"]
    finally:
        box.close()


def test_open_state_picks_the_backend_and_the_namespace(tmp_path: Path, postgres_url: str):
    from bridge.config import StateSettings
    from bridge.state.sqlite import Outbox

    sqlite = open_state(StateSettings(path=str(tmp_path / "b.db")), namespace="x")
    assert isinstance(sqlite, Outbox)
    sqlite.close()
    pg = open_state(StateSettings(url=postgres_url, namespace="x"), namespace="ns_pick")
    assert isinstance(pg, PostgresStore) and pg.schema == "bridge_ns_pick"
    pg.close()
    assert default_namespace("https://a.example", "k1") != default_namespace("https://b.example",
                                                                               "k1")
    assert default_namespace("https://a.example/", "k1") == default_namespace("https://a.example",
                                                                                "k1")


def test_config_errors_name_the_keys_and_never_the_password(tmp_path: Path) -> None:
    from bridge.errors import ConfigError

    base = {
        "panther": {"api_url": "https://p.example", "api_token": "t" * 20},
        "bigpanda": {"api_token": "u" * 20, "app_key": "k"},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**base, "state": {
        "path": "x.db", "url": "postgresql://u:${BRIDGE_STATE_PASSWORD}@h/db"}}))
    try:
        load_config(path, environ={"BRIDGE_STATE_PASSWORD": "s3cret-pass"})
    except ConfigError as exc:
        text = str(exc)
        assert "state.path and state.url are exclusive" in text and "s3cret-pass" not in text
    else:
        raise AssertionError("path and url together must be refused")
    path.write_text(yaml.safe_dump({**base, "state": {
        "url": "postgresql://u:${BRIDGE_STATE_PASSWORD}@h/db", "namespace": "acme"}}))
    settings = load_config(path, environ={"BRIDGE_STATE_PASSWORD": "s3cret-pass"})
    assert settings.state.url.get_secret_value() == "postgresql://u:s3cret-pass@h/db"
    assert "s3cret-pass" not in repr(settings) and namespace_of(settings) == "acme"
    assert redact_url(settings.state.url.get_secret_value()) == "postgresql://u:***@h/db"


def test_status_names_the_leader_its_term_and_expiry(
    tmp_path: Path, postgres_url: str, pg_namespace: str, capsys
) -> None:
    from bridge.cli import main
    from bridge.state.lease import Lease

    base = {
        "panther": {"api_url": "https://p.example", "api_token": "t" * 20},
        "bigpanda": {"api_token": "u" * 20, "app_key": "k"},
    }
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**base, "state": {"url": postgres_url,
                                                        "namespace": pg_namespace}}))
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "leader: none" in out and "term: 0" in out and f"namespace: {pg_namespace}" in out
    lease = Lease(postgres_url, pg_namespace, ttl=30.0, holder="host-a:123:abc")
    try:
        assert lease.try_acquire() == 1
        assert main(["status", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "leader: host-a:123:abc" in out and "term: 1" in out and "lease expires:" in out
    finally:
        lease.close()
    sqlite = tmp_path / "s.yaml"
    sqlite.write_text(yaml.safe_dump({**base, "state": {"path": str(tmp_path / "b.db")}}))
    assert main(["status", "--config", str(sqlite)]) == 0
    assert "SQLite file" in capsys.readouterr().out


def test_once_and_backfill_are_refused_while_a_replica_leads(
    tmp_path: Path, postgres_url: str, pg_namespace: str, capsys
) -> None:
    from bridge.cli import main
    from bridge.state.lease import Lease

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "panther": {"api_url": "http://127.0.0.1:9", "api_token": "t" * 20},
        "bigpanda": {"api_url": "http://127.0.0.1:9", "api_token": "u" * 20, "app_key": "k"},
        "state": {"url": postgres_url, "namespace": pg_namespace},
    }))
    PostgresStore.open(postgres_url, pg_namespace).close()
    lease = Lease(postgres_url, pg_namespace, ttl=60.0, holder="host-a:1:x")
    try:
        assert lease.try_acquire() == 1
        assert main(["once", "--config", str(config)]) == 1
        assert "led by host-a:1:x (term 1)" in capsys.readouterr().err
        assert main(["backfill", "--since", "1h", "--config", str(config)]) == 1
        assert "cannot run beside `bridge run`" in capsys.readouterr().err
    finally:
        lease.close()


def test_a_burst_refreshes_the_planner_statistics_so_due_walks_the_queue_in_order(
    postgres_url: str, pg_namespace: str
) -> None:
    """After a burst, stale statistics make `due` sort the whole queue each time; the store
    analyzes the queue once it has grown past what its statistics describe, and the ever-growing
    events table (which `due` joins) once it has grown by a tenth."""
    from bridge.state.records import NewEvent

    def events(start: int, n: int) -> list[NewEvent]:
        return [
            NewEvent(f"a{i}:alert", f"a{i}", "alert", "critical", "k", b"{}", float(i))
            for i in range(start, start + n)
        ]

    box = PostgresStore.open(postgres_url, pg_namespace)
    try:
        def planner_rows(table: str = "queue") -> float:
            return box._read(
                "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                (f"{box.schema}.{table}",),
            )[0][0]

        box.record(events(0, 300))
        assert planner_rows() <= 0  # never analyzed: PostgreSQL does not know the table yet
        box.record(events(300, 900))
        assert planner_rows() == 1200
        box.record(events(1200, 600))  # the queue has not doubled: the statistics still hold
        assert planner_rows() == 1200
        box.record(events(1800, 700))
        assert planner_rows() == 2500 and planner_rows("events") == 2500
        assert [e.alert_id for e in box.due(3, now=0)] == ["a0", "a1", "a2"]
        # Delivered, the queue empties; a burst is analyzed once the queue has doubled again
        # against what its statistics say, `events` (which keeps every row) with it.
        box.mark_sent([e.id for e in box.due(3000, now=0)])
        box.record(events(2500, 1000))
        assert (planner_rows(), planner_rows("events")) == (2500, 2500)
        box.record(events(3500, 1500))
        assert (planner_rows(), planner_rows("events")) == (2500, 5000)
        # With a long history (as if events held 100,000 rows), a burst of less than a tenth of
        # it refreshes the queue's statistics only: ANALYZE samples a large events table.
        box._analyzed_rows["events"] = 100_000  # test-only: the history it would take long to make
        box.mark_sent([e.id for e in box.due(3000, now=0)])
        box.record(events(5000, 3000))
        assert (planner_rows(), planner_rows("events")) == (3000, 5000)
    finally:
        box.close()
