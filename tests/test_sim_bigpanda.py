"""The BigPanda simulator: enforces shared/api/BIGPANDA.md and misbehaves on request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
import pytest
from harness import wait_until

from bridge.sim import serve_app
from bridge.sim.bigpanda import BigPandaSimulator, parse_script, validate_alert

TOKEN = "sim-bigpanda-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP_KEY = "app-key-1"
NOW = 1_732_000_000


def alert(n: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid alert; keyword arguments override or (with None) remove fields."""
    base: dict[str, Any] = {
        "status": "critical",
        "host": "rule.aws-root-login",
        "check": "AWS root login",
        "timestamp": NOW + n,
        "incident_identifier": f"panther-{n}",
        "severity": "HIGH",
        "log_types": ["AWS.CloudTrail"],
        "event_count": 3,
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


@pytest.fixture
def sim() -> BigPandaSimulator:
    return BigPandaSimulator(token=TOKEN)


@pytest.fixture
async def url(sim: BigPandaSimulator) -> AsyncIterator[str]:
    async with serve_app(sim.app) as base:
        yield base


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        yield client


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: object,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """POST to the alerts endpoint; return the status, the parsed body (or None), the response."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers = {"Content-Type": "application/json", **AUTH, **(headers or {})}
    async with session.post(f"{url}/data/v2/alerts", data=data, headers=all_headers) as response:
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None, response


def batch(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"app_key": APP_KEY, "alerts": list(alerts)}


class TestValidateAlert:
    """validate_alert names the field of every rule BIGPANDA.md states."""

    def test_valid_alert_has_no_problems(self) -> None:
        assert validate_alert(alert()) == []
        assert validate_alert(alert(timestamp=None)) == []

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            ({"timestamp": 1_732_000_000_123}, "timestamp: must be an integer of epoch seconds"),
            ({"timestamp": "2024-11-19T07:06:40Z"}, "timestamp: must be an integer"),
            ({"timestamp": 1_732_000_000.5}, "timestamp: must be an integer"),
            ({"timestamp": True}, "timestamp: must be an integer"),
            ({"timestamp": -1}, "timestamp: must be an integer"),
            ({"status": None}, "status: "),
            ({"status": "open"}, "status: must be one of"),
            ({"host": None, "check": "x"}, "host: no primary property"),
            ({"host": ""}, "host: no primary property"),
            ({"primary_property": "rule_id"}, "primary_property: must name a present"),
            ({"secondary_property": "sensor"}, "secondary_property: must name a key"),
            ({"context": {"ip": "1.2.3.4"}}, "context: nested objects are not supported"),
            ({"ips": ["1.2.3.4", {"a": 1}]}, "ips[1]: nested objects are not supported"),
            ({"ips": [["1.2.3.4"]]}, "ips[0]: nested lists are not supported"),
            ({"Severity": "HIGH"}, "Severity: invalid tag name"),
            ({"1tag": "x"}, "1tag: invalid tag name"),
            ({"a" * 65: "x"}, f"{'a' * 65}: invalid tag name"),
            ({"description": "d" * 2049}, "description: 2049 characters, over the 2048"),
            ({"description": 5}, "description: must be a string"),
            ({"log_types": [str(i) for i in range(31)]}, "log_types: at most 30 items, got 31"),
            ({"score": 1.5}, "score: must be a string, an integer or a list"),
            ({"flag": False}, "flag: must be a string, an integer or a list"),
            ({"incident_identifier": ""}, "incident_identifier: must be a non-empty string"),
            ({"app_key": "k"}, "app_key: belongs at the top level"),
        ],
    )
    def test_rule_names_the_field(self, fields: dict[str, Any], expected: str) -> None:
        problems = validate_alert(alert(**fields))
        assert any(problem.startswith(expected) for problem in problems), problems

    def test_milliseconds_are_called_out(self) -> None:
        [problem] = validate_alert(alert(timestamp=1_732_000_000_123))
        assert problem == (
            "timestamp: must be an integer of epoch seconds, got 1732000000123 (milliseconds?)"
        )

    def test_null_is_rejected(self) -> None:
        assert validate_alert({**alert(), "severity": None}) == [
            "severity: null is not allowed: omit the key instead"
        ]
        assert validate_alert({**alert(), "timestamp": None})[0].startswith("timestamp: null")

    def test_not_an_object(self) -> None:
        assert validate_alert(["status", "ok"]) == ["alert: must be a JSON object, got array"]

    def test_primary_property_fallbacks(self) -> None:
        assert validate_alert(alert(host=None, service="svc")) == []
        assert validate_alert(alert(host=None, application="app")) == []
        assert validate_alert(alert(host=None, device="dev")) == []
        assert validate_alert(alert(host=None, primary_property="rule_id", rule_id="r1")) == []
        assert validate_alert(alert(host=None, primary_property="rule_id", rule_id="")) != []

    def test_tag_lists_of_strings_and_ints_are_fine(self) -> None:
        assert validate_alert(alert(mitre=["TA0001", 7], empty=[], count=0)) == []

    def test_strict_mode_rejects_what_bigpanda_would_truncate(self) -> None:
        long = "x" * 513
        assert validate_alert(alert(runbook=long)) == []
        assert validate_alert(alert(runbook="x" * 512), strict=True) == []
        assert validate_alert(alert(runbook=long), strict=True)[0].startswith(
            "runbook: 513 characters"
        )
        assert validate_alert(alert(refs=["ok", long]), strict=True)[0].startswith("refs[1]: 513")


class TestAccepting:
    """Valid alerts are stored once; exact resends are dropped with 204."""

    async def test_batch_is_accepted_and_recorded(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        status, body, _ = await post(session, url, batch(alert(1), alert(2)))
        assert status == 201
        assert body == {"status": "created", "accepted": 2, "duplicates": 0}
        assert [a.alert for a in sim.accepted] == [alert(1), alert(2)]
        assert {a.app_key for a in sim.accepted} == {APP_KEY}
        assert sim.alerts_for("panther-2") == [alert(2)]

    async def test_single_flat_alert(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        status, _, _ = await post(session, url, {"app_key": APP_KEY, **alert(1)})
        assert status == 201
        assert sim.accepted[0].alert == alert(1)

    async def test_exact_duplicate_is_204_and_not_stored_twice(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        assert (await post(session, url, batch(alert(1))))[0] == 201
        reordered = dict(reversed(list(alert(1).items())))  # same canonical JSON
        status, body, _ = await post(session, url, batch(reordered))
        assert (status, body) == (204, None)
        assert len(sim.accepted) == 1
        assert sim.duplicates == 1

    async def test_partly_duplicate_batch_is_201_with_counts(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        await post(session, url, batch(alert(1)))
        status, body, _ = await post(session, url, batch(alert(1), alert(2)))
        assert status == 201
        assert body == {"status": "created", "accepted": 1, "duplicates": 1}
        assert len(sim.accepted) == 2

    async def test_restamped_event_is_not_a_duplicate(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        await post(session, url, batch(alert(1)))
        status, _, _ = await post(session, url, batch(alert(1, timestamp=NOW + 99)))
        assert status == 201
        assert len(sim.alerts_for("panther-1")) == 2

    async def test_missing_timestamp_gets_receive_time(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        before = int(time.time())
        await post(session, url, batch(alert(1, timestamp=None)))
        stamped = sim.accepted[0].alert["timestamp"]
        assert isinstance(stamped, int)
        assert before <= stamped <= int(time.time())

    async def test_unknown_app_key(self, session: aiohttp.ClientSession) -> None:
        sim = BigPandaSimulator(token=TOKEN, app_keys=["known"])
        async with serve_app(sim.app) as url:
            status, body, _ = await post(session, url, batch(alert(1)))
        assert status == 400
        assert body["error"] == f"app_key: unknown app key {APP_KEY!r}"


class TestRejecting:
    """Any bad alert rejects the whole request with 400 naming alert index and field."""

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"timestamp": 1_732_000_000_123}, "timestamp"),
            ({"timestamp": "1732000000"}, "timestamp"),
            ({"status": None}, "status"),
            ({"status": "OPEN"}, "status"),
            ({"host": None}, "host"),
            ({"context": {"a": 1}}, "context"),
            ({"Bad Tag": "x"}, "Bad Tag"),
            ({"description": "d" * 3000}, "description"),
            ({"ips": list(range(40))}, "ips"),
        ],
    )
    async def test_bad_alert_in_batch_names_index_and_field(
        self,
        sim: BigPandaSimulator,
        url: str,
        session: aiohttp.ClientSession,
        fields: dict[str, Any],
        field: str,
    ) -> None:
        bad = alert(3, **fields)
        status, body, _ = await post(session, url, batch(alert(0), alert(1), alert(2), bad))
        assert status == 400
        assert body["status"] == "failure"
        assert body["error"].startswith(f"alerts[3].{field}: ")
        assert all(error.startswith("alerts[3].") for error in body["errors"])
        assert sim.accepted == []

    async def test_every_bad_alert_is_listed(
        self, url: str, session: aiohttp.ClientSession
    ) -> None:
        body = batch(alert(0, status="x"), alert(1), alert(2, timestamp=1.5))
        status, answer, _ = await post(session, url, body)
        assert status == 400
        assert [e.split(":")[0] for e in answer["errors"]] == [
            "alerts[0].status",
            "alerts[2].timestamp",
        ]

    async def test_non_strict_server_truncates_long_tags(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        status, _, _ = await post(session, url, batch(alert(1, runbook="r" * 600)))
        assert status == 201
        assert sim.accepted[0].alert["runbook"] == "r" * 512

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (b'{"app_key": "k", "alerts": [', "body: invalid JSON"),
            (b"[1, 2]", "body: must be a JSON object"),
            (orjson.dumps({"alerts": [alert()]}), "app_key: required"),
            (orjson.dumps({"app_key": "", "alerts": [alert()]}), "app_key: required"),
            (orjson.dumps(alert()), "app_key: required"),
            (orjson.dumps({"app_key": "k", "alerts": []}), "alerts: must not be empty"),
            (orjson.dumps({"app_key": "k", "alerts": {}}), "alerts: must be an array"),
            (
                orjson.dumps({"app_key": "k", "alerts": [{"app_key": "k", **alert()}]}),
                "alerts[0].app_key: belongs at the top level",
            ),
            (orjson.dumps({"app_key": "k", "alerts": [5]}), "alerts[0]: must be a JSON object"),
        ],
    )
    async def test_malformed_body(
        self,
        sim: BigPandaSimulator,
        url: str,
        session: aiohttp.ClientSession,
        body: bytes,
        expected: str,
    ) -> None:
        status, answer, _ = await post(session, url, body)
        assert status == 400
        assert answer["error"].startswith(expected), answer
        assert sim.accepted == []

    async def test_content_type_must_be_json(
        self, url: str, session: aiohttp.ClientSession
    ) -> None:
        status, answer, _ = await post(
            session, url, orjson.dumps(batch(alert())), {"Content-Type": "text/plain"}
        )
        assert status == 415
        assert answer["error"].startswith("Content-Type: must be application/json")


class TestAuth:
    """Authorization must be exactly `Bearer <token>` (BIGPANDA.md)."""

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({}, "missing header"),
            ({"Authorization": TOKEN}, "missing Bearer prefix"),
            ({"Authorization": f"bearer {TOKEN}"}, "missing Bearer prefix"),
            ({"Authorization": "Bearer wrong"}, "invalid token"),
        ],
    )
    async def test_bad_authorization_is_401(
        self,
        sim: BigPandaSimulator,
        url: str,
        session: aiohttp.ClientSession,
        headers: dict[str, str],
        expected: str,
    ) -> None:
        data = orjson.dumps(batch(alert()))
        all_headers = {"Content-Type": "application/json", **headers}
        async with session.post(f"{url}/data/v2/alerts", data=data, headers=all_headers) as resp:
            assert resp.status == 401
            body = await resp.json()
        assert body["status"] == "failure"
        assert expected in body["error"]
        assert sim.accepted == []

    async def test_unknown_path_is_404_json(self, url: str, session: aiohttp.ClientSession) -> None:
        async with session.get(f"{url}/data/v2/alerts", headers=AUTH) as resp:
            assert resp.status == 404
            assert (await resp.json())["status"] == "failure"
        async with session.post(f"{url}/nope", headers=AUTH) as resp:
            assert resp.status == 404


class TestFaults:
    """Scripted answers, outages and poison let tests drive the bridge's error paths."""

    async def test_scripted_sequence_then_normal(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        sim.script("500,429:Retry-After=2,503:Retry-After=1,408,201")
        seen = []
        for n in range(6):
            status, body, response = await post(session, url, batch(alert(n)))
            seen.append((status, response.headers.get("Retry-After")))
            if status >= 400:
                assert body["status"] == "failure"
        assert seen == [
            (500, None),
            (429, "2"),
            (503, "1"),
            (408, None),
            (201, None),
            (201, None),
        ]
        assert [a.alert["incident_identifier"] for a in sim.accepted] == ["panther-4", "panther-5"]
        assert [r.status for r in sim.requests] == [500, 429, 503, 408, 201, 201]
        assert all(r.alert_count == 1 for r in sim.requests)

    async def test_retry_after_http_date(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        sim.script("429:Retry-After=date:3")
        status, _, response = await post(session, url, batch(alert()))
        assert status == 429
        when = parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
        assert 1 <= when - time.time() <= 4

    def test_bad_script_is_refused_up_front(self, sim: BigPandaSimulator) -> None:
        for spec in ("600", "teapot", "429:Retry=2", "slow:x", "503:Retry-After=soon"):
            with pytest.raises(ValueError):
                sim.script(spec)

    async def test_outage(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        sim.outage(0.3, status=502)
        assert (await post(session, url, batch(alert(1))))[0] == 502
        assert (await post(session, url, batch(alert(1))))[0] == 502

        async def accepted() -> bool:
            return (await post(session, url, batch(alert(1))))[0] == 201

        await wait_until(accepted, 5, what="the end of the outage")
        statuses = [r.status for r in sim.requests]
        # Every answer during the outage was the outage's; the first 201 ended it for good.
        assert set(statuses[:-1]) == {502} and len(statuses) >= 3 and statuses[-1] == 201
        assert (await post(session, url, batch(alert(2))))[0] == 201

    async def test_poison_rejects_only_marked_alert(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        sim.poison("POISON")
        body = batch(alert(0), alert(1, check="POISON here"), alert(2))
        status, answer, _ = await post(session, url, body)
        assert status == 400
        assert answer["errors"] == ["alerts[1].check: poisoned by 'POISON'"]
        status, _, _ = await post(session, url, batch(alert(0), alert(2)))
        assert status == 201

    async def test_slow_and_latency(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        """A slow answer (scripted once, or `latency` on every request) is still unanswered in
        the simulator's log while a later quick request gets its answer."""
        sim.script("slow:1")
        slow = asyncio.create_task(post(session, url, batch(alert(1))))
        await wait_until(lambda: len(sim.requests) == 1, 5, what="the slow request")
        assert (await post(session, url, batch(alert(2))))[0] == 201  # the script is used up
        assert sim.requests[0].status == 0 and not slow.done()
        assert (await slow)[0] == 201
        assert [r.status for r in sim.requests] == [201, 201]
        sim.latency = 1.0
        delayed = asyncio.create_task(post(session, url, batch(alert(3))))
        await wait_until(lambda: len(sim.requests) == 3, 5, what="the delayed request")
        assert sim.requests[2].status == 0 and not delayed.done()
        assert (await delayed)[0] == 201

    async def test_reset_drops_the_connection(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        sim.script("reset")
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(session, url, batch(alert(1)))
        assert sim.accepted == []
        assert sim.requests[0].status == 0
        assert (await post(session, url, batch(alert(1))))[0] == 201

    async def test_html_200_processes_nothing(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        """`html`: a 200 with an HTML page, as a proxy or a wrong api_url answers."""
        sim.script("html")
        data = orjson.dumps(batch(alert(1)))
        headers = {"Content-Type": "application/json", **AUTH}
        async with session.post(f"{url}/data/v2/alerts", data=data, headers=headers) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            assert (await resp.text()).startswith("<!DOCTYPE html>")
        assert sim.accepted == []
        assert (await post(session, url, batch(alert(1))))[0] == 201

    async def test_star_repeats_a_token_forever(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        """`500,400*`: one 500, then every request a 400, whatever it carries."""
        sim.script("500,400*")
        statuses = [(await post(session, url, batch(alert(n))))[0] for n in range(5)]
        assert statuses == [500, 400, 400, 400, 400]
        assert sim.accepted == []

    def test_star_and_html_parse(self) -> None:
        (html, rejected) = parse_script("html, 400 *")
        assert (html.kind, html.repeat) == ("html", False)
        assert (rejected.kind, rejected.status, rejected.repeat) == ("status", 400, True)
        with pytest.raises(ValueError):
            parse_script("teapot*")


class TestJobs:
    """A 202 is "accepted, outcome pending": alerts count only once the job is done."""

    async def get_job(
        self, session: aiohttp.ClientSession, url: str, location: str
    ) -> dict[str, Any]:
        target = location if location.startswith("http") else f"{url}{location}"
        async with session.get(target, headers=AUTH) as response:
            assert response.status == 200
            return await response.json()

    async def jobs(
        self, sim: BigPandaSimulator, session: aiohttp.ClientSession, url: str,
        answers: str, steps: str,
    ) -> list[str]:
        """One single-alert batch per scripted 202 answer, its job going through `steps`;
        returns the jobs' Location headers."""
        sim.job_script(steps)
        sim.script(answers)
        locations = []
        for n, _ in enumerate(answers.split(",")):
            _, _, response = await post(session, url, batch(alert(n + 1)))
            locations.append(response.headers["Location"])
        return locations

    async def job_statuses(
        self, session: aiohttp.ClientSession, url: str, location: str, polls: int
    ) -> list[str]:
        return [(await self.get_job(session, url, location))["status"] for _ in range(polls)]

    async def test_job_progresses_to_done(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        sim.script("202")
        status, body, response = await post(session, url, batch(alert(1), alert(2)))
        assert status == 202
        assert body["status"] == "pending"
        location = response.headers["Location"]
        assert location == f"/resources/v2.0/jobs/{body['job_id']}"
        statuses = []
        for _ in range(4):
            job = await self.get_job(session, url, location)
            statuses.append(job["status"])
            if job["status"] != "done":
                assert sim.accepted == []
        assert statuses == ["pending", "started", "done", "done"]
        assert job["job_id"] == body["job_id"]
        assert isinstance(job["start_time"], int)
        assert isinstance(job["end_time"], int)
        assert len(sim.accepted) == 2

    async def test_failed_job_accepts_nothing(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        locations = await self.jobs(sim, session, url, "202abs,202", "pending,failed")
        assert locations[0].startswith(url)
        for location in locations:
            assert await self.job_statuses(session, url, location, 1) == ["pending"]
            job = await self.get_job(session, url, location)
            assert job["status"] == "failed"
            assert job["end_time"] is not None
        assert sim.accepted == []

    async def test_undocumented_status_and_unknown_job(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        (location,) = await self.jobs(sim, session, url, "202", "weird,done")
        assert await self.job_statuses(session, url, location, 2) == ["weird", "done"]
        assert len(sim.accepted) == 1
        async with session.get(f"{url}/resources/v2.0/jobs/nope", headers=AUTH) as resp:
            assert resp.status == 404
        async with session.get(f"{url}{location}") as resp:
            assert resp.status == 401

    async def test_job_404_forever(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        """The job step `404`: the Location of every job answers 404, and nothing is accepted."""
        sim.job_script("404")
        sim.script("202*")
        for n in range(2):
            status, _, response = await post(session, url, batch(alert(n)))
            assert status == 202
            for _ in range(3):
                target = f"{url}{response.headers['Location']}"
                async with session.get(target, headers=AUTH) as resp:
                    assert resp.status == 404
                    assert "no such job" in (await resp.json())["error"]
        assert sim.accepted == []

    async def test_invalid_batch_gets_400_not_a_job(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        sim.script("202")
        status, _, _ = await post(session, url, batch(alert(1, status="bad")))
        assert status == 400


class TestRequestLog:
    """Every request is logged with its raw body and a redacted Authorization header."""

    async def test_body_is_byte_exact_and_token_redacted(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        raw = b'{"app_key":"app-key-1","alerts":[ {"status":"ok","host":"h","timestamp":5} ]}'
        status, _, _ = await post(session, url, raw, {"X-Trace": "t1"})
        assert status == 201
        [record] = sim.requests
        assert record.body == raw
        assert (record.method, record.path, record.status, record.alert_count) == (
            "POST",
            "/data/v2/alerts",
            201,
            1,
        )
        assert record.headers["Authorization"] == "Bearer ***"
        assert record.headers["X-Trace"] == "t1"
        assert TOKEN not in repr(record)

    async def test_rejected_and_unauthorized_requests_are_logged(
        self, sim: BigPandaSimulator, url: str, session: aiohttp.ClientSession
    ) -> None:
        await post(session, url, batch(alert(1)), {"Authorization": TOKEN})
        await post(session, url, b"{")
        assert [r.status for r in sim.requests] == [401, 400]
        assert sim.requests[0].headers["Authorization"] == "***"
        assert sim.requests[0].at <= sim.requests[1].at
