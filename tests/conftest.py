"""Shared fixtures. Every test starts with structlog's defaults, whatever an earlier test set up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import structlog
from aioresponses_compat import MockHttp

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


# Modules that run the whole bridge (a process, or `Bridge` in-process) against both simulators:
# marked `e2e`, so `pytest -m "not e2e"` is the quick unit run.
E2E_MODULES = frozenset({
    "test_backfill",
    "test_bench_smoke",
    "test_crash",
    "test_delivery_e2e",
    "test_dlq_cli",
    "test_integration",
    "test_lifecycle",
    "test_metrics_exposed",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)
