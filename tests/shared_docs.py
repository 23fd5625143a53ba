"""The project's shared API facts (`../shared` beside the repository), as tests need them.

The suite checks the simulators and payloads against Panther's published OpenAPI file and the
example payloads kept in `../shared/api`. A missing file is a failure that names it, so a checkout
without `../shared` cannot pass while silently testing less; set BRIDGE_SKIP_SHARED=1 to skip
those tests on purpose instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SKIP_VARIABLE = "BRIDGE_SKIP_SHARED"


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
