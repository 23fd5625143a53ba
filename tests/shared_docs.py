"""The project's shared API facts (`../shared` beside the repository), as tests need them.

The suite checks the simulators and payloads against Panther's published OpenAPI file and the
example payloads kept in `../shared/api`. A missing file is a failure that names it, so a checkout
without `../shared` cannot pass while silently testing less; set BRIDGE_SKIP_SHARED=1 to skip
those tests on purpose instead. BRIDGE_SHARED_DIR names another place for them (a git worktree
kept elsewhere than beside `../shared`).

Panther's OpenAPI file has two known flaws (PANTHER.md): `patch_known_flaws` corrects them before
anything is validated against it, and `spec_registry` resolves its `$ref`s.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SHARED = Path(os.environ.get("BRIDGE_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
SKIP_VARIABLE = "BRIDGE_SKIP_SHARED"
SPEC_URN = "urn:panther-openapi"
ACTOR_TYPES = {"user", "api-token", "system"}


def shared_file(relative: str) -> Path:
    """The path of `../shared/<relative>`; fails (or skips, when asked to) if it is absent."""
    path = SHARED / relative
    if path.exists():
        return path
    message = (
        f"{path} is missing: these tests check against the shared API facts kept beside the "
        f"repository (../shared); put them there, or set {SKIP_VARIABLE}=1 to skip these tests"
    )
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(message)
    pytest.fail(message)


def shared_json(relative: str) -> Any:
    """`../shared/<relative>` parsed as JSON (an example payload)."""
    return json.loads(shared_file(relative).read_text())


def panther_spec() -> dict[str, Any]:
    """Panther's published OpenAPI file, as published (flaws and all)."""
    return yaml.safe_load(shared_file("api/panther-openapi.yaml").read_text())


def patch_known_flaws(node: Any) -> None:
    """Every non-required property nullable; no actor-type enum on `id` properties (PANTHER.md):
    real answers carry nulls and system actors the published schemas refuse."""
    if isinstance(node, list):
        for item in node:
            patch_known_flaws(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key != "properties":
            patch_known_flaws(value)
    properties = node.get("properties")
    if isinstance(properties, dict):
        required = set(node.get("required", ()))
        for name, schema in properties.items():
            patch_known_flaws(schema)
            if name == "id" and set(schema.get("enum", ())) == ACTOR_TYPES:
                del schema["enum"]
            if name not in required:
                properties[name] = {"anyOf": [schema, {"type": "null"}]}


def spec_registry(spec: dict[str, Any], *, patched: bool = True) -> Registry:
    """A JSON Schema registry holding (a copy of) `spec` under SPEC_URN, patched unless asked."""
    contents = copy.deepcopy(spec)
    if patched:
        patch_known_flaws(contents)
    resource = Resource.from_contents(contents, default_specification=DRAFT202012)
    return Registry().with_resource(SPEC_URN, resource)
