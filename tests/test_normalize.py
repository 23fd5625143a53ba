"""The normalizer: Panther alert -> BigPanda payload, valid by construction."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_docs import shared_file

from bridge.config import MappingSettings
from bridge.normalize import (
    ARRAY_MAX,
    DESCRIPTION_MAX,
    ELLIPSIS,
    VALUE_MAX,
    Invalid,
    MappingRules,
    normalize,
    tag_name,
)
from bridge.sim.bigpanda import validate_alert

RULES = MappingRules(console_url="https://acme.runpanther.net")


def example(name: str) -> dict:
    return json.loads(shared_file(f"api/examples/{name}").read_text())


def minimal(**fields) -> dict:
    return {"id": "a1", "type": "RULE", "status": "OPEN", **fields}


class TestGolden:
    """Realistic alerts map to exactly the payloads an operator should see."""

    def test_rule_alert_with_detection(self) -> None:
        out = normalize(
            example("panther-alert-rule.json"),
            detection=example("panther-rule.json"),
            rules=RULES,
        )
        assert out == {
            "status": "critical",
            "host": "AWS.Console.LoginWithoutMFA",
            "check": "AWS Console Login Without MFA",
            "timestamp": 1795183407,
            "incident_identifier": "panther-8a1f0c2e7d5b4e6f9a3c1b2d4e6f8a0b",
            "description": "Console login without MFA by ops-admin from 203.0.113.24 — "
            "A user logged into the AWS console without multi-factor authentication.",
            "panther_alert_id": "8a1f0c2e7d5b4e6f9a3c1b2d4e6f8a0b",
            "panther_alert_url": "https://acme.runpanther.net/alerts/8a1f0c2e7d5b4e6f9a3c1b2d4e6f8a0b",
            "severity": "HIGH",
            "panther_status": "OPEN",
            "detection_id": "AWS.Console.LoginWithoutMFA",
            "detection_name": "AWS Console Login Without MFA",
            "detection_type": "RULE",
            "alert_type": "RULE",
            "log_types": ["AWS.CloudTrail"],
            "event_count": 2,
            "first_event_at": "2026-11-20T14:02:51Z",
            "last_event_at": "2026-11-20T14:03:05.902Z",
            "runbook": "Confirm with the user; if unexpected, disable the console password and "
            "rotate keys.",
            "reference": "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa.html",
            "mitre_attack": ["TA0001:T1078", "TA0006:T1556"],
            "detection_tags": [
                "AWS", "Identity & Access Management", "Initial Access:Valid Accounts"
            ],
            "context_tags": ["identity"],
            "context_source_ip_address": "203.0.113.24",
            "context_user_identity_type": "IAMUser",
            "context_user_identity_user_name": "ops-admin",
            "context_user_identity_arn": "arn:aws:iam::123456789012:user/ops-admin",
            "context_aws_region": "eu-west-1",
            "context_mfa_used": "No",
        }

    def test_scheduled_rule_with_saved_queries(self) -> None:
        out = normalize(
            example("panther-alert-scheduled-rule.json"),
            detection=example("panther-scheduled-rule.json"),
            queries=[example("panther-query.json")],
            rules=RULES,
        )
        alert_id = "c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8"
        assert out == {
            "status": "acknowledged",
            "host": "AWS.CloudTrail.UnusedRegion",
            "timestamp": 1795186804,
            "check": "API Calls In Unused Region",
            "incident_identifier": f"panther-{alert_id}",
            "description": "API calls from an unused region (ap-southeast-3) — Activity in a "
            "region the organisation does not operate in.",
            "panther_alert_id": alert_id,
            "panther_alert_url": f"https://acme.runpanther.net/alerts/{alert_id}",
            "severity": "MEDIUM",
            "panther_status": "TRIAGED",
            "detection_id": "AWS.CloudTrail.UnusedRegion",
            "detection_type": "SCHEDULED_RULE",
            "alert_type": "SCHEDULED_RULE",
            "event_count": 17,
            "first_event_at": "2026-11-20T14:12:40Z",
            "last_event_at": "2026-11-20T14:58:11Z",
            "detection_name": "API Calls In Unused Region",
            "mitre_attack": ["TA0005:T1535"],
            "detection_tags": ["AWS", "Defense Evasion:Unused/Unsupported Cloud Regions"],
            "scheduled_queries": ["CloudTrail Unused Regions (hourly)"],
            "scheduled_query_schedules": ["CloudTrail Unused Regions (hourly): every 60m"],
            "assignee": "0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6",
            "context_region": "ap-southeast-3",
            "context_accounts": ["123456789012", "210987654321"],
        }
        # "" runbook on both alert and detection: nothing to show, so no tag at all.
        assert "runbook" not in out

    def test_scheduled_rule_without_queries_names_them_from_the_detection(self) -> None:
        out = normalize(
            example("panther-alert-scheduled-rule.json"),
            detection=example("panther-scheduled-rule.json"),
        )
        assert out["scheduled_queries"] == example("panther-scheduled-rule.json")[
            "scheduledQueries"
        ]
        assert "scheduled_query_schedules" not in out

    def test_policy_alert_resolved_with_nulls(self) -> None:
        out = normalize(
            example("panther-alert-policy.json"),
            detection=example("panther-policy.json"),
            rules=RULES,
        )
        alert_id = "5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"
        assert out == {
            "status": "ok",
            "host": "AWS.S3.Bucket.PublicRead",
            "timestamp": 1795077900,
            "check": "S3 Bucket Public Read",
            "incident_identifier": f"panther-{alert_id}",
            "description": "S3 bucket acme-public-assets allows public read — The bucket's ACL "
            "or policy grants read access to everyone.",
            "panther_alert_id": alert_id,
            "panther_alert_url": f"https://acme.runpanther.net/alerts/{alert_id}",
            "severity": "CRITICAL",
            "panther_status": "RESOLVED",
            "detection_id": "AWS.S3.Bucket.PublicRead",
            "detection_type": "POLICY",
            "alert_type": "POLICY",
            "event_count": 1,
            "reference": "https://docs.aws.amazon.com/AmazonS3/latest/userguide/"
            "access-control-block-public-access.html",
            "detection_name": "S3 Bucket Public Read",
            "log_types": ["AWS.S3.Bucket"],
            "mitre_attack": ["TA0009:T1530"],
            "detection_tags": ["AWS", "Collection:Data from Cloud Storage Object"],
        }

    def test_without_enrichment_the_alert_alone_maps(self) -> None:
        out = normalize(example("panther-alert-rule.json"), rules=RULES)
        assert out["check"] == "Console login without MFA by ops-admin from 203.0.113.24"
        assert out["description"] == "Console login without MFA by ops-admin from 203.0.113.24"
        for tag in ("detection_name", "log_types", "mitre_attack", "detection_tags"):
            assert tag not in out

    def test_detection_error(self) -> None:
        out = normalize(example("panther-alert-detection-error.json"), rules=MappingRules())
        assert out == {
            "status": "warning",
            "host": "Okta.AdminRoleAssigned",
            "check": "KeyError('requestParameters') in Okta.AdminRoleAssigned",
            "timestamp": 1795191611,
            "incident_identifier": "panther-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "description": "KeyError('requestParameters') in Okta.AdminRoleAssigned",
            "panther_alert_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "severity": "INFO",
            "panther_status": "OPEN",
            "detection_id": "Okta.AdminRoleAssigned",
            "detection_type": "RULE",
            "alert_type": "RULE_ERROR",
            "event_count": 3,
        }

    def test_system_error_without_detection_uses_type_as_host(self) -> None:
        out = normalize(example("panther-alert-system-error.json"))
        assert out["host"] == "SYSTEM_ERROR"
        assert out["system_error_type"] == "SOURCE_NO_DATA"


class TestStatus:
    """Panther status (and severity for OPEN) picks the BigPanda status."""

    @pytest.mark.parametrize(
        ("status", "severity", "expected"),
        [
            ("OPEN", "CRITICAL", "critical"),
            ("OPEN", "HIGH", "critical"),
            ("OPEN", "MEDIUM", "warning"),
            ("OPEN", "LOW", "warning"),
            ("OPEN", "INFO", "warning"),
            ("OPEN", None, "warning"),
            ("TRIAGED", "CRITICAL", "acknowledged"),
            ("RESOLVED", "HIGH", "ok"),
            ("CLOSED", "HIGH", "ok"),
            ("SOMETHING_NEW", "HIGH", "unknown"),
        ],
    )
    def test_mapping(self, status: str, severity: str | None, expected: str) -> None:
        out = normalize(minimal(status=status, severity=severity, createdAt="2026-01-01T00:00:00Z"))
        assert out["status"] == expected


class TestTimestamp:
    """`timestamp` is always an int of epoch seconds, whatever shape the input had."""

    @pytest.mark.parametrize(
        "created",
        [
            "2026-11-20T14:03:27.418230551Z",
            "2026-11-20T14:03:27Z",
            "2026-11-20T14:03:27.9Z",
            "2026-11-20T16:03:27.999999999+02:00",
            1795183407,
            1795183407123,
            "1795183407",
        ],
    )
    def test_forms(self, created: object) -> None:
        out = normalize(minimal(createdAt=created))
        assert out["timestamp"] == 1795183407
        assert type(out["timestamp"]) is int

    def test_status_change_uses_observation_time(self) -> None:
        out = normalize(
            minimal(status="RESOLVED", createdAt="2026-11-20T14:03:27Z"),
            kind="status_change",
            observed_at=1795190000,
        )
        assert out["timestamp"] == 1795190000 and out["status"] == "ok"

    def test_missing_created_at_falls_back_to_observation(self) -> None:
        assert normalize(minimal(), observed_at=1700000000)["timestamp"] == 1700000000

    def test_no_time_at_all_is_invalid(self) -> None:
        out = normalize(minimal())
        assert isinstance(out, Invalid) and out.reason == "no_timestamp"

    @pytest.mark.parametrize("observed", [1795190000, 1795190000123, 1795190000.9, "1795190000"])
    def test_observation_time_in_any_form(self, observed: object) -> None:
        out = normalize(minimal(status="RESOLVED"), kind="status_change", observed_at=observed)
        assert out["timestamp"] == 1795190000

    def test_absurd_created_at_falls_back_to_observation(self) -> None:
        # Year 5139 in seconds would read as milliseconds to BigPanda: not a usable time.
        out = normalize(minimal(createdAt="5139-01-01T00:00:00Z"), observed_at=1700000000)
        assert out["timestamp"] == 1700000000
        out = normalize(minimal(createdAt="1969-12-31T23:59:59Z"), observed_at=1700000000)
        assert out["timestamp"] == 1700000000

    def test_epoch_milliseconds_in_event_times(self) -> None:
        out = normalize(minimal(createdAt=1795183407000, firstEventOccurredAt=1795183400500))
        assert out["timestamp"] == 1795183407
        assert out["first_event_at"] == "2026-11-20T14:03:20.5Z"


class TestConstraints:
    """Every BigPanda limit holds, and a cut marks itself."""

    def test_description_truncated_with_ellipsis(self) -> None:
        out = normalize(minimal(title="x" * 5000, createdAt=1))
        assert len(out["description"]) == DESCRIPTION_MAX
        assert out["description"].endswith(ELLIPSIS)

    def test_long_values_and_arrays(self) -> None:
        ctx = {"big": "y" * 2000, "many": list(range(100))}
        out = normalize(minimal(createdAt=1, context=ctx))
        assert len(out["context_big"]) == VALUE_MAX and out["context_big"].endswith(ELLIPSIS)
        assert out["context_many"] == list(range(ARRAY_MAX))

    def test_nested_context_flattened(self) -> None:
        ctx = {"user": {"name": "ann", "groups": [{"id": 1}]}, "ok": True, "ratio": 0.5}
        out = normalize(minimal(createdAt=1, context=ctx))
        assert out["context_user_name"] == "ann"
        assert out["context_user_groups"] == ['{"id":1}']
        assert out["context_ok"] == "true"
        assert out["context_ratio"] == "0.5"

    def test_colliding_keys_stay_distinct(self) -> None:
        ctx = {"userName": "a", "user_name": "b", "USER-NAME": "c"}
        out = normalize(minimal(createdAt=1, context=ctx))
        values = {out[k] for k in out if k.startswith("context_user")}
        assert values == {"a", "b", "c"}

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("sourceIPAddress", "source_ip_address"),
            ("9lives", "tag_9lives"),
            ("héllo wörld", "h_llo_w_rld"),
            ("ユーザー", "tag"),
            ("status", "tag_status"),
            ("a" * 100, "a" * 64),
        ],
    )
    def test_tag_names(self, source: str, expected: str) -> None:
        assert tag_name(source) == expected

    def test_deeply_nested_context_never_raises(self) -> None:
        deep: dict = {"leaf": "x"}
        for _ in range(2000):  # deeper than orjson (255) or repr would go
            deep = {"k": deep}
        out = normalize(minimal(createdAt=1, context={"deep": deep, "ok": 1}))
        assert validate_alert(out, strict=True) == []
        assert out["context_ok"] == 1
        assert out["context_deep_k_k_k"].startswith('{"k":{"k":')
        assert len(out["context_deep_k_k_k"]) <= VALUE_MAX

    def test_huge_context_is_bounded(self) -> None:
        ctx = {f"key{i}": "v" * 600 for i in range(50_000)}
        ctx["list"] = [{"a": i} for i in range(10_000)]
        out = normalize(minimal(createdAt=1, context=ctx))
        assert validate_alert(out, strict=True) == []
        assert len([k for k in out if k.startswith("context_")]) == 100
        assert len(out["context_key0"]) == VALUE_MAX

    def test_integers_past_what_json_holds(self) -> None:
        out = normalize(minimal(createdAt=1, context={"big": 2**80, "nested": {"deeper": {
            "deepest": {"past": {"limit": [2**70]}}}}}))
        assert out["context_big"] == str(2**80)
        assert str(2**70) in out["context_nested_deeper_deepest_past"]

    def test_no_primary_property(self) -> None:
        out = normalize(minimal(type="  ", createdAt=1))
        assert isinstance(out, Invalid) and out.reason == "no_primary_property"

    def test_lone_surrogates_and_nul_do_not_break_encoding(self) -> None:
        context = {"k\udfff": "\ud800"}
        out = normalize(minimal(createdAt=1, title="bad \ud800 text\x00", context=context))
        assert validate_alert(out, strict=True) == []
        json.dumps(out).encode()
        orjson.dumps(out)

    def test_malformed_alert_is_invalid_not_an_exception(self) -> None:
        out = normalize({"id": "x", "status": "OPEN"})
        assert isinstance(out, Invalid) and out.reason == "malformed_alert"
        assert "type" in out.detail

    def test_every_example_passes_strict_validation(self) -> None:
        examples = shared_file("api/examples")
        paths = sorted(examples.glob("panther-alert-*.json"))
        assert paths, f"no panther-alert-*.json in {examples}"
        for path in paths:
            out = normalize(json.loads(path.read_text()), rules=RULES)
            assert validate_alert(out, strict=True) == [], path.name


# -- property tests -----------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=700),
)
_keys = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["userName", "user_name", "USER-NAME", "user.name", "status", "host", "", "9"]),
)
_json = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=40), st.dictionaries(_keys, children, max_size=12)
    ),
    max_leaves=80,
)
_timestamps = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=4_000_000_000_000),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["2024-11-14T17:09:49.841715953Z", "2026-11-20T16:20:11.5Z", "garbage", ""]),
)
_alerts = st.fixed_dictionaries(
    {
        "id": st.one_of(st.text(min_size=1, max_size=40), st.just("8a1f0c2e")),
        "type": st.one_of(st.sampled_from(["RULE", "POLICY", "SCHEDULED_RULE", "SYSTEM_ERROR"]),
                          st.text(max_size=10)),
        "status": st.one_of(st.sampled_from(["OPEN", "TRIAGED", "RESOLVED", "CLOSED"]),
                            st.text(max_size=10)),
    },
    optional={
        "severity": st.one_of(st.none(), st.sampled_from(["CRITICAL", "HIGH", "LOW", "INFO"])),
        "title": st.one_of(st.none(), st.text(max_size=3000)),
        "createdAt": _timestamps,
        "firstEventOccurredAt": _timestamps,
        "lastReceivedEventAt": _timestamps,
        "eventCount": st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)),
        "runbook": st.one_of(st.none(), st.text(max_size=1000)),
        "detection": st.one_of(
            st.none(),
            st.fixed_dictionaries({"id": st.one_of(st.none(), st.text(max_size=90)),
                                   "type": st.one_of(st.none(), st.text(max_size=20))}),
        ),
        "context": _json,
        "contextTags": st.one_of(st.none(), st.lists(st.text(max_size=600), max_size=40)),
        "description": st.one_of(st.none(), st.text(max_size=3000)),
    },
)


class TestProperties:
    """For any alert Panther could send: a strictly valid payload, or Invalid with a reason."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(alert=_alerts, observed=st.one_of(st.none(), st.integers(0, 2**33)))
    def test_valid_or_invalid(self, alert: dict, observed: int | None) -> None:
        out = normalize(alert, observed_at=observed, rules=RULES)
        if isinstance(out, Invalid):
            assert out.reason and out.detail
            return
        assert validate_alert(out, strict=True) == []
        assert type(out["timestamp"]) is int and 0 <= out["timestamp"] < 10**11
        json.dumps(out)  # encodable

    @settings(max_examples=100, deadline=None)
    @given(alert=_alerts, kind=st.sampled_from(["alert", "status_change"]))
    def test_pure_and_deterministic(self, alert: dict, kind: str) -> None:
        first = normalize(alert, kind=kind, observed_at=1_700_000_000)
        assert normalize(alert, kind=kind, observed_at=1_700_000_000) == first


