"""`bridge dlq list | show | replay | purge` on a prepared state, through `bridge.cli.main`."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from harness import Rig, sample_event

from bridge.cli import main
from bridge.service import Bridge
from bridge.state.records import Rejected
from bridge.state.sqlite import Outbox

DAY = 86_400.0
BODY_400 = '{"status":"failure","error":"alerts[0].host: no primary property"}'


@pytest.fixture
def state(rig: Rig) -> dict[str, object]:
    """Three dead letters: rejected by BigPanda (old), expired (recent), an invalid alert;
    and one event delivered long ago."""
    config = rig.write_config()
    outbox = Outbox.open(rig.tmp / "bridge.db", exclusive=False)
    try:
        events = [sample_event(1), sample_event(2), sample_event(3)]
        outbox.record(
            events,
            rejected=[
                Rejected(
                    dedup_key="alert:bad:OPEN:alert", alert_id="bad", kind="alert",
                    reason="invalid_alert", detail="createdAt: missing",
                    original=b'{"id": "bad", "title": "no createdAt"}', event_time=0.0,
                )
            ],
        )
        ids = {e.alert_id: e.id for e in outbox.due(10, now=0)}
        outbox.dead_letter(
            [ids[events[0].alert_id]], reason="rejected", detail=f"HTTP 400: {BODY_400}",
            now=time.time() - 10 * DAY,
        )
        outbox.dead_letter(
            [ids[events[1].alert_id]], reason="expired", detail="still failing: HTTP 503"
        )
        outbox.mark_sent([ids[events[2].alert_id]])
        letters = {dl.reason: dl for dl in outbox.dead_letters()}
    finally:
        outbox.close()
    return {"config": str(config), "letters": letters, "events": events}


def dlq(state: dict[str, object], *args: str) -> int:
    return main(["dlq", args[0], "--config", str(state["config"]), *args[1:]])


class TestList:
    """One line per dead letter under a header: id, time, reason, alert, detail."""

    def test_columns(self, state, capsys) -> None:
        assert dlq(state, "list") == 0
        header, *rows = capsys.readouterr().out.splitlines()
        assert header.split() == ["ID", "DEAD", "AT", "REASON", "ALERT", "DETAIL"]
        assert len(rows) == 3
        by_reason = {row.split()[2]: row for row in rows}
        assert set(by_reason) == {"rejected", "expired", "invalid_alert"}
        assert f"{1:032x}" in by_reason["rejected"] and "HTTP 400" in by_reason["rejected"]
        assert by_reason["invalid_alert"].split()[3] == "bad"

    def test_empty(self, rig: Rig, capsys) -> None:
        config = rig.write_config()
        assert main(["dlq", "list", "--config", str(config)]) == 0
        assert capsys.readouterr().out.strip() == "no dead letters"


class TestShow:
    """The whole letter as JSON: payload as sent, reason, BigPanda's response body."""

    def test_rejected_letter(self, state, capsys) -> None:
        letter = state["letters"]["rejected"]
        assert dlq(state, "show", str(letter.id)) == 0
        doc = orjson.loads(capsys.readouterr().out)
        assert doc["reason"] == "rejected"
        assert BODY_400 in doc["detail"]
        assert doc["payload"] == orjson.loads(state["events"][0].payload)
        assert doc["original_alert"] is None
        assert doc["alert_id"] == f"{1:032x}"

    def test_invalid_alert_letter(self, state, capsys) -> None:
        letter = state["letters"]["invalid_alert"]
        assert dlq(state, "show", str(letter.id)) == 0
        doc = orjson.loads(capsys.readouterr().out)
        assert doc["payload"] is None
        assert doc["original_alert"] == {"id": "bad", "title": "no createdAt"}

    def test_unknown_id(self, state, capsys) -> None:
        assert dlq(state, "show", "999") == 1
        assert "no dead letter with id 999" in capsys.readouterr().err


class TestReplay:
    """Replay puts events back unchanged; they are delivered; invalid alerts are refused."""

    async def test_replayed_event_is_delivered_byte_identical(self, rig: Rig, state, capsys):
        letter = state["letters"]["rejected"]
        assert dlq(state, "replay", str(letter.id)) == 0
        assert "replayed 1 dead letter(s)" in capsys.readouterr().out

        settings = rig.settings()
        async with Bridge(settings) as bridge:
            (back,) = bridge.outbox.due(10, now=time.time())
            assert back.payload == letter.payload == state["events"][0].payload
            assert back.attempts == 0
            assert await bridge.drain(timeout=5)
            assert len(bridge.outbox.dead_letters()) == 2
        (post,) = [r for r in rig.bigpanda.requests if r.method == "POST"]
        assert letter.payload in post.body, "the replayed payload was re-encoded"
        assert [a.alert["incident_identifier"] for a in rig.bigpanda.accepted] == [
            f"panther-{1:032x}"
        ]

    def test_invalid_alert_is_refused_with_a_reason(self, state, capsys) -> None:
        letter = state["letters"]["invalid_alert"]
        assert dlq(state, "replay", str(letter.id)) == 1
        err = capsys.readouterr().err
        assert f"dead letter {letter.id}: no payload to replay" in err
        assert "backfill" in err
        assert dlq(state, "list") == 0
        assert len(capsys.readouterr().out.splitlines()) == 4, "the refused letter was removed"

    def test_all_replays_what_it_can(self, state, capsys) -> None:
        assert dlq(state, "replay", "--all") == 1
        captured = capsys.readouterr()
        assert "replayed 2 dead letter(s)" in captured.out
        assert "no payload to replay" in captured.err
        outbox = Outbox.open(Path(str(state["config"])).parent / "bridge.db", exclusive=False)
        try:
            assert outbox.counts()["pending"] == 2
            assert [dl.reason for dl in outbox.dead_letters()] == ["invalid_alert"]
        finally:
            outbox.close()

    def test_needs_ids_or_all(self, state, capsys) -> None:
        assert dlq(state, "replay") == 2
        assert "--all" in capsys.readouterr().err


class TestPurge:
    """Purge deletes dead letters, all of them or only those older than a duration."""

    def test_older_than(self, state, capsys) -> None:
        assert dlq(state, "purge", "--older-than", "7d") == 0
        assert "purged 1 dead letter(s)" in capsys.readouterr().out
        dlq(state, "list")
        reasons = {row.split()[2] for row in capsys.readouterr().out.splitlines()[1:]}
        assert reasons == {"expired", "invalid_alert"}

    def test_everything(self, state, capsys) -> None:
        assert dlq(state, "purge") == 0
        assert "purged 3 dead letter(s)" in capsys.readouterr().out
        dlq(state, "list")
        assert capsys.readouterr().out.strip() == "no dead letters"

    def test_bad_duration(self, state, capsys) -> None:
        assert dlq(state, "purge", "--older-than", "soon") == 2
        assert capsys.readouterr().err.startswith("--older-than:")
