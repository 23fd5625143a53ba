"""The Panther simulator against Panther's own OpenAPI spec (shared/api/panther-openapi.yaml).

For each route the simulator serves: every query parameter the spec names is accepted with a
valid value, the answers validate against the spec's response schemas (with the spec's two known
flaws patched, PANTHER.md), a `limit` above the spec's maximum is a 400, an unknown id a 404, and
`next` cursors lead to pages that validate too. A real client (mcp-panther) reads these answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from shared_docs import SPEC_URN, panther_spec, spec_registry

from bridge.sim import serve_app
from bridge.sim.panther import DEFAULT_TOKEN, PantherSimulator

LISTINGS = ["/alerts", "/rules", "/scheduled-rules", "/policies", "/simple-rules", "/queries"]
# Sample values for parameters whose schema alone does not give a meaningful one.
SAMPLES = {
    "created-after": "2020-01-01T00:00:00Z",
    "created-before": "2100-01-01T00:00:00Z",
    "event-count-min": "1",
    "event-count-max": "1000",
    "limit": "2",
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return panther_spec()


@pytest.fixture(scope="module")
def registry(spec: dict[str, Any]) -> Registry:
    return spec_registry(spec)


def assert_matches(registry: Registry, schema: dict[str, Any], body: Any, what: str) -> None:
    ref = schema["$ref"].replace("#/", f"{SPEC_URN}#/", 1)
    validator = Draft202012Validator({"$ref": ref}, registry=registry)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, f"{what}: {errors[:5]}"


def response_schema(spec: dict[str, Any], path: str, status: int) -> dict[str, Any]:
    responses = spec["paths"][path]["get"]["responses"]
    return responses[str(status)]["content"]["application/json"]["schema"]


def query_parameters(spec: dict[str, Any], path: str) -> list[dict[str, Any]]:
    return [p for p in spec["paths"][path]["get"].get("parameters", []) if p["in"] == "query"]


def sample(param: dict[str, Any]) -> list[str]:
    name, schema = param["name"], param["schema"]
    if name in SAMPLES:
        return [SAMPLES[name]]
    if schema.get("type") == "array":
        items = schema.get("items", {})
        return [str(items["enum"][0])] if "enum" in items else ["x"]
    if "enum" in schema:
        return [str(schema["enum"][0])]
    if schema.get("type") == "boolean":
        return ["true"]
    if schema.get("type") == "integer":
        return [str(schema.get("minimum", 1))]
    return ["x"]


@pytest.fixture
async def sim_client() -> AsyncIterator[tuple[PantherSimulator, aiohttp.ClientSession]]:
    sim = PantherSimulator(seed=7)
    sim.generate(30, spacing=10)
    async with (
        serve_app(sim.app) as url,
        aiohttp.ClientSession(url, headers={"X-API-Key": DEFAULT_TOKEN}) as session,
    ):
        yield sim, session


async def get(session: aiohttp.ClientSession, path: str, params: Any = None) -> tuple[int, Any]:
    async with session.get(path, params=params) as response:
        assert response.content_type == "application/json", path
        return response.status, await response.json()


def routes(sim: PantherSimulator) -> list[str]:
    alert_id = next(iter(sim.alerts))
    out = [*LISTINGS, f"/alerts/{alert_id}", f"/alerts/{alert_id}/events"]
    for kind in ("rules", "scheduled-rules", "policies", "simple-rules", "queries"):
        out.append(f"/{kind}/{sorted(sim.catalog[kind])[0]}")
    return out


def template_of(path: str) -> str:
    parts = path.strip("/").split("/")
    if len(parts) == 1:
        return path
    return "/" + "/".join([parts[0], "{id}", *parts[2:]])


def _matches(route: str, template: str) -> bool:
    """A served route against a spec path: a literal segment (`/api-tokens/self`) matches the
    spec's parameter (`/api-tokens/{id}`), as a request for it would."""
    ours, theirs = route.strip("/").split("/"), template.strip("/").split("/")
    return len(ours) == len(theirs) and all(
        a == b or b.startswith("{") for a, b in zip(ours, theirs, strict=True)
    )


class TestEveryRouteIsInTheSpec:
    """The simulator serves no GET route Panther's spec does not describe."""

    def test_routes_exist(self, spec: dict[str, Any]) -> None:
        sim = PantherSimulator()
        served = {r.resource.canonical for r in sim.app.router.routes() if r.method == "GET"}
        served = {s for s in served if s != "/{tail}"}
        assert served, "no routes found"
        missing = sorted(s for s in served if not any(_matches(s, t) for t in spec["paths"]))
        assert not missing, f"served but not in the spec: {missing}"


