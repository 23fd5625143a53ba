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
