"""aioresponses 0.7.9 against aiohttp >= 3.12: `ClientResponse` now requires a `stream_writer`.

aioresponses builds its fake responses without one (TypeError on every mocked request). The
`MockHttp` here is aioresponses with a response class that supplies an idle writer; drop it once
aioresponses passes `stream_writer` itself.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aioresponses import aioresponses


class _SentWriter:
    """Stands in for the request writer of a request that was already sent."""

    output_size = 0


class CompatResponse(aiohttp.ClientResponse):
    """A ClientResponse aioresponses can construct."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(method, url, **kwargs)


class MockHttp(aioresponses):
    """aioresponses whose mocked responses use `CompatResponse` unless told otherwise."""

    def add(self, url: Any, method: str = "GET", *args: Any, **kwargs: Any) -> None:
        if not args:
            kwargs.setdefault("response_class", CompatResponse)
        super().add(url, method, *args, **kwargs)