class TestResponses:
    """Answers with and without each parameter validate against the spec's schemas."""

    async def test_plain_answers(
        self, spec: dict[str, Any], registry: Registry, sim_client
    ) -> None:
        sim, session = sim_client
        for path in routes(sim):
            template = template_of(path)
            status, body = await get(session, path)
            assert status == 200, (path, body)
            assert_matches(registry, response_schema(spec, template, 200), body, path)

    @pytest.mark.parametrize("path", [*LISTINGS, "/alerts/{id}/events"])
    async def test_each_parameter_accepted(
        self, spec: dict[str, Any], registry: Registry, sim_client, path: str
    ) -> None:
        sim, session = sim_client
        concrete = path.replace("{id}", next(iter(sim.alerts)))
        schema = response_schema(spec, path, 200)
        checked = 0
        for param in query_parameters(spec, path):
            if param["name"] == "cursor":
                continue
            params = [(param["name"], value) for value in sample(param)]
            status, body = await get(session, concrete, params)
            assert status == 200, (path, params, body)
            assert_matches(registry, schema, body, f"{path} {params}")
            checked += 1
        assert checked >= 1

    @pytest.mark.parametrize("path", [*LISTINGS, "/alerts/{id}/events"])
    async def test_pages_follow_next(
        self, spec: dict[str, Any], registry: Registry, sim_client, path: str
    ) -> None:
        sim, session = sim_client
        concrete = path.replace("{id}", max(sim.alerts, key=lambda i: sim.alerts[i]["eventCount"]))
        _, first = await get(session, concrete, {"limit": "50"})
        if len(first["results"]) < 2:
            pytest.skip(f"{path} has fewer than two items in the simulator")
        status, body = await get(session, concrete, {"limit": "1"})
        pages = 1
        while body.get("next") and pages < 5:
            status, body = await get(session, concrete, {"limit": "1", "cursor": body["next"]})
            assert status == 200, body
            assert_matches(registry, response_schema(spec, path, 200), body, f"{path} page")
            pages += 1
        assert pages > 1, f"{path}: a limit of 1 gave one page only"

    @pytest.mark.parametrize(
        "path", [p for p in LISTINGS if p != "/queries"] + ["/alerts/{id}/events"]
    )
    async def test_limit_above_maximum(
        self, spec: dict[str, Any], registry: Registry, sim_client, path: str
    ) -> None:
        sim, session = sim_client
        (limit,) = [p for p in query_parameters(spec, path) if p["name"] == "limit"]
        maximum = limit["schema"].get("maximum")
        if maximum is None:
            pytest.skip(f"the spec sets no maximum limit for {path}")
        concrete = path.replace("{id}", next(iter(sim.alerts)))
        status, body = await get(session, concrete, {"limit": str(maximum + 1)})
        assert status == 400
        assert_matches(registry, response_schema(spec, path, 400), body, f"{path} 400")

    @pytest.mark.parametrize(
        "path",
        ["/alerts/{id}", "/alerts/{id}/events", "/rules/{id}", "/policies/{id}", "/queries/{id}"],
    )
    async def test_unknown_id(
        self, spec: dict[str, Any], registry: Registry, sim_client, path: str
    ) -> None:
        _, session = sim_client
        status, body = await get(session, path.replace("{id}", "no-such-id"))
        assert status == 404
        assert_matches(registry, response_schema(spec, path, 404), body, f"{path} 404")


class TestDetectionFilters:
    """The filters the spec names narrow the listings as documented."""

    async def test_severity(self, sim_client) -> None:
        _, session = sim_client
        _, everything = await get(session, "/rules")
        severity = everything["results"][0]["severity"]
        _, body = await get(session, "/rules", [("severity", severity)])
        assert body["results"]
        assert {r["severity"] for r in body["results"]} == {severity}
        assert len(body["results"]) < len(everything["results"])

    async def test_bad_severity_is_400(self, sim_client) -> None:
        _, session = sim_client
        status, body = await get(session, "/rules", [("severity", "SEVERE")])
        assert status == 400 and "severity" in body["message"]

    async def test_name_contains_state_tag_log_and_resource_type(self, sim_client) -> None:
        sim, session = sim_client
        rule = sorted(sim.catalog["rules"].values(), key=lambda r: r["id"])[0]
        word = rule["displayName"].split()[0].upper()
        _, body = await get(session, "/rules", [("name-contains", word)])
        assert rule["id"] in {r["id"] for r in body["results"]}
        assert all(word.lower() in (r["displayName"] + r["id"]).lower() for r in body["results"])
        state = "enabled" if rule["enabled"] else "disabled"
        _, body = await get(session, "/rules", [("state", state)])
        assert all(r["enabled"] == rule["enabled"] for r in body["results"])
        if rule.get("tags"):
            _, body = await get(session, "/rules", [("tag", rule["tags"][0])])
            assert rule["id"] in {r["id"] for r in body["results"]}
        _, body = await get(session, "/rules", [("log-type", rule["logTypes"][0])])
        assert all(rule["logTypes"][0] in r["logTypes"] for r in body["results"])
        policy = sorted(sim.catalog["policies"].values(), key=lambda p: p["id"])[0]
        _, body = await get(session, "/policies", [("resource-type", policy["resourceTypes"][0])])
        assert policy["id"] in {p["id"] for p in body["results"]}
        _, body = await get(session, "/rules", [("log-type", "No.Such.Type")])
        assert body["results"] == []

    async def test_filters_survive_pagination(self, sim_client) -> None:
        sim, session = sim_client
        wanted = {r["id"] for r in sim.catalog["rules"].values() if r["enabled"]}
        seen: list[str] = []
        _, body = await get(session, "/rules", [("state", "enabled"), ("limit", "1")])
        while True:
            seen += [r["id"] for r in body["results"]]
            if not body["next"]:
                break
            _, body = await get(session, "/rules", [("limit", "1"), ("cursor", body["next"])])
        assert sorted(seen) == sorted(wanted)


class TestAlertEvents:
    """`GET /alerts/{id}/events`: eventCount raw events, the same on every call."""

    async def test_count_and_stability(self, sim_client) -> None:
        sim, session = sim_client
        alert_id = next(iter(sim.alerts))
        expected = min(sim.alerts[alert_id]["eventCount"], 200)
        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": "50", **({"cursor": cursor} if cursor else {})}
            _, body = await get(session, f"/alerts/{alert_id}/events", params)
            events += body["results"]
            cursor = body["next"]
            if not cursor:
                break
        assert len(events) == expected
        assert len({e["p_row_id"] for e in events}) == expected
        _, again = await get(session, f"/alerts/{alert_id}/events", {"limit": "50"})
        assert again["results"] == events[:50]
