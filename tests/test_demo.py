"""bridge.demo: `bridge demo` runs both simulators and the real bridge, and reports what arrived."""

from __future__ import annotations

from bridge.cli import main
from bridge.demo import _tally, run_demo


class TestDemo:
    """`bridge demo` delivers every generated alert and says so."""

    def test_demo(self, capsys) -> None:
        assert main(["demo", "--alerts", "10", "--timeout", "30"]) == 0
        out = capsys.readouterr().out
        assert "Alerts generated in Panther:       10" in out
        assert "New-alert events in BigPanda:      10" in out
        # 10, then 2 late-indexed ones and 2 newer ones behind which they are listed
        assert "All new alerts in BigPanda:        14 of 14 generated" in out
        assert "Status-change events in BigPanda:  6 (acknowledged=2, ok=4)" in out
        assert "/metrics" in out and "exactly once" in out

    async def test_run_demo_reports_through_out(self) -> None:
        lines: list[str] = []
        assert await run_demo(alerts=5, timeout=30, out=lines.append) == 0
        assert lines[0].startswith("Panther simulator  http://127.0.0.1:")
        assert "(5 alerts generated)" in lines[0]
        assert not [line for line in lines if line.startswith("FAILED")]
        assert "OK: every alert and every status change arrived in BigPanda exactly once." in lines
        assert lines[-1] == (
            "OK: the NOC's resolution and comment in BigPanda reached the Panther alerts."
        )


class TestTally:
    """Status counts read `name=count`, sorted by name; nothing is `none`."""

    def test_tally(self) -> None:
        assert _tally(["ok", "acknowledged", "ok"]) == "acknowledged=1, ok=2"
        assert _tally([]) == "none"
