"""Panther and BigPanda simulators: the demo, the tests and the benchmarks run against these.

They speak the same wire format as the real APIs (shared/api/) and can be told to misbehave.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def serve_app(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Run `app` on host:port (0 = an ephemeral port) and yield its base URL; stop on exit."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = site._server.sockets if site._server else []
    bound_port = sockets[0].getsockname()[1] if sockets else port
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        await runner.cleanup()
