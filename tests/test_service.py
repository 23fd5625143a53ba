"""The service's lifecycle on its own: what `Bridge.__aenter__` takes, it gives back."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Rig

from bridge.errors import ConfigError
from bridge.service import Bridge
from bridge.state.sqlite import Outbox


class TestStartUp:
    """A start-up step that fails releases what the earlier steps took."""

    async def test_a_bad_ca_bundle_leaves_the_state_unlocked(
        self, rig: Rig, tmp_path: Path
    ) -> None:
        bundle = tmp_path / "ca.pem"
        bundle.write_text("not a certificate\n")
        settings = rig.settings(bigpanda={"ca_bundle": str(bundle)})
        bridge = Bridge(settings)
        with pytest.raises(ConfigError, match="ca_bundle"):
            await bridge.__aenter__()
        assert not bridge.health.state_open
        # The state lock was released: another process (here: an opener) may take it.
        Outbox.open(settings.state.path).close()

    async def test_enter_and_exit_release_everything(self, rig: Rig) -> None:
        settings = rig.settings()
        async with Bridge(settings) as bridge:
            assert bridge.health.state_open
            assert not bridge.panther.http.session.closed
        assert not bridge.health.state_open
        assert bridge.panther.http.session.closed
        Outbox.open(settings.state.path).close()
