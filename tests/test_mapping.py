"""Mapping rules: templates and field paths compiled once, config errors naming the key."""

from __future__ import annotations

import pytest
from harness import ConfigFiles

from bridge.config import MappingSettings, load_config
from bridge.mapping import (
    ContextFilter,
    MappingRules,
    TemplateError,
    compile_source,
    compile_template,
)
from bridge.normalize import Invalid, normalize
from bridge.panther.models import Alert

ALERT = Alert.model_validate(
    {
        "id": "a1",
        "type": "RULE",
        "status": "OPEN",
        "severity": "HIGH",
        "title": "Login from 203.0.113.24",
        "createdAt": "2026-11-20T14:03:27.418230551Z",
        "eventCount": 3,
        "detection": {"id": "AWS.Login", "type": "RULE"},
        "assignee": {"id": "u-1", "type": "user"},
        "context": {
            "sourceIPAddress": "203.0.113.24",
            "userIdentity": {"userName": "ann", "arn": "arn:aws:iam::1:user/ann"},
            "accounts": ["111", "222"],
            "empty": "",
        },
    }
)
DETECTION = {
    "id": "AWS.Login",
    "displayName": "AWS Login",
    "description": "Somebody logged in.",
    "logTypes": ["AWS.CloudTrail", "AWS.VPCFlow"],
    "reports": {"MITRE ATT&CK": ["TA0001:T1078"]},
}


def render(template: str | list[str], detection: dict | None = None) -> str | None:
    return compile_source(template).render(ALERT, DETECTION if detection is None else detection)


class TestTemplates:
    """Placeholders, fallbacks, literals and alternatives render as documented."""

    @pytest.mark.parametrize(
        ("template", "expected"),
        [
            ("panther-{id}", "panther-a1"),
            ("{detection.id}", "AWS.Login"),
            ("{detection.name}", "AWS Login"),
            ("{detection.displayName} ({severity})", "AWS Login (HIGH)"),
            ("{context.sourceIPAddress}", "203.0.113.24"),
            ("{context.userIdentity.userName}@{context.accounts.1}", "ann@222"),
            ("{context.accounts}", "111, 222"),
            ("{detection.logTypes}", "AWS.CloudTrail, AWS.VPCFlow"),
            ("{detection.reports.MITRE ATT&CK}", "TA0001:T1078"),
            ("{createdAt}", "2026-11-20T14:03:27.41823Z"),
            ("{eventCount} events", "3 events"),
            ("{assignee.id}", "u-1"),
            ("{context.missing|context.empty|title}", "Login from 203.0.113.24"),
            ("{context.missing|'nobody'}", "nobody"),
            ('{ context.missing | "no one" }', "no one"),
            ("{{literal}} {id}", "{literal} a1"),
            ("just text", "just text"),
        ],
    )
    def test_render(self, template: str, expected: str) -> None:
        assert render(template) == expected

    def test_a_missing_placeholder_skips_the_template(self) -> None:
        assert render("{id}:{context.missing}") is None
        assert render("{context.empty}") is None
        assert render(["{id}:{context.missing}", "{id}:{severity}"]) == "a1:HIGH"
        assert render(["{context.missing}", "{updatedBy.id}"]) is None

    def test_detection_ref_from_the_alert_wins_catalog_fills_in(self) -> None:
        assert render("{detection.id}", {"id": "other"}) == "AWS.Login"
        bare = Alert.model_validate({"id": "b", "type": "RULE", "status": "OPEN"})
        assert compile_source("{detection.id}").render(bare, {"id": "from-catalog"}) == (
            "from-catalog"
        )
        assert compile_source("{detection.name|type}").render(bare, {}) == "RULE"

    @pytest.mark.parametrize(
        ("template", "message"),
        [
            ("{detecton.id}", "unknown field 'detecton.id' (did you mean detection?)"),
            ("{detection.nme}", "unknown field 'detection.nme' (did you mean detection.name?)"),
            ("{titel}", "unknown field 'titel' (did you mean title?)"),
            ("{detection.id.x}", "detection.id has no fields"),
            ("{assignee.email}", "unknown field 'assignee.email'"),
            ("{context..x}", "empty part in field path"),
            ("{}", "empty field in {}"),
            ("{id|}", "empty field in {id|}"),
            ("{'x'|id}", "a quoted literal must be the last choice"),
            ("open { brace", "unbalanced '{' at position 5"),
            ("close } brace", "unbalanced '}' at position 6"),
            ("", "empty template"),
        ],
    )
    def test_errors(self, template: str, message: str) -> None:
        with pytest.raises(TemplateError) as caught:
            compile_template(template)
        assert message in str(caught.value)

    def test_unknown_field_lists_the_valid_ones(self) -> None:
        with pytest.raises(TemplateError) as caught:
            compile_template("{nope}")
        text = str(caught.value)
        assert "fields: id, type, status, severity, title" in text
        assert "context.<key>" in text and "detection.logTypes" in text

    def test_empty_list_is_an_error(self) -> None:
        with pytest.raises(TemplateError):
            compile_source([])


class TestContextFilter:
    """Include/exclude globs over dotted context paths; a parent's match covers its children."""

    def test_default_keeps_everything(self) -> None:
        assert ContextFilter().everything

    def test_include_and_exclude(self) -> None:
        f = ContextFilter(include=("userIdentity", "source*"), exclude=("userIdentity.arn",))
        assert f.keeps(("userIdentity", "userName"))
        assert not f.keeps(("userIdentity", "arn"))
        assert f.keeps(("sourceIPAddress",))
        assert not f.keeps(("awsRegion",))
        assert not f.may_keep_below(("userIdentity", "arn"))

    def test_normalize_applies_it(self) -> None:
        rules = MappingRules(context=ContextFilter(include=("userIdentity.*",), exclude=()))
        out = normalize(ALERT, rules=rules)
        assert [k for k in out if k.startswith("context_")] == [
            "context_user_identity_user_name",
            "context_user_identity_arn",
        ]
        none = normalize(ALERT, rules=MappingRules(context=ContextFilter(include=())))
        assert not [k for k in none if k.startswith("context_")]
        excluded = normalize(ALERT, rules=MappingRules(context=ContextFilter(exclude=("user*",))))
        assert "context_source_ip_address" in excluded
        assert not [k for k in excluded if k.startswith("context_user")]


