"""The catalog: enrichment when Panther's detections answer, delivery regardless when they don't."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from harness import PANTHER_TOKEN, Rig, metric

from bridge.catalog import Catalog, kinds_for
from bridge.config import CatalogSettings
from bridge.metrics import Metrics
from bridge.panther.client import PantherClient
from bridge.panther.models import Alert
from bridge.service import Bridge
from bridge.sim import serve_app
from bridge.sim.panther import PantherSimulator

SCHEDULED = "Standard.ImpossibleTravel.Login"
QUERY_NAME = "Impossible Travel Logins (15 min)"


def catalog_settings(rig: Rig, **catalog: Any) -> Any:
    return rig.settings(catalog={"fetch_timeout": 0.5, **catalog})


def sent(rig: Rig) -> list[dict[str, Any]]:
    return [a.alert for a in rig.bigpanda.accepted]


class Fixture:
    def __init__(self, sim: PantherSimulator, client: PantherClient) -> None:
        self.sim = sim
        self.metrics = Metrics()
        self.catalog = Catalog(
            client, self.metrics, CatalogSettings(miss_ttl=60, fetch_timeout=0.5)
        )

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.sim.requests if r.path.startswith(prefix))


@pytest.fixture
async def fx() -> AsyncIterator[Fixture]:
    sim = PantherSimulator(token=PANTHER_TOKEN, seed=5)
    async with serve_app(sim.app) as url, aiohttp.ClientSession() as session:
        yield Fixture(sim, PantherClient(session, api_url=url, api_token=PANTHER_TOKEN))


def alert(detection_id: str, detection_type: str | None, alert_type: str = "RULE") -> Alert:
    return Alert.model_validate(
        {"id": "a1", "type": alert_type, "status": "OPEN",
         "detection": {"id": detection_id, "type": detection_type}}
    )


class TestCache:
    """Listed with pagination, looked up by detection id and type, singly fetched on a miss."""

    async def test_refresh_pages_every_kind(self, fx: Fixture) -> None:
        for i in range(230):
            fx.sim.add_detection("rules", {"id": f"Extra.Rule.{i:03d}", "displayName": f"R{i}"})
        assert await fx.catalog.refresh()
        assert fx.catalog.counts()["rules"] >= 230
        assert fx.count("/rules") == 3  # 100 per page
        for kind in ("scheduled-rules", "policies", "simple-rules", "queries"):
            assert fx.count(f"/{kind}") == 1 and fx.catalog.counts()[kind] > 0

    async def test_lookup_by_type_and_queries_by_name(self, fx: Fixture) -> None:
        await fx.catalog.refresh()
        detection, queries = fx.catalog.lookup(alert(SCHEDULED, "SCHEDULED_RULE"))
        assert detection is not None and detection["id"] == SCHEDULED
        assert [q["name"] for q in queries] == [QUERY_NAME]
        # An error alert of a detection points at the detection itself.
        assert fx.catalog.lookup(alert(SCHEDULED, None, "SCHEDULED_RULE_ERROR"))[0] is detection
        assert kinds_for(alert("x", "RULE")) == ("rules", "simple-rules")
        assert kinds_for(alert("x", None, "POLICY_ERROR")) == ("policies",)

    async def test_miss_fetched_singly_then_cached(self, fx: Fixture) -> None:
        fx.sim.add_detection("simple-rules", {"id": "New.Simple", "displayName": "New one"})
        enriched = await fx.catalog.enrich([alert("New.Simple", "RULE")])
        assert enriched["a1"][0]["displayName"] == "New one"
        # Simple rules fire as RULE: /rules/{id} answered 404, /simple-rules/{id} found it.
        assert fx.count("/rules/New.Simple") == 1 and fx.count("/simple-rules/New.Simple") == 1
        await fx.catalog.enrich([alert("New.Simple", "RULE")])
        assert fx.count("/simple-rules/New.Simple") == 1

    async def test_404_remembered(self, fx: Fixture) -> None:
        for _ in range(3):
            enriched = await fx.catalog.enrich([alert("Deleted.Rule", "POLICY")])
            assert enriched["a1"] == (None, [])
        assert fx.count("/policies/Deleted.Rule") == 1
        assert fx.metrics.registry.get_sample_value(
            "bridge_catalog_errors_total", {"reason": "not_found"}
        ) == 3

    async def test_outage_costs_one_bounded_wait(self, fx: Fixture) -> None:
        fx.sim.script("slow:5", path="/rules/")
        first = await fx.catalog.enrich([alert("Slow.Rule", "RULE")])
        assert first["a1"] == (None, [])
        slow = [r for r in fx.sim.requests if r.path == "/rules/Slow.Rule"]
        assert len(slow) == 1 and slow[0].status == 0, "enrich returned before Panther answered"
        fx.sim.script("500", path="/policies/")
        await fx.catalog.enrich([alert("Failing.Policy", "POLICY")])
        # Now considered down: no further fetch, no wait.
        await fx.catalog.enrich([alert("Other.Policy", "POLICY")])
        assert fx.count("/policies/Other.Policy") == 0
        assert fx.metrics.registry.get_sample_value(
            "bridge_catalog_errors_total", {"reason": "unavailable"}
        ) >= 2
        fx.catalog.close()

    async def test_refresh_failure_keeps_previous_objects(self, fx: Fixture) -> None:
        assert await fx.catalog.refresh()
        before = fx.catalog.counts()
        fx.sim.script("500", path="/rules")
        assert not await fx.catalog.refresh()
        assert fx.catalog.counts() == before
        assert fx.metrics.registry.get_sample_value(
            "bridge_catalog_errors_total", {"reason": "refresh_failed"}
        ) == 1


class TestEnrichmentEndToEnd:
    """Alerts reach BigPanda enriched when the catalog answers, plain when it does not."""

    async def test_enriched_when_catalog_answers(self, rig: Rig) -> None:
        rig.panther.generate(2, spacing=1.0, detection=SCHEDULED)
        async with Bridge(catalog_settings(rig)) as bridge:
            assert await bridge.once(timeout=5)
        for payload in sent(rig):
            assert payload["detection_name"] == "Impossible Travel Login"
            assert payload["mitre_attack"] == ["TA0001:T1078"]
            assert payload["scheduled_queries"] == [QUERY_NAME]
            assert "Identity" in payload["detection_tags"]
            assert payload["reference"] == "https://attack.mitre.org/techniques/T1078/"

    @pytest.mark.parametrize("fault", ["500", "404"])
    async def test_delivered_without_enrichment(self, rig: Rig, tmp_path: Path, fault: str) -> None:
        generated = rig.panther.generate(3, spacing=1.0, detection=SCHEDULED)
        if fault == "500":
            for kind in ("/rules", "/scheduled-rules", "/policies", "/simple-rules",
                         "/queries"):
                rig.panther.script(",".join(["500"] * 5), path=kind)
        else:
            rig.panther.remove_detection("scheduled-rules", SCHEDULED)
        async with Bridge(catalog_settings(rig)) as bridge:
            assert await bridge.once(timeout=5)
            errors = sum(
                metric(bridge, "bridge_catalog_errors_total", reason=r)
                for r in ("refresh_failed", "unavailable", "not_found")
            )
            assert errors >= 1
        payloads = sent(rig)
        assert {p["panther_alert_id"] for p in payloads} == {a["id"] for a in generated}
        for payload in payloads:
            assert "detection_name" not in payload
            assert payload["host"] == SCHEDULED