# -- property tests with non-default mappings ---------------------------------------------------

_paths = st.sampled_from([
    "id", "type", "status", "severity", "title", "description", "runbook", "createdAt",
    "firstEventOccurredAt", "eventCount", "contextTags", "assignee.id", "updatedBy.type",
    "detection.id", "detection.type", "detection.name", "detection.description",
    "detection.logTypes", "detection.tags", "detection.reports.MITRE ATT&CK",
    "context.userName", "context.user_name", "context.status", "context.a.b.c", "context.0",
    "systemError.type",
])
_literal_text = st.text(max_size=30).map(lambda t: t.replace("{", "{{").replace("}", "}}"))
_placeholder = st.tuples(
    st.lists(_paths, min_size=1, max_size=3),
    st.one_of(st.none(), st.text(alphabet="abc xyz-", max_size=10)),
).map(lambda p: "{" + "|".join(p[0]) + (f"|'{p[1]}'" if p[1] is not None else "") + "}")
_template = st.lists(st.one_of(_literal_text, _placeholder), min_size=1, max_size=4).map(
    "".join
).filter(bool)
_source = st.one_of(_template, st.lists(_template, min_size=1, max_size=3))
_bp_status = st.sampled_from(["ok", "critical", "warning", "unknown", "acknowledged"])
_tag_names = st.from_regex(r"[a-z][a-z0-9_-]{0,63}", fullmatch=True).filter(
    lambda n: n not in ("status", "host", "check", "description", "timestamp", "service",
                        "application", "device", "sensor", "incident_identifier",
                        "primary_property", "secondary_property", "app_key")
)
_tag_values = st.one_of(
    st.text(max_size=700),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.lists(st.one_of(st.text(max_size=600), st.integers()), max_size=40),
)
_globs = st.lists(
    st.sampled_from(["*", "user*", "*Name", "a.*", "a.b", "status", "[ab]*", "?", "0"]), max_size=3
)
_mappings = st.fixed_dictionaries(
    {},
    optional={
        "status_map": st.dictionaries(st.sampled_from(["TRIAGED", "RESOLVED", "CLOSED"]),
                                      _bp_status),
        "severity_map": st.dictionaries(
            st.sampled_from(["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"]), _bp_status
        ),
        "severity_default": _bp_status,
        "primary": _source,
        "secondary": _source,
        "incident_identifier": _source,
        "description": _source,
        "tags": st.dictionaries(_tag_names, _tag_values, max_size=5),
        "context_include": _globs,
        "context_exclude": _globs,
        "forward_event_count": st.booleans(),
    },
)
_detections = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={
        "id": st.one_of(st.none(), st.text(max_size=40)),
        "displayName": st.one_of(st.none(), st.text(max_size=600)),
        "description": st.one_of(st.none(), st.text(max_size=3000)),
        "logTypes": st.one_of(st.none(), st.lists(st.text(max_size=30), max_size=40)),
        "tags": st.one_of(st.none(), st.lists(_scalars, max_size=40)),
        "reports": st.one_of(st.none(), st.dictionaries(st.just("MITRE ATT&CK"), _json)),
        "runbook": _scalars,
    }),
)


