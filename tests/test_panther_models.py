"""bridge.panther.models: tolerant models of Panther's answers (only id, type, status required)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from bridge.panther.models import Actor, Alert, AlertPage, DetectionRef

MINIMAL = {"id": "a1", "type": "RULE", "status": "OPEN"}


class TestAlert:
    """Unknown fields are ignored, missing and null ones are None, never a rejection."""

    def test_minimal_alert(self) -> None:
        alert = Alert.model_validate(MINIMAL)
        assert (alert.id, alert.type, alert.status) == ("a1", "RULE", "OPEN")
        assert alert.severity is None and alert.created_at is None and alert.detection is None
        assert alert.event_count is None and alert.context_tags is None

    @pytest.mark.parametrize("missing", ["id", "type", "status"])
    def test_required_fields(self, missing: str) -> None:
        with pytest.raises(ValidationError) as info:
            Alert.model_validate({k: v for k, v in MINIMAL.items() if k != missing})
        assert [e["loc"] for e in info.value.errors()] == [(missing,)]

    def test_empty_id_is_refused(self) -> None:
        with pytest.raises(ValidationError):
            Alert.model_validate({**MINIMAL, "id": ""})

    def test_unknown_fields_ignored_and_nulls_accepted(self) -> None:
        alert = Alert.model_validate({
            **MINIMAL, "severity": None, "title": None, "detection": None, "assignee": None,
            "notInTheSpec": {"x": 1}, "eventCount": None,
        })
        assert alert.title is None and not hasattr(alert, "notInTheSpec")

    def test_camel_case_aliases_and_field_names(self) -> None:
        raw = {**MINIMAL, "eventCount": 4, "firstEventOccurredAt": "2024-11-14T17:09:49Z",
               "updatedBy": {"id": "system", "type": "system"}, "systemError": {"code": 1},
               "contextTags": ["a"]}
        alert = Alert.model_validate(raw)
        assert alert.event_count == 4 and alert.context_tags == ["a"]
        assert alert.updated_by == Actor(id="system", type="system")
        assert alert.system_error == {"code": 1}
        assert Alert(id="a1", type="RULE", status="OPEN", event_count=4).event_count == 4

    def test_numbers_kept_as_text(self) -> None:
        alert = Alert.model_validate({**MINIMAL, "title": 404, "severity": 3,
                                      "detection": {"id": 12, "type": "RULE"}})
        assert (alert.title, alert.severity) == ("404", "3")
        assert alert.detection == DetectionRef(id="12", type="RULE")

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2024-11-14T17:09:49.841715953Z", datetime(2024, 11, 14, 17, 9, 49, 841715, UTC)),
            ("2024-11-14T18:09:49.5+01:00", datetime(2024, 11, 14, 17, 9, 49, 500000, UTC)),
            (1731604189, datetime(2024, 11, 14, 17, 9, 49, tzinfo=UTC)),
            (1731604189500, datetime(2024, 11, 14, 17, 9, 49, 500000, UTC)),  # epoch ms
            ("not a time", None),
            ("", None),
        ],
    )
    def test_timestamps(self, value: object, expected: datetime | None) -> None:
        created = Alert.model_validate({**MINIMAL, "createdAt": value}).created_at
        assert created == expected
        if created is not None:
            assert created.tzinfo is not None  # aware: compared as instants

    def test_frozen(self) -> None:
        alert = Alert.model_validate(MINIMAL)
        with pytest.raises(ValidationError):
            alert.status = "RESOLVED"  # type: ignore[misc]


class TestAlertPage:
    """A page keeps its results raw, so one malformed alert does not fail the page."""

    def test_results_stay_raw(self) -> None:
        page = AlertPage.model_validate({"results": [MINIMAL, {"no": "id"}], "next": "c2"})
        assert page.results == [MINIMAL, {"no": "id"}] and page.next == "c2"
        assert all(type(r) is dict for r in page.results)

    def test_last_page_has_no_cursor(self) -> None:
        assert AlertPage.model_validate({"results": []}).next is None
        assert AlertPage.model_validate({"results": [], "next": None}).next is None
