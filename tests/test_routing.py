"""Routing: first matching rule picks the app key and tags; unmatched alerts go default or drop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import ConfigFiles, Rig, make_rig

from bridge.config import RoutingSettings, Settings, load_config
from bridge.mapping import MappingRules
from bridge.normalize import normalize
from bridge.panther.models import Alert
from bridge.routing import DROP_ROUTE, DROP_UNROUTED, Router
from bridge.service import Bridge
from bridge.sim.panther import PantherSimulator

RULES = MappingRules()


def alert(**fields: object) -> Alert:
    base = {"id": "a1", "type": "RULE", "status": "OPEN", "severity": "HIGH"}
    return Alert.model_validate({**base, **fields})


def router(routes: list[dict], *, unmatched: str = "default") -> Router:
    settings = RoutingSettings.model_validate({"unmatched": unmatched, "routes": routes})
    return Router.from_config(settings, default_app_key="default", base_rules=RULES)


class TestMatching:
    """Each condition narrows a route; the first route whose conditions all hold wins."""

    def test_first_match_wins(self) -> None:
        r = router([
            {"name": "crit", "severity": ["CRITICAL"], "app_key": "pager"},
            {"name": "aws", "detection_id": "AWS.*", "app_key": "soc"},
            {"name": "all-aws-again", "detection_id": "AWS.*", "app_key": "never"},
        ])
        assert r.route(alert(severity="CRITICAL", detection={"id": "AWS.X"})).app_key == "pager"
        assert r.route(alert(detection={"id": "AWS.Console.Login"})).app_key == "soc"
        assert r.route(alert(detection={"id": "Okta.X"})).app_key == "default"

    def test_every_condition_must_hold(self) -> None:
        r = router([{
            "severity": ["high", "CRITICAL"],
            "alert_type": "POLICY",
            "status": ["OPEN"],
            "detection_id": ["AWS.S3.*"],
            "app_key": "cspm",
        }])
        policy = {"type": "POLICY", "detection": {"id": "AWS.S3.Bucket.PublicRead"}}
        assert r.route(alert(**policy)).app_key == "cspm"
        assert r.route(alert(**policy, severity="LOW")).app_key == "default"
        assert r.route(alert(**policy, status="RESOLVED")).app_key == "default"
        assert r.route(alert(**{**policy, "type": "RULE"})).app_key == "default"
        assert r.route(alert(type="POLICY", detection={"id": "AWS.EC2.X"})).app_key == "default"
        assert r.route(alert(type="POLICY", detection=None)).app_key == "default"

    def test_alert_type_globs(self) -> None:
        r = router([{"alert_type": "*_ERROR", "app_key": "ops"}])
        assert r.route(alert(type="RULE_ERROR")).app_key == "ops"
        assert r.route(alert(type="SYSTEM_ERROR")).app_key == "ops"
        assert r.route(alert(type="RULE")).app_key == "default"

    def test_log_types_come_from_the_catalog_detection(self) -> None:
        r = router([{"log_type": ["AWS.*"], "app_key": "aws"}])
        a = alert(detection={"id": "X"})
        assert r.route(a, {"logTypes": ["Okta.SystemLog", "AWS.CloudTrail"]}).app_key == "aws"
        assert r.route(a, {"resourceTypes": ["AWS.S3.Bucket"]}).app_key == "aws"
        assert r.route(a, {"logTypes": ["Okta.SystemLog"]}).app_key == "default"
        # Without enrichment the log types are unknown: the route does not match.
        assert r.route(a).app_key == "default"
        assert r.route(a, {"logTypes": None}).app_key == "default"

    def test_route_without_app_key_uses_the_default_and_adds_tags(self) -> None:
        r = router([{"severity": "HIGH", "tags": {"team": "soc", "page": 1}}])
        route = r.route(alert())
        assert route.app_key == "default"
        out = normalize(alert(createdAt=1), rules=route.rules)
        assert out["team"] == "soc" and out["page"] == 1

    def test_route_tags_replace_static_tags(self) -> None:
        base = MappingRules(extra_tags={"team": "everyone", "env": "prod"})
        settings = RoutingSettings.model_validate(
            {"routes": [{"severity": "HIGH", "tags": {"team": "soc"}}]}
        )
        r = Router.from_config(settings, default_app_key="d", base_rules=base)
        out = normalize(alert(createdAt=1), rules=r.route(alert()).rules)
        assert out["team"] == "soc" and out["env"] == "prod"
        low = alert(createdAt=1, severity="LOW")
        out = normalize(low, rules=r.route(low).rules)
        assert out["team"] == "everyone"

    def test_drop_route_and_unmatched_drop(self) -> None:
        r = router([{"severity": "INFO", "drop": True}, {"severity": "HIGH", "app_key": "soc"}],
                   unmatched="drop")
        info = r.route(alert(severity="INFO"))
        assert info.app_key is None and info.drop_reason == DROP_ROUTE
        assert r.route(alert()).app_key == "soc"
        low = r.route(alert(severity="LOW"))
        assert low.app_key is None and low.drop_reason == DROP_UNROUTED
        assert r.app_key_for(alert(severity="LOW")) is None

    def test_no_routes_everything_to_the_default(self) -> None:
        assert router([]).route(alert()).app_key == "default"


class TestConfig:
    """Route mistakes are config errors naming the route and key."""

    @pytest.mark.parametrize(
        ("route", "expected"),
        [
            ({"severity": "URGENT", "app_key": "x"}, "routing.routes[0].severity[0]: must be"),
            ({"alert_type": "POLICIES"}, "routing.routes[0].alert_type[0]: 'POLICIES' is not an"),
            ({"status": "DONE"}, "routing.routes[0].status[0]: must be"),
            ({"drop": True, "app_key": "x"}, "routing.routes[0]: a route with drop: true"),
            ({"tags": {"Team": "x"}}, "routing.routes[0].tags: tag name 'Team'"),
            ({"severty": "HIGH"}, "routing.routes[0].severty: unknown key (did you mean sev"),
        ],
    )
    def test_errors(self, config_files: ConfigFiles, route: dict, expected: str) -> None:
        problems = config_files.problems(routing={"routes": [route]})
        assert any(p.startswith(expected) for p in problems), problems

    def test_top_level_routes_are_routing_routes(self, config_files: ConfigFiles) -> None:
        route = {"name": "soc", "severity": "HIGH", "app_key": "soc"}
        settings = load_config(config_files.write(routes=[route]), environ={})
        assert [r.app_key for r in settings.routing.routes] == ["soc"]
        assert config_files.problems(routes=[route], routing={"routes": []}) == [
            "routes: given both at the top level and as routing.routes: keep one of them"
        ]

    def test_unmatched_values(self, config_files: ConfigFiles) -> None:
        (problem, *_) = config_files.problems(routing={"unmatched": "discard"})
        assert problem.startswith("routing.unmatched: must be 'default' or 'drop'")


# -- end to end: the real bridge, both simulators, two BigPanda integrations --------------------

ROUTES = [
    {"name": "drop-info", "severity": "INFO", "drop": True},
    {"name": "cloud-posture", "alert_type": "POLICY", "app_key": "cspm",
     "tags": {"team": "cloud"}},
    {"name": "soc-cloudtrail", "log_type": "AWS.CloudTrail", "app_key": "soc",
     "tags": {"team": "soc", "via": "cloudtrail"}},
    {"name": "soc-okta-urgent", "detection_id": "Okta.*", "severity": ["CRITICAL", "HIGH"],
     "app_key": "soc", "tags": {"team": "soc"}},
]


def routed_settings(rig: Rig, name: str, routing: dict[str, Any], **sections: Any) -> Settings:
    """The rig's config with `routing`, on a state of its own (`name`)."""
    return rig.settings(
        bigpanda={"app_key": "default-key"},
        state={"path": str(rig.tmp / f"state-{name}" / "bridge.db")},
        routing=routing,
        panther={"initial_lookback": "2h", **sections.pop("panther", {})},
        **sections,
    )