class TestRulesFromConfig:
    """A `mapping:` section becomes MappingRules that normalize applies."""

    def test_defaults_equal_the_built_in_rules(self) -> None:
        rules = MappingRules.from_config(MappingSettings(), console_url="https://c.example")
        built_in = MappingRules(console_url="https://c.example")
        assert normalize(ALERT, detection=DETECTION, rules=rules) == normalize(
            ALERT, detection=DETECTION, rules=built_in
        )
        assert rules.forward_event_count is False

    def test_custom_mapping(self) -> None:
        settings = MappingSettings.model_validate(
            {
                "status_map": {"triaged": "warning"},
                "severity_map": {"HIGH": "warning"},
                "severity_default": "unknown",
                "primary": ["{context.sourceIPAddress}", "{detection.id}"],
                "secondary": "{detection.name}/{severity}",
                "incident_identifier": "pan-{detection.id}-{id}",
                "description": "{severity}: {title}",
                "tags": {"team": "soc", "tier": 1, "envs": ["prod", "eu"]},
                "context_include": ["userIdentity"],
                "context_exclude": ["*.arn"],
                "forward_event_count": True,
            }
        )
        rules = MappingRules.from_config(settings)
        out = normalize(ALERT, detection=DETECTION, rules=rules)
        assert out["status"] == "warning"
        assert out["host"] == "203.0.113.24"
        assert out["check"] == "AWS Login/HIGH"
        assert out["incident_identifier"] == "pan-AWS.Login-a1"
        assert out["description"] == "HIGH: Login from 203.0.113.24"
        assert (out["team"], out["tier"], out["envs"]) == ("soc", 1, ["prod", "eu"])
        assert [k for k in out if k.startswith("context_")] == ["context_user_identity_user_name"]
        assert rules.forward_event_count is True
        unmapped = normalize(ALERT.model_copy(update={"severity": "WEIRD"}), rules=rules)
        assert unmapped["status"] == "unknown"
        triaged = normalize(ALERT.model_copy(update={"status": "TRIAGED"}), rules=rules)
        assert triaged["status"] == "warning"

    def test_primary_that_renders_nothing_is_invalid(self) -> None:
        rules = MappingRules(primary=compile_source("{context.nothingHere}"))
        out = normalize(ALERT, rules=rules)
        assert isinstance(out, Invalid) and out.reason == "no_primary_property"
        assert "{context.nothingHere}" in out.detail

    def test_fields_without_a_value_are_left_out(self) -> None:
        rules = MappingRules(
            secondary=compile_source("{context.none}"),
            incident_identifier=compile_source("{context.none}"),
            description=compile_source("{context.none}"),
        )
        out = normalize(ALERT, rules=rules)
        assert "check" not in out and "incident_identifier" not in out
        assert "description" not in out

    def test_configured_tags_replace_built_in_ones(self) -> None:
        out = normalize(ALERT, rules=MappingRules(extra_tags={"severity": "sev-1"}))
        assert out["severity"] == "sev-1"


class TestConfigErrors:
    """Invalid templates, maps and tags stop the bridge with one line naming the key."""

    def test_unknown_field_in_a_template(self, config_files: ConfigFiles) -> None:
        (problem,) = config_files.problems(mapping={"primary": "{detecton.id}"})
        assert problem.startswith(
            "mapping.primary: unknown field 'detecton.id' (did you mean detection?); fields: id, "
        )
        assert "(in template '{detecton.id}')" in problem

    def test_every_bad_key_reported_at_once(self, config_files: ConfigFiles) -> None:
        problems = config_files.problems(
            mapping={
                "description": ["{title}", "{title"],
                "status_map": {"RESOLVED": "closed"},
                "severity_map": {"SEVERE": "critical"},
                "tags": {"Bad Name": "x"},
                "secondary": 3,
                "context_include": "userIdentity",
            },
        )
        text = "\n".join(problems)
        assert "mapping.description: unbalanced '{'" in text
        assert "mapping.status_map.RESOLVED: must be 'ok', 'critical'" in text
        assert "mapping.severity_map.SEVERE.[key]: must be 'CRITICAL'" in text
        assert "mapping.tags: tag name 'Bad Name' is not one BigPanda indexes" in text
        assert "mapping.secondary" in text
        assert "mapping.context_include" in text

    def test_open_is_mapped_by_severity_not_status(self, config_files: ConfigFiles) -> None:
        (problem,) = config_files.problems(mapping={"status_map": {"OPEN": "critical"}})
        assert problem.startswith("mapping.status_map.OPEN.[key]: must be 'TRIAGED'")

    def test_env_override_is_checked_too(self, config_files: ConfigFiles) -> None:
        path = config_files.write()
        environ = {"BRIDGE_MAPPING__INCIDENT_IDENTIFIER": "x-{ID}"}
        problem = config_files.problems(environ)[0]
        assert problem.startswith("mapping.incident_identifier: unknown field 'ID'")
        settings = load_config(path, environ={"BRIDGE_MAPPING__PRIMARY": "{context.host|type}"})
        assert settings.mapping.primary == "{context.host|type}"
