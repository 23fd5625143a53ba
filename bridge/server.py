"""The bridge's own HTTP endpoints: /metrics, /healthz, /readyz (shared/DESIGN.md contracts)."""

from __future__ import annotations

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.health import Health
from bridge.metrics import Metrics


def build_app(metrics: Metrics, health: Health) -> web.Application:
    """An aiohttp app serving the three endpoints from the live metrics and health record."""

    async def metrics_handler(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        # Answering at all proves the event loop is alive: that is all liveness means here.
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        ready, details = health.readiness()
        return web.Response(
            status=200 if ready else 503,
            body=orjson.dumps(details),
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