async def run_once(rig: Rig, unmatched: str) -> Bridge:
    settings = routed_settings(
        rig,
        unmatched,
        {"unmatched": unmatched, "routes": ROUTES},
        panther={"console_url": "https://acme.runpanther.net"},
        mapping={"tags": {"source": "panther", "team": "unassigned"}},
    )
    async with Bridge(settings) as bridge:
        assert await bridge.once(timeout=30)
        return bridge


def delivered(rig: Rig) -> dict[str, tuple[str, dict]]:
    """alert id -> (app key, payload) of what BigPanda accepted."""
    return {a.alert["panther_alert_id"]: (a.app_key, a.alert) for a in rig.bigpanda.accepted}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """The rig, its BigPanda knowing three integrations; the bridge's own app key the default."""
    async with make_rig(tmp_path, app_keys=["soc", "cspm", "default-key"]) as r:
        yield r


def add_alerts(panther: PantherSimulator) -> dict[str, str]:
    """One alert per routing case; returns case -> alert id."""
    cases = {
        "policy": {"type": "POLICY", "detection": "AWS.S3.Bucket.PublicRead", "severity": "HIGH"},
        "cloudtrail": {"detection": "AWS.Console.LoginWithoutMFA", "severity": "MEDIUM"},
        "okta_high": {"detection": "Okta.AdminRoleAssigned", "severity": "HIGH"},
        "okta_low": {"detection": "Okta.BruteForceLogins", "severity": "LOW"},
        "info": {"detection": "AWS.CloudTrail.RootActivity", "severity": "INFO"},
        "github": {"detection": "GitHub.Repo.MadePublic", "severity": "MEDIUM"},
    }
    return {case: panther.add_alert(**fields)["id"] for case, fields in cases.items()}


