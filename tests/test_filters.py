"""bridge.filters: which listed alerts are forwarded, and what Panther is asked to filter."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bridge.filters import AlertFilter, listing_of


class TestListing:
    """An alert's `type` names the `GET /alerts?type=` listing it comes from."""

    @pytest.mark.parametrize(
        ("alert_type", "listing"),
        [
            ("RULE", "ALERT"),
            ("POLICY", "ALERT"),
            ("scheduled_rule", "ALERT"),
            (None, "ALERT"),
            ("RULE_ERROR", "DETECTION_ERROR"),
            ("scheduled_rule_error", "DETECTION_ERROR"),
            ("SYSTEM_ERROR", "SYSTEM_ERROR"),
            ("system_error", "SYSTEM_ERROR"),
        ],
    )
    def test_listing_of(self, alert_type: str | None, listing: str) -> None:
        assert listing_of(alert_type) == listing


class TestQuery:
    """Severity, log type and one exact detection id go into Panther's query; the rest cannot."""

    def test_default_filters_nothing(self) -> None:
        f = AlertFilter()
        assert f.alert_types == ("ALERT",)
        assert f.query("ALERT") == {} and f.query("SYSTEM_ERROR") == {}
        assert f.accepts({}) and f.accepts({"severity": "INFO", "detection": "not a mapping"})

    def test_severities_upper_cased_and_log_types_kept(self) -> None:
        f = AlertFilter(severities=("high", "Critical"), log_types=("AWS.CloudTrail",))
        assert f.query("ALERT") == {
            "severities": ("HIGH", "CRITICAL"), "log_types": ("AWS.CloudTrail",),
        }

    @pytest.mark.parametrize(
        ("detection_ids", "queried"),
        [
            (("AWS.CloudTrail.Root",), True),
            (("AWS.*",), False),  # a glob: matched here
            (("Okta.Login?",), False),
            (("AWS.[A-Z]*",), False),
            (("One", "Two"), False),  # `detection-id` takes exactly one id
        ],
    )
    def test_detection_id_only_when_one_exact_id(
        self, detection_ids: tuple[str, ...], queried: bool
    ) -> None:
        query = AlertFilter(detection_ids=detection_ids).query("ALERT")
        assert ("detection_ids" in query) is queried
        if queried:
            assert query["detection_ids"] == detection_ids

    def test_system_errors_get_only_the_severity_filter(self) -> None:
        f = AlertFilter(severities=("HIGH",), log_types=("Okta.SystemLog",),
                        detection_ids=("Okta.Login",))
        assert f.query("SYSTEM_ERROR") == {"severities": ("HIGH",)}
        assert set(f.query("DETECTION_ERROR")) == {"severities", "log_types", "detection_ids"}

    def test_query_is_a_copy(self) -> None:
        f = AlertFilter(severities=("HIGH",))
        f.query("ALERT")["severities"] = ("LOW",)
        assert f.query("ALERT") == {"severities": ("HIGH",)}


class TestAccepts:
    """Globs, excludes and severity are checked on every listed alert; system errors have no
    detection, so only severity applies to them."""

    def test_filter_rules(self) -> None:
        f = AlertFilter(detection_ids=("Okta.*", "AWS.CloudTrail.Root"),
                        exclude_detection_ids=("Okta.Test*",), severities=("HIGH",))
        ok = {"type": "RULE", "severity": "HIGH", "detection": {"id": "Okta.Login"}}
        assert f.accepts(ok)
        assert not f.accepts({**ok, "severity": "LOW"})
        assert not f.accepts({**ok, "detection": {"id": "Okta.TestRule"}})
        assert not f.accepts({**ok, "detection": {"id": "GitHub.Push"}})
        assert f.accepts({"type": "SYSTEM_ERROR", "severity": "HIGH", "detection": None})
        exact = AlertFilter(detection_ids=("AWS.CloudTrail.Root",))
        assert exact.query("ALERT") == {"detection_ids": ("AWS.CloudTrail.Root",)}
        assert exact.query("SYSTEM_ERROR") == {}

    def test_matching_is_case_sensitive_and_whole(self) -> None:
        f = AlertFilter(detection_ids=("AWS.Root",))
        assert f.accepts({"type": "RULE", "detection": {"id": "AWS.Root"}})
        assert not f.accepts({"type": "RULE", "detection": {"id": "aws.root"}})
        assert not f.accepts({"type": "RULE", "detection": {"id": "AWS.Root.Extra"}})

    def test_missing_detection_fails_an_include_but_passes_an_exclude(self) -> None:
        include = AlertFilter(detection_ids=("AWS.*",))
        exclude = AlertFilter(exclude_detection_ids=("*",))
        for alert in ({"type": "RULE"}, {"type": "RULE", "detection": {"id": 7}},
                      {"type": "RULE", "detection": None}):
            assert not include.accepts(alert)
            assert exclude.accepts(alert)
        assert not exclude.accepts({"type": "RULE", "detection": {"id": "Any.Rule"}})

    def test_severity_checked_even_without_the_query(self) -> None:
        f = AlertFilter(severities=("CRITICAL",))
        assert not f.accepts({"type": "RULE", "severity": "HIGH"})
        assert not f.accepts({"type": "SYSTEM_ERROR", "severity": None})
        assert f.accepts({"type": "SYSTEM_ERROR", "severity": "critical"})
        assert f.accepts({"type": "RULE", "severity": "Critical", "detection": {"id": "X"}})


class TestFromSettings:
    """Built from `panther.filters`; no filters section means the defaults."""

    def test_none_is_the_default(self) -> None:
        assert AlertFilter.from_settings(None) == AlertFilter()

    def test_fields_copied_and_alert_types_deduplicated(self) -> None:
        settings = SimpleNamespace(
            alert_types=["ALERT", "SYSTEM_ERROR", "ALERT"], severities=["HIGH"],
            detection_ids=["A.*"], exclude_detection_ids=["A.B"], log_types=["L"],
        )
        f = AlertFilter.from_settings(settings)
        assert f == AlertFilter(alert_types=("ALERT", "SYSTEM_ERROR"), severities=("HIGH",),
                                detection_ids=("A.*",), exclude_detection_ids=("A.B",),
                                log_types=("L",))

    def test_empty_alert_types_mean_alerts(self) -> None:
        settings = SimpleNamespace(alert_types=[], severities=[], detection_ids=[],
                                   exclude_detection_ids=[], log_types=[])
        assert AlertFilter.from_settings(settings).alert_types == ("ALERT",)
