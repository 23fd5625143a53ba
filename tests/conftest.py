"""Shared fixtures. Every test starts with structlog's defaults, whatever an earlier test set up."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import structlog
from aioresponses_compat import MockHttp
from dispatch_rig import Setup, setup_maker
from harness import ConfigFiles, Rig, make_rig

from bridge.metrics import Metrics


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def mock() -> Iterator[MockHttp]:
    """HTTP mocked with aioresponses (through the aiohttp 3.14 shim)."""
    with MockHttp() as m:
        yield m


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def metrics() -> Metrics:
    """A fresh registry per test, so counters start at zero."""
    return Metrics()


@pytest.fixture
def config_files(tmp_path: Path) -> ConfigFiles:
    return ConfigFiles(tmp_path)


@pytest.fixture
def make_setup(tmp_path: Path) -> Callable[..., contextlib.AbstractAsyncContextManager[Setup]]:
    """A dispatcher over a fresh outbox and the BigPanda simulator (tests/dispatch_rig.py)."""
    return setup_maker(tmp_path)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """Both simulators on loopback and a config writer for the real bridge (tests/harness.py)."""
    async with make_rig(tmp_path) as r:
        yield r


# Modules that run the whole bridge (a process, or `Bridge` in-process) against both simulators:
# marked `e2e`, so `pytest -m "not e2e"` is the quick unit run.
E2E_MODULES = frozenset({
    "test_backfill",
    "test_bench_smoke",
    "test_crash",
    "test_delivery_e2e",
    "test_demo",
    "test_dlq_cli",
    "test_ha",
    "test_hostile_panther",
    "test_integration",
    "test_late_alerts",
    "test_lifecycle",
    "test_metrics",
    "test_two_way",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)
# -- PostgreSQL ---------------------------------------------------------------------------------
# The state's PostgreSQL backend is tested against a real server: the one named by
# BRIDGE_TEST_POSTGRES_URL (CI's machine runs one), or else a throwaway server started from the
# pip-installed `pgserver`. Neither available is a failure, never a skip. Each test session works
# in a database of its own, created here and dropped at the end; each test in a namespace of its
# own.

_PG_ENV = "BRIDGE_TEST_POSTGRES_URL"


def with_database(url: str, dbname: str) -> str:
    """`url` pointing at database `dbname` (keeps user, host and query such as ?host=/socket)."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a PostgreSQL server's maintenance database (`postgres`)."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    import psycopg

    url = os.environ.get(_PG_ENV)
    if url:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as exc:
            pytest.fail(f"{_PG_ENV}={url} does not answer: {exc}", pytrace=False)
        yield url
        return
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg")))  # platformdirs
    try:
        import pgserver
    except ImportError as exc:
        pytest.fail(
            f"no PostgreSQL for the state tests: set {_PG_ENV} or install the test extra"
            f" (pgserver): {exc}",
            pytrace=False,
        )
    try:
        import warnings

        with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR in containers
            warnings.simplefilter("ignore")
            # Outside pytest's basetemp: other pytest runs prune old basetemps, and the server
            # may run as an unprivileged user that must reach its data directory.
            pgdata = Path(tempfile.mkdtemp(prefix="bridge-test-pg-"))
            pgdata.chmod(0o755)
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
        url = server.get_uri()
        psycopg.connect(url, connect_timeout=5).close()
    except Exception as exc:
        pytest.fail(f"cannot start a throwaway PostgreSQL (pgserver): {exc}", pytrace=False)
    try:
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A throwaway database for this test session, dropped at the end."""
    import os
    import secrets

    import psycopg

    name = f"bridge_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(postgres_server, name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_namespace() -> str:
    """A namespace (PostgreSQL schema) no other test uses."""
    import secrets

    return "test_" + secrets.token_hex(5)
