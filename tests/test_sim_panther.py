"""The Panther simulator: wire format of shared/api/, keyset pagination, faults, generated data.

One file, as `bridge/sim/panther.py` is one module: Panther's REST API as the bridge meets it
(listings, alerts, catalog endpoints, faults), which every integration test stands on. Its size
follows the API's, and splitting it by endpoint would scatter the shared fixtures and spec checks.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from harness import wait_until
from jsonschema import Draft202012Validator
from shared_docs import SPEC_URN, panther_spec, shared_json, spec_registry

from bridge.sim import serve_app
from bridge.sim.panther import (
    NS,
    PantherSimulator,
    RequestRecord,
    format_instant,
    parse_instant_ns,
    parse_script,
    serve,
)

HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def sim() -> PantherSimulator:
    return PantherSimulator(seed=7)


@pytest.fixture
async def client(sim: PantherSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with (
        serve_app(sim.app) as url,
        aiohttp.ClientSession(url, headers={"X-API-Key": sim.token}) as session,
    ):
        yield session


async def get(session: aiohttp.ClientSession, path: str, **params: Any) -> tuple[int, Any]:
    async with session.get(path, params=_params(params)) as response:
        return response.status, await response.json(content_type=None)


def _params(params: dict[str, Any]) -> list[tuple[str, str]]:
    """Keyword params to query pairs: `status=["OPEN", "TRIAGED"]` repeats the key, `_` -> `-`."""
    pairs = []
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((name.replace("_", "-"), str(item)))
    return pairs


async def list_all(session: aiohttp.ClientSession, path: str = "/alerts", **params: Any) -> list:
    """Follow `next` to the end, as the bridge does; fails on a repeated cursor."""
    items, cursor, seen = [], None, set()
    while True:
        page_params = dict(params, cursor=cursor) if cursor else params
        status, body = await get(session, path, **page_params)
        assert status == 200, body
        items.extend(body["results"])
        cursor = body["next"]
        if not cursor:
            return items
        assert cursor not in seen
        seen.add(cursor)


def sort_key(alert: dict) -> tuple[int, str]:
    return parse_instant_ns(alert["createdAt"]), alert["id"]


def load_example(name: str) -> Any:
    return shared_json(f"api/examples/{name}")


# --- the OpenAPI spec, with its two known flaws patched (shared/api/PANTHER.md) ---------------


@pytest.fixture(scope="module")
def spec() -> dict:
    return panther_spec()


def validator_for(spec: dict, schema_name: str, *, patched: bool = True) -> Draft202012Validator:
    registry = spec_registry(spec, patched=patched)
    ref = f"{SPEC_URN}#/components/schemas/{schema_name}"
    return Draft202012Validator({"$ref": ref}, registry=registry)


def assert_valid(validator: Draft202012Validator, instance: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]
    assert not errors, errors


# --- tests ----------------------------------------------------------------------------------


class TestAuth:
    """X-API-Key is checked first; every request is recorded."""

    async def test_missing_or_wrong_key_is_401_json(self, sim: PantherSimulator) -> None:
        async with serve_app(sim.app) as url, aiohttp.ClientSession(url) as session:
            for headers in ({}, {"X-API-Key": "wrong"}):
                async with session.get("/alerts", headers=headers) as response:
                    assert response.status == 401
                    assert isinstance((await response.json())["message"], str)

    async def test_auth_comes_before_faults(self, sim: PantherSimulator, client) -> None:
        sim.script("503")
        async with client.get("/alerts", headers={"X-API-Key": "wrong"}) as response:
            assert response.status == 401
        assert (await get(client, "/alerts"))[0] == 503  # the fault waited for an authorised call

    async def test_requests_are_recorded_in_order(self, sim: PantherSimulator, client) -> None:
        before = time.monotonic()
        await get(client, "/alerts", status=["OPEN", "TRIAGED"], limit=5)
        await get(client, "/alerts/nope")
        await get(client, "/nowhere")
        first, second, third = sim.requests
        assert isinstance(first, RequestRecord)
        assert (first.method, first.path, first.status) == ("GET", "/alerts", 200)
        assert first.query == [("status", "OPEN"), ("status", "TRIAGED"), ("limit", "5")]
        assert before <= first.at <= second.at <= third.at
        assert (second.status, third.status) == (404, 404)

    async def test_unknown_route_answers_json(self, client) -> None:
        status, body = await get(client, "/nowhere")
        assert status == 404 and "message" in body


class TestListAlerts:
    """GET /alerts: filters, order, limits and keyset cursors as PANTHER.md describes them."""

    async def test_defaults_desc_25_and_next(self, sim: PantherSimulator, client) -> None:
        sim.generate(30)
        status, body = await get(client, "/alerts")
        assert status == 200
        assert len(body["results"]) == 25 and body["next"]
        keys = [sort_key(a) for a in body["results"]]
        assert keys == sorted(keys, reverse=True)
        status, last = await get(client, "/alerts", cursor=body["next"])
        assert len(last["results"]) == 5 and last["next"] is None

    @pytest.mark.parametrize("sort_dir", ["asc", "desc"])
    async def test_paginates_every_alert_once_in_order(self, sim, client, sort_dir) -> None:
        sim.generate(437, spacing=0.5)
        alerts = await list_all(client, limit=50, sort_dir=sort_dir)
        assert len(alerts) == 437 == len({a["id"] for a in alerts})
        keys = [sort_key(a) for a in alerts]
        assert keys == sorted(keys, reverse=sort_dir == "desc")

    async def test_empty_listing(self, client) -> None:
        assert await get(client, "/alerts") == (200, {"results": [], "next": None})

    async def test_exact_page_boundary_has_no_empty_extra_page(self, sim, client) -> None:
        sim.generate(50)
        assert (await get(client, "/alerts", limit=50))[1]["next"] is None

    async def test_orders_by_instant_not_by_text(self, sim: PantherSimulator, client) -> None:
        late = sim.add_alert(createdAt="2026-01-01T00:00:00.5Z")
        middle = sim.add_alert(createdAt="2026-01-01T00:00:00.400+00:00")
        early = sim.add_alert(createdAt="2026-01-01T01:00:00+01:00")
        body = (await get(client, "/alerts", created_after="2025-12-31", sort_dir="asc"))[1]
        assert [a["id"] for a in body["results"]] == [early["id"], middle["id"], late["id"]]

    async def test_ties_on_created_at_are_ordered_by_id(self, sim, client) -> None:
        moment = datetime(2026, 3, 1, tzinfo=UTC)
        ids = sorted(sim.add_alert(createdAt=moment)["id"] for _ in range(7))
        alerts = await list_all(client, limit=2, created_after="2026-02-01", sort_dir="asc")
        assert [a["id"] for a in alerts] == ids

    @pytest.mark.parametrize(
        ("limit", "message"),
        [
            ("51", "limit must be less than or equal to 50"),
            ("0", "limit must be greater than or equal to 1"),
            ("-3", "limit must be greater than or equal to 1"),
            ("ten", None),
            ("2.5", None),
        ],
    )
    async def test_bad_limit_is_400(self, client, limit: str, message: str | None) -> None:
        status, body = await get(client, "/alerts", limit=limit)
        assert status == 400
        if message is not None:
            assert body == {"message": message}
        else:
            assert "limit" in body["message"]

    async def test_limit_400_body_matches_the_example(self, client) -> None:
        assert (await get(client, "/alerts", limit=51))[1] == load_example("panther-error-400.json")

    @pytest.mark.parametrize("cursor", ["garbage", "eyJwYWdlIjoyfQ==", "!!!"])
    async def test_foreign_cursor_is_400(self, client, cursor: str) -> None:
        status, body = await get(client, "/alerts", cursor=cursor)
        assert status == 400 and "cursor" in body["message"]

    async def test_tampered_cursor_is_400(self, sim: PantherSimulator, client) -> None:
        sim.generate(3)
        cursor = (await get(client, "/alerts", limit=1))[1]["next"]
        tampered = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]
        assert (await get(client, "/alerts", cursor=tampered))[0] == 400

    async def test_cursor_of_another_listing_is_400(self, client) -> None:
        cursor = (await get(client, "/rules", limit=1))[1]["next"]
        assert (await get(client, "/alerts", cursor=cursor))[0] == 400

    async def test_cursor_of_a_restarted_simulator_with_same_seed_works(self) -> None:
        first, second = PantherSimulator(seed=3), PantherSimulator(seed=3)
        start = datetime(2026, 5, 1, tzinfo=UTC)
        first.generate(5, start=start)
        second.generate(5, start=start)
        async with serve_app(first.app) as url, aiohttp.ClientSession(url) as session:
            page = await get_with(session, first.token, limit=2, created_after="2026-04-01")
        async with serve_app(second.app) as url, aiohttp.ClientSession(url) as session:
            rest = await get_with(session, second.token, cursor=page["next"])
        assert [a["id"] for a in page["results"] + rest["results"]] == [
            a["id"] for a in reversed(list(second.alerts.values()))
        ]

    async def test_type_selects_alerts_detection_errors_or_system_errors(self, sim, client) -> None:
        for alert_type in ("RULE", "SCHEDULED_RULE", "POLICY", "RULE_ERROR", "POLICY_ERROR",
                           "SCHEDULED_RULE_ERROR", "SYSTEM_ERROR"):
            sim.add_alert(type=alert_type)
        types = {}
        for list_type in ("ALERT", "DETECTION_ERROR", "SYSTEM_ERROR"):
            types[list_type] = {a["type"] for a in await list_all(client, type=list_type)}
        assert types == {
            "ALERT": {"RULE", "SCHEDULED_RULE", "POLICY"},
            "DETECTION_ERROR": {"RULE_ERROR", "POLICY_ERROR", "SCHEDULED_RULE_ERROR"},
            "SYSTEM_ERROR": {"SYSTEM_ERROR"},
        }
        assert {a["type"] for a in await list_all(client)} == types["ALERT"]

    @pytest.mark.parametrize(
        ("name", "value"),
        [("type", "BOGUS"), ("sort-dir", "up"), ("status", "DONE"), ("severity", "URGENT"),
         ("created-after", "yesterday"), ("created-before", "2026-13-01T00:00:00Z"),
         ("event-count-min", "many")],
    )
    async def test_invalid_parameter_is_400(self, client, name: str, value: str) -> None:
        async with client.get("/alerts", params={name: value}) as response:
            assert response.status == 400
            assert name in (await response.json())["message"]

    async def test_created_after_inclusive_before_exclusive(self, sim, client) -> None:
        start = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
        alerts = sim.generate(5, start=start, spacing=1.0)
        ns = [parse_instant_ns(a["createdAt"]) for a in alerts]
        after, before = format_instant(ns[1]), format_instant(ns[3], "offset")
        listed = await list_all(client, created_after=after, created_before=before)
        assert {a["id"] for a in listed} == {alerts[1]["id"], alerts[2]["id"]}

    async def test_unix_seconds_date_and_offsets_are_accepted(self, sim, client) -> None:
        alert = sim.add_alert(createdAt=datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC))
        epoch = int(datetime(2026, 6, 1, 12, tzinfo=UTC).timestamp())
        for after, before in [
            (str(epoch), str(epoch + 1)),
            (f"{epoch - 0.5}", f"{epoch}.000000001"),
            ("2026-06-01", "2026-06-02"),
            ("2026-06", "2026-07"),
            ("2026-06-01T14:00:00+02:00", "2026-06-01T08:00:00.000000001-04:00"),
        ]:
            listed = await list_all(client, created_after=after, created_before=before)
            assert [a["id"] for a in listed] == [alert["id"]], (after, before)

    async def test_default_window_is_the_last_30_days(self, sim: PantherSimulator, client) -> None:
        now = datetime.now(UTC)
        recent = sim.add_alert(createdAt=now - timedelta(days=29, hours=23))
        sim.add_alert(createdAt=now - timedelta(days=30, minutes=1))
        assert [a["id"] for a in await list_all(client)] == [recent["id"]]

    async def test_filters_combine_and_repeat(self, sim: PantherSimulator, client) -> None:
        sim.generate(300)
        for i, alert_id in enumerate(list(sim.alerts)[:60]):
            sim.set_status(alert_id, ("CLOSED", "TRIAGED")[i % 2])
        wanted = {
            a["id"]
            for a in sim.alerts.values()
            if a["status"] in ("OPEN", "CLOSED") and a["severity"] in ("HIGH", "CRITICAL")
        }
        listed = await list_all(
            client, status=["OPEN", "CLOSED"], severity=["HIGH", "CRITICAL"], limit=7
        )
        assert {a["id"] for a in listed} == wanted and len(listed) == len(wanted)

    async def test_detection_and_log_type_filters(self, sim: PantherSimulator, client) -> None:
        sim.generate(200)
        by_detection = await list_all(client, detection_id="Okta.AdminRoleAssigned")
        assert by_detection and {a["detection"]["id"] for a in by_detection} == {
            "Okta.AdminRoleAssigned"
        }
        okta = await list_all(client, log_type="Okta.SystemLog")
        assert {a["detection"]["id"] for a in okta} == {
            "Okta.AdminRoleAssigned", "Okta.BruteForceLogins"
        }
        both = await list_all(client, log_type=["Okta.SystemLog", "GitHub.Audit"])
        assert len(both) == len(okta) + sum(
            a["detection"]["id"] == "GitHub.Repo.MadePublic" for a in sim.alerts.values()
        )
        assert all("logTypes" not in a for a in both)  # hidden, not served

    async def test_other_spec_filters(self, sim: PantherSimulator, client) -> None:
        sim.generate(150)
        target = sim.add_alert(title="Quite Unique Title", eventCount=999)
        assert [a["id"] for a in await list_all(client, name_contains="unique title")] == [
            target["id"]
        ]
        heavy = await list_all(client, event_count_min=999, event_count_max=999)
        assert [a["id"] for a in heavy] == [target["id"]]
        policies = await list_all(client, sub_type="POLICY")
        assert policies and {a["type"] for a in policies} == {"POLICY"}
        buckets = await list_all(client, resource_type="AWS.S3.Bucket")
        assert {a["detection"]["id"] for a in buckets} == {"AWS.S3.Bucket.PublicRead"}

    async def test_cursor_carries_the_filters(self, sim: PantherSimulator, client) -> None:
        sim.generate(60, severity="LOW")
        sim.generate(60, severity="HIGH")
        first = (await get(client, "/alerts", severity="LOW", limit=50))[1]
        rest = (await get(client, "/alerts", cursor=first["next"], limit=50))[1]
        assert {a["severity"] for a in first["results"] + rest["results"]} == {"LOW"}
        assert len(first["results"]) + len(rest["results"]) == 60 and rest["next"] is None

    @pytest.mark.parametrize("sort_dir", ["asc", "desc"])
    async def test_inserts_between_pages_neither_shift_nor_repeat(self, sim, client, sort_dir):
        """Keyset pagination: alerts created or late-indexed between pages do not disturb it."""
        now = datetime.now(UTC)
        original = sim.generate(100, start=now - timedelta(minutes=10), spacing=1.0)
        listed, cursor = [], None
        while True:
            params = {"cursor": cursor} if cursor else {"sort_dir": sort_dir, "limit": 10}
            body = (await get(client, "/alerts", **params))[1]
            listed.extend(body["results"])
            # a brand-new alert, and a late one right in the middle of the window
            sim.add_alert()
            sim.add_alert(createdAt=now - timedelta(minutes=10) + timedelta(seconds=50.5))
            cursor = body["next"]
            if not cursor:
                break
        ids = [a["id"] for a in listed]
        assert len(ids) == len(set(ids))
        assert {a["id"] for a in original} <= set(ids)
        keys = [sort_key(a) for a in listed]
        assert keys == sorted(keys, reverse=sort_dir == "desc")

    async def test_late_alert_is_visible_to_a_listing_covering_it(self, sim, client) -> None:
        sim.generate(10)
        first = await list_all(client)
        late = sim.add_alert(createdAt=datetime.now(UTC) - timedelta(hours=2))
        second = await list_all(client)
        assert late["id"] not in {a["id"] for a in first}
        assert late["id"] in {a["id"] for a in second}
        window = await list_all(
            client, created_after=format_instant(parse_instant_ns(late["createdAt"]))
        )
        assert late["id"] in {a["id"] for a in window}

    async def test_twenty_thousand_alerts_in_pages_of_fifty(self, sim, client) -> None:
        # How fast is the benchmark's business (bench/), not a test's: this checks the paging.
        sim.generate(20_000, spacing=0.1)
        alerts = await list_all(client, limit=50, sort_dir="asc")
        assert len(alerts) == 20_000 == len({a["id"] for a in alerts})


async def get_with(session: aiohttp.ClientSession, token: str, **params: Any) -> Any:
    async with session.get(
        "/alerts", params=_params(params), headers={"X-API-Key": token}
    ) as response:
        assert response.status == 200
        return await response.json()


class TestGetAlert:
    """GET /alerts/{id}: the stored alert, or a JSON 404."""

    async def test_found(self, sim: PantherSimulator, client) -> None:
        alert = sim.add_alert()
        assert await get(client, f"/alerts/{alert['id']}") == (200, alert)

    async def test_not_found(self, client) -> None:
        assert await get(client, "/alerts/0123") == (404, {"message": "alert not found"})


class TestStatusChanges:
    """set_status and PATCH move alerts between status filters and name who changed them."""

    async def test_set_status_is_seen_by_filters_and_get(self, sim, client) -> None:
        alerts = sim.generate(20)
        sim.set_status(alerts[3]["id"], "TRIAGED", by="analyst-1")
        sim.set_status(alerts[5]["id"], "RESOLVED")
        sim.set_status(alerts[5]["id"], "CLOSED", by="api-token-ci")
        changed = await list_all(client, status=["TRIAGED", "RESOLVED", "CLOSED"])
        assert {a["id"]: a["status"] for a in changed} == {
            alerts[3]["id"]: "TRIAGED", alerts[5]["id"]: "CLOSED"
        }
        assert len(await list_all(client, status="OPEN")) == 18
        body = (await get(client, f"/alerts/{alerts[5]['id']}"))[1]
        assert body["updatedBy"] == {"id": "api-token-ci", "type": "api-token"}
        assert sim.alerts[alerts[3]["id"]]["updatedBy"] == {"id": "analyst-1", "type": "user"}

    def test_set_status_rejects_unknown(self, sim: PantherSimulator) -> None:
        alert = sim.add_alert()
        with pytest.raises(ValueError, match="status"):
            sim.set_status(alert["id"], "DONE")
        with pytest.raises(KeyError):
            sim.set_status("missing", "OPEN")

    async def test_patch_alerts(self, sim: PantherSimulator, client) -> None:
        a, b = sim.generate(2)
        async with client.patch("/alerts", json={"ids": [a["id"], b["id"]],
                                                 "status": "RESOLVED"}) as response:
            assert response.status == 204
        async with client.patch(f"/alerts/{a['id']}", json={"assignee": "u-1"}) as response:
            assert response.status == 200
        async with client.patch("/alerts/nope", json={"status": "OPEN"}) as response:
            assert response.status == 404
        assert len(await list_all(client, status="RESOLVED")) == 2
        assert sim.alerts[a["id"]]["assignee"] == {"id": "u-1", "type": "user"}

    def test_non_open_status_override_has_updated_by(self, sim: PantherSimulator) -> None:
        assert sim.add_alert(status="TRIAGED")["updatedBy"]["type"] == "user"


class TestGeneratedAlerts:
    """Generated alerts are realistic, valid against the spec (flaws patched) and reproducible."""

    def test_validate_against_patched_spec(self, spec: dict) -> None:
        validator = validator_for(spec, "AlertAPI.Alert")
        sim = PantherSimulator(seed=11)
        alerts = sim.generate(500)
        alerts += [sim.add_alert(type=t) for t in ("RULE_ERROR", "SYSTEM_ERROR", "POLICY_ERROR")]
        alerts += [sim.add_alert(status=s) for s in ("TRIAGED", "RESOLVED", "CLOSED")]
        for alert in alerts:
            assert_valid(validator, alert)

    @pytest.mark.parametrize(
        "name",
        ["panther-alert-rule.json", "panther-alert-scheduled-rule.json",
         "panther-alert-policy.json", "panther-alert-detection-error.json",
         "panther-alert-system-error.json"],
    )
    def test_example_alerts_validate_too(self, spec: dict, name: str) -> None:
        assert_valid(validator_for(spec, "AlertAPI.Alert"), load_example(name))

    def test_example_pages_validate_as_list_responses(self, spec: dict) -> None:
        validator = validator_for(spec, "AlertAPI.ListResp")
        for name in ("panther-list-alerts-page.json", "panther-list-alerts-last-page.json"):
            assert_valid(validator, load_example(name))

    def test_unpatched_spec_rejects_real_payloads(self, spec: dict) -> None:
        """Guards the patch: without it the examples fail, so the checks above mean something."""
        strict = validator_for(spec, "AlertAPI.Alert", patched=False)
        assert not strict.is_valid(load_example("panther-alert-policy.json"))  # nulls
        assert not strict.is_valid(load_example("panther-alert-scheduled-rule.json"))  # id enum

    async def test_served_pages_validate(self, spec: dict, sim: PantherSimulator, client) -> None:
        sim.generate(60)
        validator = validator_for(spec, "AlertAPI.ListResp")
        for params in ({}, {"limit": 50}, {"type": "SYSTEM_ERROR"}):
            assert_valid(validator, (await get(client, "/alerts", **params))[1])

    def test_same_seed_same_alerts(self) -> None:
        start = datetime(2026, 4, 1, tzinfo=UTC)
        first = PantherSimulator(seed=5).generate(50, start=start)
        assert first == PantherSimulator(seed=5).generate(50, start=start)
        assert first != PantherSimulator(seed=6).generate(50, start=start)

    def test_shape_and_variety(self) -> None:
        alerts = PantherSimulator(seed=1).generate(600)
        assert all(HEX32.fullmatch(a["id"]) for a in alerts)
        assert len({a["id"] for a in alerts}) == 600
        assert set(Counter(a["severity"] for a in alerts)) == {
            "CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"
        }
        assert {a["status"] for a in alerts} == {"OPEN"}
        assert {a["type"] for a in alerts} == {"RULE", "SCHEDULED_RULE", "POLICY"}
        created = [a["createdAt"] for a in alerts]
        nano = [c for c in created if re.search(r"\.\d{7,9}Z$", c)]
        milli = [c for c in created if re.search(r"\.\d{3}Z$", c)]
        offset = [c for c in created if c.endswith("+00:00")]
        assert len(nano) > len(created) / 2 and milli and offset
        runbooks = [a.get("runbook") for a in alerts]
        assert None in runbooks and "" in runbooks and any(runbooks)
        assert any(isinstance(a.get("context"), dict) and any(
            isinstance(v, dict | list) for v in a["context"].values()) for a in alerts)
        assert any(a.get("assignee") for a in alerts) and any(
            a.get("assignee") is None for a in alerts)
        assert all(a["systemError"] is None for a in alerts)
        assert all(isinstance(a["deliveries"], list) for a in alerts)

    def test_event_times_precede_created(self) -> None:
        for alert in PantherSimulator(seed=2).generate(300):
            created = parse_instant_ns(alert["createdAt"])
            first, last = alert.get("firstEventOccurredAt"), alert.get("lastReceivedEventAt")
            if first is None:
                assert alert["type"] == "POLICY" and last is None
                continue
            assert parse_instant_ns(first) <= parse_instant_ns(last) <= created

    def test_created_at_text_is_exactly_the_sorted_instant(self, sim: PantherSimulator) -> None:
        sim.generate(200)
        sim.add_alert(createdAt="2026-02-03T04:05:06.123456789-07:00")
        for alert_id, alert in sim.alerts.items():
            assert sim._hidden[alert_id].key == (parse_instant_ns(alert["createdAt"]), alert_id)

    def test_generate_spacing_and_explicit_instants(self, sim: PantherSimulator) -> None:
        start = datetime(2026, 7, 1, 8, 30, 0, 250001, tzinfo=UTC)
        alerts = sim.generate(4, start=start, spacing=2.5)
        start_ns = int(start.timestamp()) * NS + 250001 * 1000
        assert [parse_instant_ns(a["createdAt"]) for a in alerts] == [
            start_ns + i * 2_500_000_000 for i in range(4)
        ]
        text = sim.add_alert(createdAt="2026-07-01T10:00:00.5+02:00")["createdAt"]
        assert text == "2026-07-01T10:00:00.5+02:00"
        assert parse_instant_ns(sim.add_alert(createdAt=1_700_000_000.25)["createdAt"]) == (
            1_700_000_000_250_000_000
        )

    def test_default_generate_ends_before_now_in_order(self, sim: PantherSimulator) -> None:
        before = time.time_ns()
        alerts = sim.generate(100, spacing=2.0)
        created = [parse_instant_ns(a["createdAt"]) for a in alerts]
        assert created == sorted(created)
        assert before - 201 * NS < created[0] and created[-1] <= before

    def test_overrides(self, sim: PantherSimulator) -> None:
        alert = sim.add_alert(
            status="RESOLVED", severity="INFO", title="t", runbook=None, extraField=1
        )
        assert (alert["status"], alert["severity"], alert["title"]) == ("RESOLVED", "INFO", "t")
        assert alert["runbook"] is None and alert["extraField"] == 1
        assert sim.alerts[alert["id"]] is alert
        fixed = sim.add_alert(id="f" * 32)
        assert fixed["id"] == "f" * 32
        with pytest.raises(ValueError, match="exists"):
            sim.add_alert(id="f" * 32)
        with pytest.raises(ValueError, match="status"):
            sim.add_alert(status="DONE")

    def test_detection_and_type_agree_with_the_catalog(self, sim: PantherSimulator) -> None:
        kinds = {"RULE": ("rules", "simple-rules"), "SCHEDULED_RULE": ("scheduled-rules",),
                 "POLICY": ("policies",)}
        for alert in sim.generate(200):
            detection = alert["detection"]
            assert detection["type"] == alert["type"]
            assert any(detection["id"] in sim.catalog[k] for k in kinds[alert["type"]])
        assert sim.add_alert(type="POLICY")["detection"]["id"] in sim.catalog["policies"]
        rule = sim.add_alert(detection="AWS.CloudTrail.UnusedRegion")
        assert rule["type"] == "SCHEDULED_RULE"
        assert rule["detection"] == {"id": "AWS.CloudTrail.UnusedRegion", "type": "SCHEDULED_RULE"}
        gone = sim.add_alert(detection={"id": "Deleted.Rule", "type": "RULE"})
        assert gone["type"] == "RULE" and gone["title"]
        assert sim.add_alert(detection=None)["detection"] is None

    def test_error_alerts_are_sparse(self, sim: PantherSimulator) -> None:
        error = sim.add_alert(type="RULE_ERROR", detection="Okta.AdminRoleAssigned")
        assert error["detection"] == {"id": "Okta.AdminRoleAssigned", "type": "RULE"}
        assert error["title"].endswith("in Okta.AdminRoleAssigned")
        system = sim.add_alert(type="SYSTEM_ERROR")
        assert system["detection"] is None and system["systemError"]["type"]


class TestCatalog:
    """Detections and saved queries: the example objects verbatim, paginated, addable."""

    @pytest.mark.parametrize(
        ("path", "example"),
        [("/rules", "panther-rule.json"), ("/scheduled-rules", "panther-scheduled-rule.json"),
         ("/policies", "panther-policy.json"), ("/queries", "panther-query.json")],
    )
    async def test_examples_are_served_verbatim(self, client, path: str, example: str) -> None:
        obj = load_example(example)
        assert await get(client, f"{path}/{obj['id']}") == (200, obj)
        assert obj in await list_all(client, path)

    async def test_lists_are_populated(self, client) -> None:
        sizes = {}
        for path in ("/rules", "/scheduled-rules", "/policies", "/simple-rules", "/queries"):
            status, body = await get(client, path)
            assert status == 200 and body["next"] is None
            sizes[path] = len(body["results"])
        assert sizes["/simple-rules"] >= 1 and sizes["/queries"] >= 2
        assert sum(sizes.values()) - sizes["/queries"] >= 10

    async def test_scheduled_rules_name_existing_queries(self, client) -> None:
        names = {q["name"] for q in await list_all(client, "/queries")}
        for rule in await list_all(client, "/scheduled-rules"):
            assert rule["scheduledQueries"] and set(rule["scheduledQueries"]) <= names

    async def test_paginates_with_limit(self, client) -> None:
        everything = (await get(client, "/rules"))[1]["results"]
        paged = await list_all(client, "/rules", limit=2)
        assert paged == everything and len(paged) >= 4
        assert (await get(client, "/rules", limit=0))[0] == 400
        assert (await get(client, "/rules", cursor="nonsense"))[0] == 400

    async def test_unknown_id_is_404(self, client) -> None:
        for path in ("/rules", "/scheduled-rules", "/policies", "/simple-rules", "/queries"):
            status, body = await get(client, f"{path}/No.Such.Thing")
            assert status == 404 and "not found" in body["message"]

    async def test_add_and_remove(self, sim: PantherSimulator, client) -> None:
        rule = {"id": "Custom.Rule", "displayName": "Custom Rule", "severity": "LOW",
                "logTypes": ["Custom.Logs"], "enabled": True}
        sim.add_detection("rules", rule)
        assert await get(client, "/rules/Custom.Rule") == (200, rule)
        alert = sim.add_alert(detection="Custom.Rule")
        assert alert["title"].startswith("Custom Rule")
        assert [a["id"] for a in await list_all(client, log_type="Custom.Logs")] == [alert["id"]]
        sim.remove_detection("rules", "Custom.Rule")
        assert (await get(client, "/rules/Custom.Rule"))[0] == 404
        with pytest.raises(ValueError):
            sim.add_detection("macros", rule)

    def test_catalog_validates_against_the_spec(self, spec: dict, sim: PantherSimulator) -> None:
        schemas = {"rules": "RuleAPI.Rule", "scheduled-rules": "ScheduledRuleAPI.ScheduledRule",
                   "policies": "PolicyAPI.Policy", "simple-rules": "SimpleRuleAPI.SimpleRule",
                   "queries": "QueryAPI.Query"}
        for kind, schema in schemas.items():
            validator = validator_for(spec, schema)
            for obj in sim.catalog[kind].values():
                assert_valid(validator, obj)


class TestFaults:
    """script(): each token answers one matching request, then service is normal again."""

    @pytest.mark.parametrize("code", [400, 401, 403, 404, 429, 500, 502, 503, 504])
    async def test_status_codes_with_json_bodies(self, sim, client, code: int) -> None:
        sim.generate(2)
        sim.script(str(code))
        status, body = await get(client, "/alerts")
        assert status == code and isinstance(body["message"], str)
        status, body = await get(client, "/alerts")
        assert status == 200 and len(body["results"]) == 2

    async def test_retry_after_header(self, sim: PantherSimulator, client) -> None:
        sim.script("429:Retry-After=2, 503:Retry-After=1")
        for code, after in ((429, "2"), (503, "1")):
            async with client.get("/alerts") as response:
                assert (response.status, response.headers["Retry-After"]) == (code, after)

    async def test_html_badjson_notlist(self, sim: PantherSimulator, client) -> None:
        sim.script("html,badjson,notlist")
        async with client.get("/alerts") as response:
            assert response.status == 502 and response.content_type == "text/html"
            assert await response.text() == "<html><body>Bad Gateway</body></html>"
        async with client.get("/alerts") as response:
            assert response.status == 200
            with pytest.raises(ValueError):
                json.loads(await response.text())
        assert await get(client, "/alerts") == (200, {"results": {"oops": 1}, "next": None})

    async def test_slow_then_ok_in_order(self, sim: PantherSimulator, client) -> None:
        sim.script("slow:1,ok,500")
        slow = asyncio.create_task(get(client, "/alerts"))
        await wait_until(lambda: len(sim.requests) == 1, 5, what="the slow request")
        assert (await get(client, "/alerts"))[0] == 200  # answered while the slow one waits
        assert not slow.done()
        assert (await slow)[0] == 200
        assert (await get(client, "/alerts"))[0] == 500
        assert (await get(client, "/alerts"))[0] == 200
        assert [r.status for r in sim.requests] == [200, 200, 500, 200]

    async def test_only_matching_paths_consume_tokens(self, sim, client) -> None:
        alert = sim.add_alert()
        sim.script("503", path=f"/alerts/{alert['id']}")
        sim.script("500", path="/rules")
        assert (await get(client, "/alerts"))[0] == 200
        assert (await get(client, "/policies"))[0] == 200
        assert (await get(client, f"/alerts/{alert['id']}"))[0] == 503
        assert (await get(client, "/rules"))[0] == 500
        assert (await get(client, "/rules"))[0] == 200

    async def test_script_calls_accumulate(self, sim: PantherSimulator, client) -> None:
        sim.script("500")
        sim.script("502")
        assert [(await get(client, "/alerts"))[0] for _ in range(3)] == [500, 502, 200]

    async def test_reset_drops_the_connection(self, sim: PantherSimulator) -> None:
        # Raw socket: aiohttp's client silently retries an idempotent request once on a dropped
        # connection, which would hide the reset (the bridge's client will see that retry too).
        sim.script("reset")
        async with serve_app(sim.app) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            request = f"GET /alerts HTTP/1.1\r\nHost: x\r\nX-API-Key: {sim.token}\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            assert await reader.read() == b""
            writer.close()
        assert [r.status for r in sim.requests] == [499]

    @pytest.mark.parametrize("spec", ["teapot", "slow", "slow:x", "200", "429:Retry-After", "ok:1"])
    def test_malformed_script_is_rejected(self, sim: PantherSimulator, spec: str) -> None:
        with pytest.raises(ValueError):
            sim.script(spec)

    def test_parse_script_tokens(self) -> None:
        faults = parse_script(" 500 , slow:0.5,429:Retry-After=2,,ok ")
        assert [(f.kind, f.status, f.delay, f.headers) for f in faults] == [
            ("status", 500, 0.0, ()),
            ("slow", 200, 0.5, ()),
            ("status", 429, 0.0, (("Retry-After", "2"),)),
            ("ok", 200, 0.0, ()),
        ]

    async def test_page_latency_applies_to_alerts_only(self, sim, client) -> None:
        """An alerts page asked first is still on its way when a rules page asked after it is
        answered: only the alerts listing waits."""
        sim.page_latency = 1.0
        alerts = asyncio.create_task(get(client, "/alerts"))
        await wait_until(lambda: any(r.path == "/alerts" for r in sim.requests), 5, what="alerts")
        assert (await get(client, "/rules"))[0] == 200
        assert not alerts.done()
        assert (await alerts)[0] == 200


class TestProduce:
    """produce(): a steady stream of new alerts created now."""

    async def test_rate_and_duration(self, sim: PantherSimulator) -> None:
        """At most rate x duration alerts, created now, one after the other, none ahead of its
        turn: alert i is made no sooner than i / rate seconds after the first."""
        before = time.time_ns()
        made = await sim.produce(100, 0.2)
        after = time.time_ns()
        assert 1 <= len(made) <= 20
        created = [parse_instant_ns(a["createdAt"]) for a in made]
        assert before <= created[0] and created == sorted(created) and created[-1] <= after
        # Paced against the loop's monotonic clock, stamped with the wall clock: 1 ms of slack.
        assert all(t - created[0] >= i * NS // 100 - NS // 1000 for i, t in enumerate(created))
        assert all(a["id"] in sim.alerts for a in made)

    async def test_nothing_at_rate_zero(self, sim: PantherSimulator) -> None:
        assert await sim.produce(0, 1.0) == []

    async def test_visible_while_producing(self, sim: PantherSimulator, client) -> None:
        task = asyncio.create_task(sim.produce(200, 0.3))

        async def listed() -> bool:
            return bool(await list_all(client))

        await wait_until(listed, 5, what="an alert listed")
        assert not task.done()
        made = await task
        assert len(await list_all(client)) == len(made)


class TestServe:
    """serve(): the `bridge sim panther` entry point."""

    async def test_prints_url_and_serves_until_cancelled(self, capsys) -> None:
        task = asyncio.create_task(serve("127.0.0.1", 0, alerts=120, rate=50.0))
        line = ""
        for _ in range(200):
            await asyncio.sleep(0.01)
            line += capsys.readouterr().out
            if line:
                break
        match = re.fullmatch(
            r"panther simulator on (http://127\.0\.0\.1:\d+) \(X-API-Key: sim-panther-token\)\n",
            line,
        )
        assert match, line
        async with aiohttp.ClientSession(
            match[1], headers={"X-API-Key": "sim-panther-token"}
        ) as session:
            first = await list_all(session, limit=50)
            assert len(first) >= 120

            async def grown() -> bool:
                return len(await list_all(session, limit=50)) > len(first)

            await wait_until(grown, 5, what="alerts produced after the first listing")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class TestTimestamps:
    """The ns-exact parser and formatter behind createdAt."""

    @pytest.mark.parametrize(
        ("text", "ns"),
        [
            ("2024-11-14T17:09:49.841715953Z", 1731604189_841715953),
            ("2024-11-14T17:09:49Z", 1731604189_000000000),
            ("2024-11-14T18:09:49.5+01:00", 1731604189_500000000),
            ("2024-11-14T17:09:49.1234567891234Z", 1731604189_123456789),
            ("1731604189", 1731604189_000000000),
            ("1731604189.25", 1731604189_250000000),
            ("2024-11-14", 1731542400_000000000),
        ],
    )
    def test_parse(self, text: str, ns: int) -> None:
        assert parse_instant_ns(text) == ns

    @pytest.mark.parametrize("text", ["", "yesterday", "2024-02-30T00:00:00Z", "2024-11-14T25:00Z"])
    def test_parse_rejects(self, text: str) -> None:
        assert parse_instant_ns(text) is None

    def test_format_styles(self) -> None:
        ns = 1731604189_841715953
        assert format_instant(ns) == "2024-11-14T17:09:49.841715953Z"
        assert format_instant(1731604189_500000000) == "2024-11-14T17:09:49.5Z"
        assert format_instant(1731604189_000000000) == "2024-11-14T17:09:49Z"
        assert format_instant(ns, "milli") == "2024-11-14T17:09:49.841Z"
        assert format_instant(ns, "offset") == "2024-11-14T17:09:49.841715953+00:00"
        assert format_instant(1731604189_841715000, "offset") == "2024-11-14T17:09:49.841715+00:00"
        assert format_instant(ns, "seconds") == "2024-11-14T17:09:49Z"


class TestLateListingAndHostileFaults:
    """Late-indexed alerts appear in listings only `late_by` after their createdAt; hostile
    faults serve endless cursors and pages far beyond `limit`."""

    async def test_late_alert_listed_after_its_delay(
        self, sim: PantherSimulator, client: aiohttp.ClientSession
    ) -> None:
        late = sim.add_alert(late_by=0.3)
        newer = sim.add_alert()
        _, body = await get(client, "/alerts", **{"sort-dir": "asc"})
        assert [a["id"] for a in body["results"]] == [newer["id"]]
        status, _ = await get(client, f"/alerts/{late['id']}")
        assert status == 404
        assert sim.unlisted == 1
        await wait_until(lambda: sim.unlisted == 0, 5, what="the late alert indexed")
        _, body = await get(client, "/alerts", **{"sort-dir": "asc"})
        # Listed now, and in createdAt order: behind the newer one it trails.
        assert [a["id"] for a in body["results"]] == [late["id"], newer["id"]]
        assert sim.unlisted == 0 and sim.late_ids == {late["id"]}

    async def test_late_fraction_of_produced_alerts(self) -> None:
        sim = PantherSimulator(late_fraction=0.5, late_by=60, seed=3)
        made = [sim.add_alert() for _ in range(200)]
        assert 60 <= len(sim.late_ids) <= 140
        assert sim.unlisted == len(sim.late_ids)
        assert sim.late_ids <= {a["id"] for a in made}

    async def test_endless_cursor(
        self, sim: PantherSimulator, client: aiohttp.ClientSession
    ) -> None:
        sim.generate(3)
        sim.endless_cursor = True
        cursors = set()
        _, body = await get(client, "/alerts")
        for _ in range(5):
            assert body["results"] == [] and body["next"]
            cursors.add(body["next"])
            _, body = await get(client, "/alerts", cursor=body["next"])
        assert len(cursors) == 5  # new each time, leading nowhere

    async def test_oversized_page_fault(
        self, sim: PantherSimulator, client: aiohttp.ClientSession
    ) -> None:
        sim.generate(120)
        sim.script("oversized")
        _, body = await get(client, "/alerts", limit=50)
        assert len(body["results"]) == 120 and body["next"] is None
        _, body = await get(client, "/alerts", limit=50)
        assert len(body["results"]) == 50  # one fault, then the limit is honoured again
