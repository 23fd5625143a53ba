"""bridge.intake: the dedup keys, the events and dead letters the poller and status sync record,
and how they are counted."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from bridge import intake
from bridge.metrics import Metrics
from bridge.normalize import DEFAULT_RULES
from bridge.panther.models import Alert
from bridge.state.records import NewEvent, Rejected

RAW: dict[str, Any] = {
    "id": "a1",
    "type": "RULE",
    "status": "OPEN",
    "severity": "HIGH",
    "title": "Root login",
    "createdAt": "2024-11-14T17:09:49Z",
    "detection": {"id": "AWS.Root", "type": "RULE"},
    "eventCount": 3,
    "description": "not needed by the status sync",
}
CREATED = 1731604189


def build(alert: Alert, **kwargs: Any) -> NewEvent | Rejected:
    originals: list[bool] = []

    def original() -> bytes:
        originals.append(True)
        return b"original"

    options: dict[str, Any] = {
        "kind": "alert", "key_for": lambda status: f"{alert.id}:{status}",
        "observed": 2_000_000_000.7, "event_time": 1.5, "rules": DEFAULT_RULES,
        "app_key": "app", "original": original, **kwargs,
    }
    result = intake.build_event(alert, **options)
    assert len(originals) == (1 if isinstance(result, Rejected) else 0)
    return result


class TestKeys:
    """One dedup key per thing BigPanda must hear about once."""

    def test_key_shapes(self) -> None:
        assert intake.alert_key("a1") == "a1:alert"
        assert intake.status_change_key("a1", 2, "ok") == "a1:status_change:2:ok"
        assert intake.event_count_key("a1", 7) == "a1:event_count:7"

    def test_keys_of_different_things_never_collide(self) -> None:
        keys = {
            intake.alert_key("a"),
            intake.status_change_key("a", 1, "ok"),
            intake.status_change_key("a", 2, "ok"),
            intake.status_change_key("a", 1, "critical"),
            intake.event_count_key("a", 1),
            intake.alert_key("b"),
        }
        assert len(keys) == 6


class TestBuildEvent:
    """A valid alert becomes its frozen payload under key_for(status); an invalid one a dead
    letter under key_for("invalid"), with the original asked for only then."""

    def test_new_alert(self) -> None:
        event = build(Alert.model_validate(RAW))
        assert isinstance(event, NewEvent)
        payload = orjson.loads(event.payload)
        assert event.dedup_key == f"a1:{payload['status']}" == "a1:critical"
        assert (event.alert_id, event.kind, event.bp_status, event.app_key, event.event_time) == (
            "a1", "alert", "critical", "app", 1.5,
        )
        assert payload["timestamp"] == CREATED  # a new alert is stamped with its createdAt

    def test_status_change_is_stamped_when_observed(self) -> None:
        alert = Alert.model_validate({**RAW, "status": "RESOLVED"})
        event = build(alert, kind="status_change")
        assert isinstance(event, NewEvent)
        assert orjson.loads(event.payload)["timestamp"] == 2_000_000_000
        assert event.bp_status == "ok" and event.dedup_key == "a1:ok"

    def test_invalid_alert_is_a_dead_letter(self) -> None:
        alert = Alert.model_validate({k: v for k, v in RAW.items() if k != "createdAt"})
        rejected = build(alert, observed=-5.0)
        assert isinstance(rejected, Rejected)
        assert (rejected.dedup_key, rejected.alert_id, rejected.kind, rejected.reason) == (
            "a1:invalid", "a1", "alert", "no_timestamp",
        )
        assert rejected.original == b"original" and rejected.event_time == -5.0
        assert "a1" in rejected.detail


class TestForms:
    """What is kept of a raw alert: all of it, sorted, for a dead letter; the fields the status
    sync reads, for a tracked alert."""

    def test_original_form_sorts_keys(self) -> None:
        assert intake.original_form({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"a":{"c":3,"d":2},"b":1}'

    def test_tracked_form_keeps_only_what_status_sync_reads(self) -> None:
        tracked = orjson.loads(intake.tracked_form(RAW))
        assert set(tracked) == {"createdAt", "detection", "eventCount", "id", "severity",
                                "status", "type"}
        assert tracked["detection"] == RAW["detection"]
        assert orjson.loads(intake.tracked_form({"id": "x", "type": "RULE"})) == {"id": "x",
                                                                          "type": "RULE"}


def validation_error(raw: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        Alert.model_validate(raw)
    return info.value


class TestMalformed:
    """A listed object that is no alert is dead-lettered once: under its id, or its hash."""

    def test_with_an_id(self) -> None:
        raw = {"id": "a1", "status": "OPEN"}  # no type
        rejected = intake.malformed(raw, validation_error(raw), 5.0)
        assert (rejected.dedup_key, rejected.alert_id, rejected.reason) == (
            "a1:alert", "a1", "malformed_alert",
        )
        assert rejected.original == intake.original_form(raw) and rejected.event_time == 5.0
        assert "type" in rejected.detail

    @pytest.mark.parametrize("bad_id", [None, "", ["a1"]])
    def test_without_a_usable_id_keyed_by_hash(self, bad_id: object) -> None:
        raw = {"id": bad_id, "type": "RULE", "status": "OPEN"}
        rejected = intake.malformed(raw, validation_error(raw), 5.0)
        digest = hashlib.sha1(intake.original_form(raw)).hexdigest()
        assert rejected.dedup_key == f"sha1-{digest}:alert" and rejected.alert_id == ""
        again = intake.malformed(dict(reversed(raw.items())), validation_error(raw), 6.0)
        assert again.dedup_key == rejected.dedup_key  # the same object, the same key

    def test_key_for_overrides(self) -> None:
        raw = {"id": "a1"}
        rejected = intake.malformed(raw, validation_error(raw), 5.0, kind="status_change",
                             key_for=lambda status: f"a1:status_change:3:{status}")
        assert rejected.dedup_key == "a1:status_change:3:invalid"
        assert rejected.kind == "status_change"


class TestCountIntake:
    """Rejected events were received too: received = sent + pending + dead-lettered."""

    def test_counts_by_kind_and_reason(self, metrics: Metrics) -> None:
        fresh = [build(Alert.model_validate({**RAW, "id": f"a{i}"})) for i in range(3)]
        raw = {"id": "bad"}
        rejected = [intake.malformed(raw, validation_error(raw), 1.0, kind="status_change")]
        with capture_logs() as logs:
            intake.count_intake(metrics, fresh, rejected, rejected_event="poll.rejected_alert")  # type: ignore[arg-type]
        value = metrics.registry.get_sample_value
        assert value("bridge_events_received_total", {"kind": "alert"}) == 3
        assert value("bridge_events_received_total", {"kind": "status_change"}) == 1
        assert value("bridge_events_dead_lettered_total", {"reason": "malformed_alert"}) == 1
        assert [(e["event"], e["alert_id"], e["reason"]) for e in logs] == [
            ("poll.rejected_alert", "bad", "malformed_alert"),
        ]

    def test_nothing_recorded_counts_nothing(self, metrics: Metrics) -> None:
        with capture_logs() as logs:
            intake.count_intake(metrics, [], [], rejected_event="poll.rejected_alert")
        assert logs == []
        assert metrics.registry.get_sample_value(
            "bridge_events_received_total", {"kind": "alert"}
        ) is None
