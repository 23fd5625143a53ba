"""After a real run against both simulators, /metrics exposes every DESIGN.md metric, sensibly.

The scenario touches every path a metric counts: new alerts, a BigPanda 500 (a retry), a 202 (a
job), a poisoned alert (bisected and dead-lettered). Everything is read back from the /metrics
text with prometheus_client's parser, the way Prometheus reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from shared_docs import shared_file

from bridge import __version__
from bridge.config import load_config
from bridge.metrics import Metrics
from bridge.service import Bridge
from bridge.sim import serve_app
from bridge.sim.bigpanda import BigPandaSimulator
from bridge.sim.panther import PantherSimulator

PANTHER_TOKEN = "metrics-panther-token"
BIGPANDA_TOKEN = "metrics-bigpanda-token"
APP_KEY = "metrics-app-key"
POISON = "POISON-9f3c"
ALERTS = 30

# shared/DESIGN.md, "Metrics": the contract. Histograms are listed by their base name.
DESIGN_METRICS = {
    "bridge_events_received_total": {"kind"},
    "bridge_events_sent_total": {"status"},
    "bridge_events_dead_lettered_total": {"reason"},
    "bridge_http_requests_total": {"target", "endpoint", "code"},
    "bridge_http_request_duration_seconds": {"target", "endpoint"},
    "bridge_retries_total": {"target", "reason"},
    "bridge_outbox_events": set(),
    "bridge_dead_letter_events": set(),
    "bridge_jobs_in_flight": set(),
    "bridge_jobs_total": {"result"},
    "bridge_watermark_timestamp_seconds": set(),
    "bridge_last_successful_poll_timestamp_seconds": set(),
    "bridge_delivery_latency_seconds": set(),
    "bridge_build_info": {"version"},
}
HISTOGRAMS = {"bridge_http_request_duration_seconds", "bridge_delivery_latency_seconds"}


class Exposition:
    """Samples of one /metrics scrape: `value(name, **labels)` sums over unnamed labels."""

    def __init__(self, text: str) -> None:
        self.samples = [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [labels for n, labels, _ in self.samples if n == name]

    def value(self, name: str, **labels: str) -> float:
        found = [
            v
            for n, ls, v in self.samples
            if n == name and all(ls.get(k) == want for k, want in labels.items())
        ]
        assert found, f"no sample {name}{labels or ''}"
        return sum(found)


@contextlib.asynccontextmanager
async def simulated_run(tmp: Path) -> AsyncIterator[tuple[Exposition, dict]]:
    """Run the bridge until BigPanda has every good alert; yield the scrape and the facts."""
    panther = PantherSimulator(token=PANTHER_TOKEN)
    bigpanda = BigPandaSimulator(token=BIGPANDA_TOKEN, app_keys=[APP_KEY])
    generated = panther.generate(ALERTS - 1, spacing=0.5)
    poisoned = panther.add_alert(title=f"bad alert {POISON}")
    bigpanda.poison(POISON)
    bigpanda.script("500,202")  # the first POST fails (a retry), the next becomes a job
    bigpanda.job_script("pending,done")
    good = {a["id"] for a in generated}

    async with serve_app(panther.app) as panther_url, serve_app(bigpanda.app) as bigpanda_url:
        config = {
            "panther": {
                "api_url": panther_url,
                "api_token": PANTHER_TOKEN,
                "poll_interval": 0.5,
                "overlap": 0,
            },
            "bigpanda": {
                "api_url": bigpanda_url,
                "api_token": BIGPANDA_TOKEN,
                "app_key": APP_KEY,
                "batch_size": 8,
                "job_poll_interval": 0.1,
            },
            "state": {"path": str(tmp / "bridge.db")},
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace": 2},
            "logging": {"level": "warning"},
            "retry": {"initial_backoff": 0.05, "max_backoff": 0.2},
        }
        path = tmp / "bridge.yaml"
        path.write_text(yaml.safe_dump(config))
        settings = load_config(path, environ={})
        started = time.time()
        stopping = asyncio.Event()
        async with Bridge(settings) as bridge:
            service = asyncio.create_task(bridge.run(stopping))
            try:
                deadline = time.monotonic() + 10
                while {a.alert.get("panther_alert_id") for a in bigpanda.accepted} < good:
                    assert time.monotonic() < deadline, "alerts did not reach BigPanda in 10s"
                    assert not service.done(), service
                    await asyncio.sleep(0.05)
                while bridge.outbox.counts()["pending"] or bridge.outbox.counts()["jobs"]:
                    assert time.monotonic() < deadline, (
                        f"outbox not drained: {bridge.outbox.counts()}"
                    )
                    await asyncio.sleep(0.05)
                bridge.refresh_gauges()  # the housekeeping tick, without waiting 5 s for it
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"{bridge.server_url}/metrics") as resp:
                        assert resp.status == 200
                        assert resp.headers["Content-Type"].startswith("text/plain")
                        text = await resp.text()
                    async with http.get(f"{bridge.server_url}/readyz") as resp:
                        ready = (resp.status, await resp.json())
                    async with http.get(f"{bridge.server_url}/healthz") as resp:
                        alive = resp.status
                facts = {
                    "started": started,
                    "generated": generated,
                    "poisoned": poisoned,
                    "bigpanda": bigpanda,
                    "ready": ready,
                    "alive": alive,
                }
                yield Exposition(text), facts
            finally:
                stopping.set()
                await asyncio.wait_for(service, 10)


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[tuple[Exposition, dict]]:
    async with simulated_run(tmp_path) as result:
        yield result


class TestMetricsExposed:
    """Every metric in DESIGN.md is on /metrics after a run, with its labels and sensible values."""

    async def test_every_design_metric_is_exposed_with_its_labels(self, run) -> None:
        scrape, _ = run
        for name, labels in DESIGN_METRICS.items():
            if name in HISTOGRAMS:
                for suffix in ("_bucket", "_sum", "_count"):
                    assert name + suffix in scrape.names(), name + suffix
                sample_name = name + "_count"
            else:
                sample_name = name
            exposed = scrape.labels_of(sample_name)
            assert exposed, f"{name} is not exposed"
            for sample_labels in exposed:
                assert set(sample_labels) == labels, f"{name} labels {sample_labels}"

    async def test_events_add_up(self, run) -> None:
        """received = sent + pending + dead-lettered, and each matches what BigPanda saw."""
        scrape, facts = run
        received = scrape.value("bridge_events_received_total")
        sent = scrape.value("bridge_events_sent_total")
        pending = scrape.value("bridge_outbox_events")
        dead = scrape.value("bridge_events_dead_lettered_total")
        assert received == sent + pending + dead
        assert scrape.value("bridge_events_received_total", kind="alert") == ALERTS
        assert sent == len(facts["generated"]) == len(facts["bigpanda"].accepted)
        assert pending == 0
        assert dead == scrape.value("bridge_events_dead_lettered_total", reason="rejected") == 1
        assert scrape.value("bridge_dead_letter_events") == 1
        statuses = {ls["status"] for ls in scrape.labels_of("bridge_events_sent_total")}
        assert statuses <= {"critical", "warning", "acknowledged", "ok", "unknown"}

    async def test_http_retries_and_jobs(self, run) -> None:
        scrape, _ = run
        assert scrape.value("bridge_http_requests_total", target="panther", code="200") >= 1
        assert scrape.value("bridge_http_requests_total", target="bigpanda", code="500") == 1
        assert scrape.value("bridge_http_requests_total", target="bigpanda", code="202") == 1
        assert scrape.value("bridge_http_requests_total", target="bigpanda", code="400") >= 1
        assert scrape.value("bridge_http_requests_total", target="bigpanda", code="201") >= 1
        for target in ("panther", "bigpanda"):
            count = scrape.value("bridge_http_request_duration_seconds_count", target=target)
            assert count >= 1
            assert scrape.value("bridge_http_request_duration_seconds_sum", target=target) > 0
        assert scrape.value("bridge_retries_total", target="bigpanda") >= 1
        assert scrape.value("bridge_jobs_total", result="done") == 1
        assert scrape.value("bridge_jobs_in_flight") == 0
        endpoints = {ls["endpoint"] for ls in scrape.labels_of("bridge_http_requests_total")}
        for endpoint in endpoints:  # templates, never ids: bounded label values
            assert not re.search(r"[0-9a-f]{16,}", endpoint), endpoint

    async def test_timestamps_latency_and_build_info(self, run) -> None:
        scrape, facts = run
        now = time.time()
        last_poll = scrape.value("bridge_last_successful_poll_timestamp_seconds")
        assert facts["started"] <= last_poll <= now
        watermark = scrape.value("bridge_watermark_timestamp_seconds")
        assert facts["started"] - 3600 < watermark <= now
        assert scrape.value("bridge_delivery_latency_seconds_count") == len(facts["generated"])
        mean = scrape.value("bridge_delivery_latency_seconds_sum") / len(facts["generated"])
        assert 0 < mean < 3600  # generated over the last ~15 s, delivered within seconds
        buckets = scrape.labels_of("bridge_delivery_latency_seconds_bucket")
        assert {"le": "+Inf"} in buckets
        assert scrape.value("bridge_build_info", version=__version__) == 1

    async def test_process_collectors_and_health(self, run) -> None:
        scrape, facts = run
        names = scrape.names()
        assert "process_resident_memory_bytes" in names
        assert "python_info" in names
        assert any(n.startswith("python_gc_") for n in names)
        assert facts["alive"] == 200
        status, body = facts["ready"]
        assert (status, body["ready"]) == (200, True), body


def test_design_md_lists_the_same_metrics() -> None:
    """The list above is DESIGN.md's (checked when shared/ sits beside the repository)."""
    section = shared_file("DESIGN.md").read_text().split("**Metrics**", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`(bridge_[a-z_]+)", section))
    assert named == set(DESIGN_METRICS)


class TestRegistry:
    """bridge.metrics declares every metric once, with help text, in one registry per instance."""

    def test_instances_do_not_share_counts(self) -> None:
        one, two = Metrics(), Metrics()
        one.events_received.labels(kind="alert").inc(5)
        value = two.registry.get_sample_value
        assert value("bridge_events_received_total", {"kind": "alert"}) is None
        assert one.registry.get_sample_value(
            "bridge_events_received_total", {"kind": "alert"}
        ) == 5

    def test_names_follow_the_prometheus_guide(self) -> None:
        families = [f for f in Metrics().registry.collect() if f.name.startswith("bridge_")]
        assert {f"{f.name}_total" if f.type == "counter" else f.name for f in families} >= set(
            DESIGN_METRICS
        )
        for family in families:
            assert family.documentation.strip(), f"{family.name} has no help text"
            assert not family.name.endswith(("_ms", "_milliseconds", "_minutes")), family.name
            if family.type == "counter":  # exposed as `<name>_total` (and `_created`)
                assert all(s.name.endswith(("_total", "_created")) for s in family.samples)

    def test_build_info_is_set_at_start(self) -> None:
        assert Metrics().registry.get_sample_value(
            "bridge_build_info", {"version": __version__}
        ) == 1
