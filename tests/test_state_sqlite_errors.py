"""bridge.state.sqlite_errors, and what the service makes of them.

State trouble is data: a full disk, a damaged file, a lock file the bridge cannot write. Each
becomes a typed `StateError` whose message says what to do; the CLI prints it without a
traceback; the service stops intake on a full disk, keeps delivering what is queued, reports not
ready and resumes once space returns.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
import yaml
from harness import Rig, all_delivered, metric, running, sample_event, wait_until

from bridge import cli, errors
from bridge.state.sqlite import Outbox, state_error

# SQLite's largest page count: "no limit" again after a test made the disk "full".
NO_LIMIT = 1_073_741_823


def fill_disk(outbox: Outbox) -> None:
    """The state's file can grow no more, as on a full disk (SQLite answers SQLITE_FULL)."""
    pages = outbox._conn.execute("PRAGMA page_count").fetchone()[0]
    outbox._conn.execute(f"PRAGMA max_page_count = {pages}")


def free_disk(outbox: Outbox) -> None:
    outbox._conn.execute(f"PRAGMA max_page_count = {NO_LIMIT}")


def state_with_history(path: Path, n: int = 2000) -> None:
    outbox = Outbox.open(path)
    try:
        outbox.record([sample_event(i) for i in range(n)], watermark=1_700_000_000.0)
    finally:
        outbox.close()


def write_config(tmp_path: Path, state: Path) -> Path:
    config = tmp_path / "bridge.yaml"
    config.write_text(yaml.safe_dump({
        "panther": {"api_url": "https://api.acme.runpanther.net", "api_token": "p-0123456789"},
        "bigpanda": {"api_token": "b-0123456789", "app_key": "app"},
        "state": {"path": str(state)},
    }))
    return config


