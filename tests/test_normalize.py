"""The normalizer: Panther alert -> BigPanda payload, valid by construction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "api" / "examples"
RULES = MappingRules(console_url="https://acme.runpanther.net")


def example(name: str) -> dict:
    path = EXAMPLES / name
    if not path.exists():  # pragma: no cover - the examples ship beside the repo in CI
        pytest.skip(f"{path} not available")
    return json.loads(path.read_text())


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
            "detection_tags": ["AWS", "Identity & Access Management", "Initial Access:Valid Accounts"],
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
        assert out["status"] == "acknowledged"
        assert out["host"] == "AWS.CloudTrail.UnusedRegion"
        assert out["check"] == "API Calls In Unused Region"
        assert out["timestamp"] == 1795186804
        assert out["scheduled_queries"] == ["CloudTrail Unused Regions (hourly)"]
        assert out["scheduled_query_schedules"] == ["CloudTrail Unused Regions (hourly): every 60m"]
        assert out["mitre_attack"] == ["TA0005:T1535"]
        assert out["context_accounts"] == ["123456789012", "210987654321"]
        assert out["assignee"] == "0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6"
        assert "runbook" not in out  # "" on both alert and detection: nothing to show

    def test_policy_alert_resolved_with_nulls(self) -> None:
        out = normalize(
            example("panther-alert-policy.json"), detection=example("panther-policy.json"),
            rules=RULES,
        )
        assert out["status"] == "ok"
        assert out["timestamp"] == 1795077900
        assert out["log_types"] == ["AWS.S3.Bucket"]
        assert out["mitre_attack"] == ["TA0009:T1530"]
        assert "first_event_at" not in out and "runbook" not in out

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

    def test_malformed_alert_is_invalid_not_an_exception(self) -> None:
        out = normalize({"id": "x", "status": "OPEN"})
        assert isinstance(out, Invalid) and out.reason == "malformed_alert"
        assert "type" in out.detail

    def test_every_example_passes_strict_validation(self) -> None:
        for path in sorted(EXAMPLES.glob("panther-alert-*.json")):
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