class TestPropertiesWithMappings:
    """Any valid `mapping:` config keeps every payload valid, or says why it cannot be."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mapping=_mappings, alert=_alerts, detection=_detections,
           observed=st.one_of(st.none(), st.integers(0, 2**42)))
    def test_valid_or_invalid(
        self, mapping: dict, alert: dict, detection: dict | None, observed: int | None
    ) -> None:
        rules = MappingRules.from_config(
            MappingSettings.model_validate(mapping), console_url="https://acme.runpanther.net"
        )
        out = normalize(alert, observed_at=observed, detection=detection, rules=rules)
        if isinstance(out, Invalid):
            assert out.reason in ("malformed_alert", "no_timestamp", "no_primary_property")
            assert out.detail
            return
        assert validate_alert(out, strict=True) == []
        assert type(out["timestamp"]) is int
        orjson.dumps(out)

    def test_simulator_alerts_all_map(self) -> None:
        """Every shape the Panther simulator produces (all alert kinds) maps, enriched or not."""
        from bench.normalizer import enrichment
        from bridge.sim.panther import PantherSimulator

        sim = PantherSimulator(seed=3)
        alerts = sim.generate(300) + [sim.add_alert(type=t) for t in
                                      ("RULE_ERROR", "SCHEDULED_RULE_ERROR", "SYSTEM_ERROR")]
        for raw in orjson.loads(orjson.dumps(alerts)):
            detection, queries = enrichment(sim, raw)
            for kwargs in ({}, {"detection": detection, "queries": queries}):
                out = normalize(raw, observed_at=1_800_000_000, rules=RULES, **kwargs)
                assert not isinstance(out, Invalid), out
                assert validate_alert(out, strict=True) == []
