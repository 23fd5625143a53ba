"""bridge.sim.panther_catalog: the Panther simulator's detection listings' filters, generated
titles and raw events."""

from __future__ import annotations

import random

import pytest
from multidict import MultiDict

from bridge.sim.panther_catalog import (
    alert_events,
    detection_filters,
    detection_matches,
    generic_flavor,
)

RULE = {
    "id": "AWS.Console.LoginWithoutMFA",
    "displayName": "Console Login Without MFA",
    "enabled": True,
    "severity": "HIGH",
    "logTypes": ["AWS.CloudTrail"],
    "tags": ["AWS", "Identity"],
}


class TestFilters:
    """Only the filters the spec names for a listing are read; enums are checked like Panther."""

    def test_filters_of_a_rules_listing(self) -> None:
        params = MultiDict([("name-contains", "mfa"), ("state", "enabled"), ("severity", "HIGH"),
                            ("severity", "CRITICAL"), ("tag", "identity"), ("resource-type", "x"),
                            ("log-type", "")])
        assert detection_filters("rules", params) == {
            "name-contains": "mfa", "state": "enabled", "severity": ["HIGH", "CRITICAL"],
            "tag": ["identity"],
        }

    def test_queries_take_no_filter(self) -> None:
        assert detection_filters("queries", MultiDict([("severity", "HIGH")])) == {}

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("state", "on", "invalid value for state: 'on' must be one of enabled, disabled"),
            ("severity", "high", "invalid value for severity: 'high' must be one of INFO, LOW,"),
        ],
    )
    def test_values_outside_the_enum(self, name: str, value: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            detection_filters("policies", MultiDict([(name, value)]))

    @pytest.mark.parametrize(
        ("filters", "matches"),
        [
            ({}, True),
            ({"name-contains": "WITHOUT mfa"}, True),
            ({"name-contains": "aws.console"}, True),  # the id counts too
            ({"name-contains": "okta"}, False),
            ({"state": "enabled"}, True),
            ({"state": "disabled"}, False),
            ({"severity": ["LOW", "HIGH"]}, True),
            ({"severity": ["LOW"]}, False),
            ({"log-type": ["aws.cloudtrail"]}, True),  # case-insensitive, any value
            ({"tag": ["Okta", "identity"]}, True),
            ({"tag": ["Okta"]}, False),
            ({"resource-type": ["AWS.S3.Bucket"]}, False),  # a rule has none
            ({"state": "enabled", "severity": ["LOW"]}, False),  # every filter must hold
        ],
    )
    def test_matches(self, filters: dict, matches: bool) -> None:
        assert detection_matches(RULE, filters) is matches


class TestGeneratedContent:
    """Titles and raw events are made from a seed: the same on every call."""

    def test_generic_flavor_names_the_detection(self) -> None:
        flavor = generic_flavor({"id": "Custom.Rule", "displayName": "Custom Thing"})
        title, context = flavor(random.Random(1))
        assert title.startswith("Custom Thing: ")
        assert context is not None and context["user"] in title and context["sourceIp"] in title
        assert flavor(random.Random(1)) == (title, context)
        assert generic_flavor({})(random.Random(1))[0].startswith("Unnamed detection: ")

    def test_alert_events_follow_the_alert(self) -> None:
        alert = {"id": "a1", "eventCount": 3, "createdAt": "2026-01-01T10:00:00Z"}
        events = alert_events(alert, ("Okta.SystemLog",))
        assert len(events) == 3 and events == alert_events(alert, ("Okta.SystemLog",))
        assert {e["p_log_type"] for e in events} == {"Okta.SystemLog"}
        assert {e["p_event_time"] for e in events} == {"2026-01-01T10:00:00Z"}
        assert len({e["p_row_id"] for e in events}) == 3
        assert alert_events({**alert, "id": "a2"}, ())[0]["p_log_type"] == "AWS.CloudTrail"
        assert alert_events({**alert, "id": "a2"}, ()) != events

    @pytest.mark.parametrize(("count", "expected"), [(None, 1), (0, 1), (5000, 200)])
    def test_event_count_bounds(self, count: int | None, expected: int) -> None:
        assert len(alert_events({"id": "a", "eventCount": count}, ())) == expected