class TestEndToEnd:
    """Alerts of different severities and detections reach the right BigPanda integration."""

    async def test_routes_to_two_app_keys_unmatched_default(self, rig: Rig) -> None:
        ids = add_alerts(rig.panther)
        bridge = await run_once(rig, "default")
        got = delivered(rig)

        assert got[ids["policy"]][0] == "cspm"
        assert got[ids["policy"]][1]["team"] == "cloud"
        # Log types come from the catalog enrichment of the alert's detection.
        assert got[ids["cloudtrail"]][0] == "soc"
        assert got[ids["cloudtrail"]][1]["via"] == "cloudtrail"
        assert got[ids["okta_high"]][0] == "soc"
        for case in ("okta_low", "github"):
            app_key, payload = got[ids[case]]
            assert app_key == "default-key", case
            assert payload["team"] == "unassigned"  # the static tag, no route's
        for _app_key, payload in got.values():
            assert payload["source"] == "panther"  # static tags on every alert
        assert ids["info"] not in got
        assert len(rig.bigpanda.accepted) == 5
        dropped = bridge.metrics.events_dropped.labels(reason="route")._value.get()
        assert dropped == 1
        # One batch per app key, never mixing them.
        batches = [
            orjson.loads(r.body) for r in rig.bigpanda.requests
            if r.path == "/data/v2/alerts" and r.status == 201
        ]
        assert sorted(b["app_key"] for b in batches) == ["cspm", "default-key", "soc"]
        for batch in batches:
            for sent in batch["alerts"]:
                assert got[sent["panther_alert_id"]][0] == batch["app_key"]

    async def test_unmatched_dropped(self, rig: Rig) -> None:
        ids = add_alerts(rig.panther)
        bridge = await run_once(rig, "drop")
        got = delivered(rig)
        assert set(got) == {ids["policy"], ids["cloudtrail"], ids["okta_high"]}
        assert {got[i][0] for i in got} == {"soc", "cspm"}
        metric = bridge.metrics.events_dropped
        assert metric.labels(reason="unrouted")._value.get() == 2
        assert metric.labels(reason="route")._value.get() == 1


class TestStatusChangesFollowTheAlert:
    """A status change goes to the app key the alert went to, even if routes now disagree."""

    async def test_route_on_status_does_not_split_an_alert(self, rig: Rig) -> None:
        route = {"name": "open-github-to-soc", "status": "OPEN", "detection_id": "GitHub.*",
                 "app_key": "soc", "tags": {"team": "soc"}}
        settings = routed_settings(rig, "status", {"routes": [route]})
        alert_id = rig.panther.add_alert(detection="GitHub.Repo.MadePublic")["id"]
        async with Bridge(settings) as bridge:
            assert await bridge.once(timeout=30)
            rig.panther.set_status(alert_id, "RESOLVED")
            assert await bridge.once(timeout=30)
        accepted = rig.bigpanda.accepted
        sent = [(a.app_key, a.alert["status"], a.alert.get("team")) for a in accepted]
        assert sent == [("soc", "warning", "soc"), ("soc", "ok", "soc")]