class TestDamagedFile:
    """A file that is no SQLite database, or fails its integrity check, is refused with the fix."""

    def assert_says_what_to_do(self, exc: errors.StateError, path: Path) -> None:
        text = str(exc)
        assert f"state.path {path} is damaged" in text
        assert "restore it from a backup" in text and "move it aside" in text
        assert "panther.initial_lookback" in text

    def test_random_bytes(self, tmp_path: Path) -> None:
        path = tmp_path / "bridge.db"
        path.write_bytes(random.Random(1).randbytes(64 * 1024))
        with pytest.raises(errors.StateCorruptError) as info:
            Outbox.open(path)
        self.assert_says_what_to_do(info.value, path)
        assert not info.value.retriable and info.value.reason == "corrupt"

    def test_damaged_pages_fail_the_integrity_check(self, tmp_path: Path) -> None:
        """The header is intact (SQLite opens it): only PRAGMA quick_check finds the damage."""
        path = tmp_path / "bridge.db"
        state_with_history(path)
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.seek(size // 2)
            f.write(random.Random(2).randbytes(8 * 4096))
        with pytest.raises(errors.StateCorruptError) as info:
            Outbox.open(path)
        self.assert_says_what_to_do(info.value, path)
        # Refused before anything was written to it (no WAL switch, no schema upgrade).
        assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0

    def test_a_healthy_file_opens(self, tmp_path: Path) -> None:
        path = tmp_path / "bridge.db"
        state_with_history(path, n=50)
        outbox = Outbox.open(path)
        try:
            assert outbox.counts()["pending"] == 50
        finally:
            outbox.close()

    @pytest.mark.parametrize("command", [["dlq", "list"], ["once", "--timeout", "1"]])
    def test_cli_prints_the_fix_without_a_traceback(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
    ) -> None:
        path = tmp_path / "bridge.db"
        path.write_bytes(b"SQLite format 3\x00" + random.Random(3).randbytes(8192))
        config = write_config(tmp_path, path)
        assert cli.main([*command, "--config", str(config)]) == cli.EXIT_FAILED
        err = capsys.readouterr().err
        assert err.startswith(f"error: state.path {path} is damaged")
        assert "Traceback" not in err and "uvloop" not in err


class TestDiskFull:
    """A write the disk cannot hold is rolled back whole and reported as StateFullError."""

    def test_record_on_a_full_disk(self, tmp_path: Path) -> None:
        outbox = Outbox.open(tmp_path / "bridge.db")
        try:
            outbox.record([sample_event(0)], watermark=10.0)
            fill_disk(outbox)
            with pytest.raises(errors.StateFullError) as info:
                outbox.record([sample_event(i) for i in range(1, 500)], watermark=99.0)
            exc = info.value
            assert exc.retriable and exc.reason == "disk_full"
            assert "the disk is full" in str(exc) and "free space" in str(exc)
            assert "resumes by itself" in str(exc)
            assert isinstance(exc.__cause__, sqlite3.OperationalError)
            # Nothing of the failed write stayed, and the connection is usable.
            assert outbox.watermark() == 10.0
            assert outbox.counts()["pending"] == 1
            free_disk(outbox)
            assert len(outbox.record([sample_event(i) for i in range(1, 500)])) == 499
        finally:
            outbox.close()

    def test_delivery_bookkeeping_still_works_on_a_full_disk(self, tmp_path: Path) -> None:
        """Marking events sent frees space: what is queued can still be delivered."""
        outbox = Outbox.open(tmp_path / "bridge.db")
        try:
            outbox.record([sample_event(i) for i in range(100)])
            fill_disk(outbox)
            due = outbox.due(100, now=0)
            outbox.mark_sent([e.id for e in due])
            assert outbox.counts()["sent"] == 100
        finally:
            outbox.close()


class TestLockFile:
    """The lock beside the state file: held, or present but not writable, each said plainly."""

    def test_existing_but_unwritable_lock_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "bridge.db"
        lock = tmp_path / "bridge.db.lock"
        lock.write_text("")
        real_open = os.open

        def refusing_open(file, flags, *args, **kwargs):
            # As for a root-owned lock file the bridge's user cannot open (tests run as root,
            # whom file modes do not stop).
            if Path(file) == lock:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr("bridge.state.sqlite_errors.os.open", refusing_open)
        with pytest.raises(errors.StateAccessError) as info:
            Outbox.open(path)
        text = str(info.value)
        assert f"lock file {lock} exists but cannot be opened for writing" in text
        assert "Permission denied" in text and "cannot create" not in text

    def test_missing_lock_file_that_cannot_be_created(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "bridge.db"
        real_open = os.open

        def refusing_open(file, flags, *args, **kwargs):
            if str(file).endswith(".lock"):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr("bridge.state.sqlite_errors.os.open", refusing_open)
        with pytest.raises(errors.StateAccessError, match="cannot create lock file"):
            Outbox.open(path)

    def test_held_lock(self, tmp_path: Path) -> None:
        path = tmp_path / "bridge.db"
        first = Outbox.open(path)
        try:
            with pytest.raises(errors.StateLockedError, match="in use by another bridge process"):
                Outbox.open(path)
        finally:
            first.close()

    def test_state_path_is_a_directory(self, tmp_path: Path) -> None:
        with pytest.raises(errors.StateAccessError, match="is a directory"):
            Outbox.open(tmp_path)


class TestNoChainedImportError:
    """An error out of the service is not chained to uvloop's absence."""

    def test_run_loop(self) -> None:
        async def failing() -> None:
            raise errors.StateFullError("state.path x: the disk is full")

        with pytest.raises(errors.StateFullError) as info:
            cli.run_loop(failing())
        assert info.value.__context__ is None
        assert info.value.__cause__ is None


class TestServiceOnAFullDisk:
    """The disk fills during `bridge run`: intake stops (not ready, saying why), what is queued is
    delivered, and once space returns intake resumes and every alert is delivered once."""

    async def test_stop_intake_keep_delivering_resume(self, rig: Rig) -> None:
        queued = rig.generate(40)
        rig.bigpanda.outage(60)  # the first alerts wait in the outbox
        settings = rig.settings(retry={"initial_backoff": 0.05, "max_backoff": 0.2})
        async with running(settings) as bridge:
            await wait_until(lambda: bridge.outbox.counts()["pending"] == 40, 5, what="queued")
            fill_disk(bridge.outbox)
            # Created after everything already read (not late-indexed ones, a sweep's business).
            start = datetime.now(UTC) - timedelta(seconds=0.05)
            later = [f"panther-{a['id']}" for a in rig.panther.generate(
                300, start=start, spacing=0.0001)]
            await wait_until(lambda: bridge.health.state_problem is not None, 5, what="full")
            ready, details = bridge.health.readiness()
            assert not ready
            (reason,) = [r for r in details["reasons"] if "intake paused" in r]  # type: ignore[union-attr]
            assert "the disk is full" in reason and "free space" in reason
            assert metric(bridge, "bridge_state_errors_total", reason="disk_full") >= 1

            rig.bigpanda.outage(0)  # BigPanda is back: the queue drains on the full disk
            await wait_until(lambda: set(queued) <= set(rig.delivered()), 8, what="queued out")
            assert bridge.health.state_problem is not None

            free_disk(bridge.outbox)
            await wait_until(all_delivered(rig, bridge, queued + later), 15, what="resumed")
            assert bridge.health.state_problem is None
        delivered = rig.delivered()
        assert set(delivered) == set(queued + later)
        assert max(delivered.values()) == 1


class TestStateErrorMapping:
    """SQLite's failures, by code or by message, become the type that says what to do."""

    @pytest.mark.parametrize(
        ("exc", "kind", "says"),
        [
            (sqlite3.OperationalError("database or disk is full"), errors.StateFullError,
             "disk is full"),
            (sqlite3.DatabaseError("database disk image is malformed"), errors.StateCorruptError,
             "is damaged"),
            (sqlite3.OperationalError("database is locked"), errors.StateBusyError, "busy timeout"),
            (sqlite3.OperationalError("attempt to write a readonly database"),
             errors.StateAccessError, "must be writable"),
            (sqlite3.OperationalError("disk I/O error"), errors.StateIOError, "I/O error"),
            (sqlite3.OperationalError("no such table: queue"), errors.StateError, "no such table"),
        ],
    )
    def test_mapping(self, exc: sqlite3.Error, kind: type[errors.StateError], says: str) -> None:
        error = state_error(exc, Path("/var/lib/bridge/bridge.db"), "record")
        assert type(error) is kind
        assert says in str(error) and "state.path /var/lib/bridge/bridge.db" in str(error)

    def test_a_raw_sqlite_error_from_any_method_is_typed(self, tmp_path: Path) -> None:
        """A public method meeting a SQLite failure raises the typed error, cause attached."""
        outbox = Outbox.open(tmp_path / "bridge.db")
        try:
            outbox._conn.execute("DROP TABLE dead_letters")
            with pytest.raises(errors.StateError, match="no such table: dead_letters") as info:
                outbox.dead_letters()
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        finally:
            outbox.close()


class FullOnMarkSent(Outbox):
    """An outbox whose disk is "full" for the first `full_for` attempts to record a delivery."""

    full_for = 2
    refused = 0

    def mark_sent(self, ids, **kwargs):  # type: ignore[no-untyped-def]
        if self.refused < self.full_for:
            self.refused += 1
            raise state_error(
                sqlite3.OperationalError("database or disk is full"), self.path, "mark sent"
            )
        return super().mark_sent(ids, **kwargs)


class TestSenderOnAFullDisk:
    """A delivery that cannot be recorded is sent again (byte-identical, BigPanda answers 204)
    once it can: nothing lost, nothing stored twice, no crash."""

    async def test_unrecorded_batch_is_resent_then_recorded(self, tmp_path: Path) -> None:
        import aiohttp

        from bridge.bigpanda.client import BigPandaClient
        from bridge.dispatch import Dispatcher
        from bridge.health import Health
        from bridge.metrics import Metrics
        from bridge.retry import RetryPolicy
        from bridge.sim import serve_app
        from bridge.sim.bigpanda import BigPandaSimulator

        sim = BigPandaSimulator(token="tok-0123456789")
        outbox = FullOnMarkSent.open(tmp_path / "bridge.db")
        metrics = Metrics()
        try:
            outbox.record([sample_event(i) for i in range(5)])
            async with serve_app(sim.app) as url, aiohttp.ClientSession() as session:
                client = BigPandaClient(session, api_url=url, api_token="tok-0123456789")
                dispatcher = Dispatcher(
                    client, outbox, metrics, Health(poll_interval=1.0), batch_size=10,
                    max_in_flight=1,
                    policy=RetryPolicy.from_settings(initial_backoff=0.02, max_backoff=0.05),
                    job_timeout=5.0, linger=0.0,
                )
                with structlog.testing.capture_logs() as logs:
                    for _ in range(200):
                        await dispatcher.step()
                        await dispatcher.wait_in_flight()
                        if outbox.counts()["sent"] == 5:
                            break
                        await asyncio.sleep(0.01)
            assert outbox.counts()["sent"] == 5
            assert [r.status for r in sim.requests] == [201, 204, 204]
            assert len(sim.accepted) == 5
            assert [e["log_level"] for e in logs if e["event"] == "batch.unrecorded"] == [
                "error", "debug"
            ]
            assert not [e for e in logs if e["event"] == "batch.crashed"]
            assert metrics.registry.get_sample_value(
                "bridge_state_errors_total", {"reason": "disk_full"}
            ) == 2
        finally:
            outbox.close()
