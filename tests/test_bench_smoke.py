"""The benchmark at tiny sizes (`python -m bench --quick`), so that it cannot rot.

It asserts that every scenario completes and every figure is produced, never how fast anything
is: speed is what the benchmark reports, on a machine that is shared and noisy.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent

FIGURES = [
    "catchup.bridge.alerts_per_second",
    "catchup.bridge.seconds",
    "catchup.naive.alerts_per_second",
    "catchup.ceiling.alerts_per_second",
    "catchup.bridge_over_naive",
    "catchup.bridge_over_ceiling",
    "catchup.bridge_peak_rss_mb",
    "catchup.bridge_cpu_seconds_per_10k",
    "steady.p50_seconds",
    "steady.p99_seconds",
    "steady.max_seconds",
    "outage.bridge_peak_rss_mb",
    "normalizer.alerts_per_second",
]


def lookup(doc: dict, key: str) -> object:
    node: object = doc
    for part in key.split("."):
        assert isinstance(node, dict) and part in node, f"{key}: missing ({part})"
        node = node[part]
    return node


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--ceiling-slices", "2", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, orjson.loads(out.read_bytes())


class TestQuickBenchmark:
    """A tiny run completes, and reports every figure, every ratio and every target."""

    def test_every_figure_is_a_positive_number(self, quick_run: tuple) -> None:
        _, doc = quick_run
        for key in FIGURES:
            value = lookup(doc["results"], key)
            assert isinstance(value, int | float) and math.isfinite(value), key
            assert value >= 0, key

    def test_every_alert_was_delivered_exactly_once(self, quick_run: tuple) -> None:
        _, doc = quick_run
        results = doc["results"]
        assert results["catchup"]["bridge"]["duplicates"] == 0
        assert results["outage"]["bigpanda_errors"] > 0  # the outage really refused requests
        assert results["steady"]["alerts"] > 0

    def test_the_table_has_every_target_and_a_verdict(self, quick_run: tuple) -> None:
        proc, doc = quick_run
        from bench.report import TARGETS

        with_target = {row["key"]: row for row in doc["table"] if row["target"]}
        assert set(with_target) == set(TARGETS)
        # The quick run leaves the HA scenario out (it needs PostgreSQL and five lease expiries).
        measured = [row for key, row in with_target.items() if not key.startswith("ha.")]
        assert all(row["met"] in (True, False) for row in measured)
        assert with_target["ha.output.postgresql_over_sqlite"]["met"] is None
        assert "| met? |" in proc.stdout
        assert doc["machine"]["cores"] and doc["machine"]["python"]


class TestInstructionCount:
    """`bench.instructions` reads valgrind's total; running valgrind itself is the bench's job."""

    def test_the_last_total_in_the_log_is_taken(self) -> None:
        from bench.instructions import instructions_in

        log = (
            '{"event": "bridge.started"}\n==41== I   refs:      12,345\n'
            "==42== \n==42== I refs:        3,364,562,698\n"
        )
        assert instructions_in(log) == 3_364_562_698

    def test_a_log_without_a_total_is_an_error(self) -> None:
        from bench.common import BenchError
        from bench.instructions import instructions_in

        with pytest.raises(BenchError, match="no instruction count"):
            instructions_in('{"event": "bridge.stopped"}\n')

    def test_without_valgrind_it_says_what_to_install(self, monkeypatch) -> None:
        import bench.instructions as instructions

        monkeypatch.setattr(instructions.shutil, "which", lambda _name: None)
        assert instructions.main([]) == 2


class TestOutboxBench:
    """`bench.outbox --quick` runs and reports both histories (it asserts no speed)."""

    def test_quick_run_reports_every_history(self) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.outbox", "--quick"],
            cwd=ROOT, capture_output=True, text=True, timeout=100,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        doc = orjson.loads(proc.stdout.strip().splitlines()[-1])
        assert [r["history"] for r in doc["results"]] == [0, 2_000]
        for r in doc["results"]:
            assert r["alerts"] == 1_000
            assert r["cpu_us_per_alert"] > 0 and r["kib_written_per_alert"] > 0
