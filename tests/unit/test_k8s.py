"""Kubernetes manifests: each overlay rendered by a real kustomize (`kubectl kustomize`, or a
standalone `kustomize`), validated against the schemas of a current Kubernetes release
(kubernetes-validate, offline, strict: unknown fields are errors), and checked for what the
gateway needs: Envoy beside the gateway, probes, resources, graceful termination, private
ports, config and secrets."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli.main import main, parser
from gateway.configfile import load_config
from gateway.launch.stack import ENVOY_JSON_LOG
from gateway.ops import LIVE_PATH, READY_PATH
from gateway.ops._ready import CLUSTER, MIN_HEALTHY_PERCENT
from tests._deployment import render, schema_errors
from tests._envoy_routes import envoy_yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("embedded-cell", "gcs-cell")
KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Service",
    "ServiceAccount",
}


def _one(overlay: str, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in render(overlay)
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _pod(overlay: str) -> dict[str, Any]:
    return dict(_one(overlay, "Deployment", "sax-gateway")["spec"]["template"]["spec"])


def _containers(overlay: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in _pod(overlay)["containers"]}


def _init(overlay: str, name: str) -> dict[str, Any]:
    [found] = [c for c in _pod(overlay)["initContainers"] if c["name"] == name]
    return dict(found)


def _args(container: dict[str, Any]) -> argparse.Namespace:
    """The container's ``saxgw`` command line, parsed (``$(SAX_ROOT)`` as Kubernetes sets it)."""
    return parser().parse_args(
        [a.replace("$(SAX_ROOT)", "/data/sax-root") for a in container["args"]]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_current_kubernetes_schemas(overlay: str) -> None:
    documents = render(overlay)
    assert {d["kind"] for d in documents} == KINDS
    assert [e for d in documents for e in schema_errors(d)] == []


def test_the_validator_rejects_what_a_cluster_would() -> None:
    service = dict(_one("gcs-cell", "Service", "sax-gateway"))
    assert schema_errors({**service, "spec": {**service["spec"], "ports": [{"port": "eighty"}]}})
    assert schema_errors(
        {**service, "spec": {**service["spec"], "portz": []}}
    )  # strict: unknown field


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_runs_beside_the_gateway_and_only_its_and_the_scrape_port_are_reachable(
    overlay: str,
) -> None:
    pod = _pod(overlay)
    containers = _containers(overlay)
    init = parser().parse_args(_init(overlay, "envoy-config")["args"])
    gateway = _args(containers["gateway"])
    assert (gateway.command, gateway.host) == ("gateway", "127.0.0.1")
    assert (init.command, init.gateway) == ("envoy-config", [f"127.0.0.1:{gateway.port}"])

    envoy = containers["envoy"]
    bash, script, admin_port, drain, delay, *command = envoy["command"]
    assert (bash, script, int(admin_port)) == ("bash", "/etc/envoy/run-envoy.sh", init.admin_port)
    assert command[:3] == ["envoy", "-c", "/etc/envoy/envoy.yaml"]
    assert command[command.index("--log-format") + 1] == ENVOY_JSON_LOG  # as `saxgw up`'s
    # Worker threads for the pod's one gateway process (as `saxgw up` plans them), not one per
    # core of the node, Envoy's default: on a 64-core node 134 threads under a 500m request,
    # 158 MB idle above the 128Mi request (2 workers: 103 MB), a connection to the gateway each.
    assert command[command.index("--concurrency") + 1] == "2"
    assert envoy["ports"] == [{"name": "http", "containerPort": init.port}]
    # Readiness follows the cell (through the gateway's health) and is asked of the ops port
    # (below), not of Envoy's, which speaks TLS once the config says `tls:`.
    assert "readinessProbe" not in envoy
    # Liveness: whether each process answers at all (tests/faults/test_liveness.py runs
    # these commands against a live, a stopped and a cell-less process).
    alive = envoy["livenessProbe"]
    assert alive["exec"]["command"] == [bash, script, "alive", admin_port, "2"]
    gateway_alive = containers["gateway"]["livenessProbe"]
    python, module, *probe = gateway_alive["exec"]["command"]
    assert (python, module) == ("python", "-m")
    assert probe == ["gateway.launch.probes", "grpc", f"127.0.0.1:{gateway.port}", "--timeout", "2"]
    # kubelet's timeout outlasts the probe's own, so a failure reads as the probe's reason.
    assert alive["timeoutSeconds"] > 2 and gateway_alive["timeoutSeconds"] > 2
    # The ops server's own path: a scrape would wait on Envoy's admin.
    assert containers["ops"]["livenessProbe"]["httpGet"] == {"path": LIVE_PATH, "port": "metrics"}

    policy = _one(overlay, "NetworkPolicy", "sax-gateway")["spec"]
    assert policy["podSelector"]["matchLabels"] == pod_labels(overlay)
    ops_port = containers["ops"]["ports"][0]["containerPort"]
    assert policy["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": init.port}]},
        # /metrics has no authentication: only scrapers' namespaces, labelled so (docs).
        {
            "from": [{"namespaceSelector": {"matchLabels": {"sax-gateway/metrics": "scrape"}}}],
            "ports": [{"protocol": "TCP", "port": ops_port}],
        },
    ]
    # The clients' Service has Envoy's port only: made a LoadBalancer (docs/deploy.md), it
    # publishes nothing else.
    service = _one(overlay, "Service", "sax-gateway")["spec"]
    assert [p["targetPort"] for p in service["ports"]] == ["http"]
    assert service["selector"] == pod_labels(overlay)
    metrics = _one(overlay, "Service", "sax-gateway-metrics")["spec"]
    assert [p["targetPort"] for p in metrics["ports"]] == ["metrics"]
    assert metrics["clusterIP"] == "None"  # headless: no address of its own to expose
    assert "type" not in metrics
    assert metrics["selector"] == pod_labels(overlay)

    # Termination: Envoy's drain, and the gateway's preStop wait plus its grace period, fit.
    grace = pod["terminationGracePeriodSeconds"]
    pre_stop = containers["gateway"]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + gateway.grace_period < grace
    assert int(drain) < grace
    assert command[command.index("--drain-time-s") + 1] == drain
    # Envoy serves new connections for its drain delay (run-envoy.sh), however idle, while
    # kube-proxy and load balancers learn of the deletion (it was stopped 1.75 s after
    # SIGTERM, and refused them); the gateway still takes what Envoy takes then (its preStop
    # outlasts the delay, the drain's count and the spans' 0.75 s), and ends its streams
    # with their last message through Envoy, which outlasts its grace period.
    assert int(delay) >= 5
    assert pre_stop >= int(delay) + 1.75
    assert pre_stop + gateway.grace_period < int(drain)
    # The scrape target outlives the gateway's last flush by a scrape interval, so that the
    # counts of the pod's last calls (those of its drain too) are scraped: it stopped at the
    # deletion, and every call since the scrape before it was never counted in Prometheus.
    ops_wait = containers["ops"]["lifecycle"]["preStop"]["sleep"]["seconds"]
    interval = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["global"]
    assert ops_wait >= pre_stop + gateway.grace_period + 1 + int(interval["scrape_interval"][:-1])
    assert ops_wait + 5 <= grace


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_readiness_is_asked_in_plain_http_of_the_ops_port_not_of_envoys(overlay: str) -> None:
    # Envoy's port speaks TLS once the config has a `tls:` section (docs/deploy.md says to add
    # one), maybe wanting a client certificate: an httpGet probe there never passed and the
    # pods never became Ready. The ops port is plain HTTP whatever the config.
    containers = _containers(overlay)
    ops = parser().parse_args(containers["ops"]["args"])
    probes = {name: c["readinessProbe"] for name, c in containers.items() if "readinessProbe" in c}
    assert set(probes) == {"ops"}
    ready = probes["ops"]
    assert ready["httpGet"] == {"path": READY_PATH, "port": "metrics"}
    assert "scheme" not in ready["httpGet"]  # HTTP
    assert containers["ops"]["ports"] == [{"name": "metrics", "containerPort": ops.port}]
    # /readyz reads Envoy's admin, on the pod's loopback, waiting up to 2 s for it: kubelet
    # waits longer, so a slow admin reads as the ops server's 503, not a probe timeout.
    assert ops.envoy_admin.startswith("127.0.0.1:")
    assert ready["timeoutSeconds"] > 2
    assert (ready["periodSeconds"], ready["failureThreshold"]) == (5, 2)


def test_readyz_mirrors_the_health_check_filter_of_envoys_template() -> None:
    template = (ROOT / "envoy/envoy.yaml.tmpl").read_text()
    rule = template.split("cluster_min_healthy_percentages:", 1)[1].split("\n")[1].strip()
    assert rule == f"{CLUSTER}: {{value: {MIN_HEALTHY_PERCENT}}}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ops_container_scrapes_the_gateways_shared_metrics_and_envoys_admin(
    overlay: str,
) -> None:
    pod = _pod(overlay)
    containers = _containers(overlay)
    gateway = _args(containers["gateway"])
    init = parser().parse_args(_init(overlay, "envoy-config")["args"])
    ops = parser().parse_args(containers["ops"]["args"])
    assert ops.command == "ops"
    assert ops.envoy_admin == f"127.0.0.1:{init.admin_port}"  # Envoy's admin stays on loopback
    assert ops.metrics_dir == gateway.metrics_dir
    # One directory, in memory and per pod, mounted where each process looks for it.
    volumes = {v["name"]: v for v in pod["volumes"]}
    for name in ("gateway", "ops"):
        mounts = {m["mountPath"]: m["name"] for m in containers[name]["volumeMounts"]}
        assert volumes[mounts[ops.metrics_dir]]["emptyDir"]["medium"] == "Memory", name
    assert pod["shareProcessNamespace"] is True  # PIDs name the files and tell who is alive
    # The scrape port: named `metrics` on the container and the Service, and announced the
    # way deploy/prometheus/prometheus.yml and common setups find it.
    assert containers["ops"]["ports"] == [{"name": "metrics", "containerPort": ops.port}]
    [metrics] = _one(overlay, "Service", "sax-gateway-metrics")["spec"]["ports"]
    assert metrics == {
        "name": "metrics",
        "port": ops.port,
        "targetPort": "metrics",
        "appProtocol": "http",
    }
    annotations = _one(overlay, "Deployment", "sax-gateway")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(ops.port),
        "prometheus.io/path": "/metrics",
    }
    prometheus = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    assert "regex: sax-gateway;metrics" in prometheus


def pod_labels(overlay: str) -> dict[str, str]:
    deployment = _one(overlay, "Deployment", "sax-gateway")
    selector = dict(deployment["spec"]["selector"]["matchLabels"])
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    return selector


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_autoscaler_alone_sets_the_number_of_pods(overlay: str) -> None:
    # A Deployment that says `replicas:` has it set back by every `kubectl apply` of the
    # overlay (the docs' way to roll out a config change): the autoscaler's 15 pods became 2
    # at once, 13 deleted under load (a scale-down, which no PodDisruptionBudget holds back),
    # until the autoscaler scaled up again minutes later. Kubernetes' own advice: leave it out.
    deployment = _one(overlay, "Deployment", "sax-gateway")
    assert "replicas" not in deployment["spec"]
    autoscaler = _one(overlay, "HorizontalPodAutoscaler")["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert autoscaler["minReplicas"] == (1 if overlay == "embedded-cell" else 2)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pods_are_spread_over_nodes_and_zones(overlay: str) -> None:
    # Two replicas on one node went down together with it (a node lost or drained), past the
    # PodDisruptionBudget's one pod; nothing kept them apart but the scheduler's soft default.
    spread = {c["topologyKey"]: c for c in _pod(overlay)["topologySpreadConstraints"]}
    assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in spread.values():
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"] == {"matchLabels": pod_labels(overlay)}
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]  # per revision
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["kubernetes.io/hostname"]["nodeTaintsPolicy"] == "Honor"
    assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
    budget = _one(overlay, "PodDisruptionBudget")["spec"]
    assert budget == {"maxUnavailable": 1, "selector": {"matchLabels": pod_labels(overlay)}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_runs_unprivileged(overlay: str) -> None:
    pod = _pod(overlay)
    image_user = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("USER ")
    ]
    assert image_user == ["USER 10001:10001"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        10001,
        10001,
    )
    for container in pod["initContainers"] + pod["containers"]:
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert "memory" in resources["limits"], container["name"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_file_from_a_configmap_and_keys_and_tls_from_secrets(overlay: str) -> None:
    pod = _pod(overlay)
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_map = _one(overlay, "ConfigMap")
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert "config.yaml" in config_map["data"]
    assert volumes["keys"]["secret"]["secretName"] == "sax-gateway-keys"
    assert volumes["tls"]["secret"]["secretName"] == "sax-gateway-tls"
    assert volumes["keys"]["secret"].get("optional", False) is False  # the config names them
    containers = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
    # The gateway and envoy-config read the file, and everything it names, where it is mounted.
    for name in ("envoy-config", "gateway"):
        assert _args(containers[name]).config == "/etc/saxgw/config.yaml", name
        mounts = {m["mountPath"]: m for m in containers[name]["volumeMounts"]}
        assert mounts["/etc/saxgw/config.yaml"]["name"] == "config", name
        assert mounts["/etc/saxgw/config.yaml"]["subPath"] == "config.yaml", name
        assert mounts["/etc/saxgw/keys"]["name"] == "keys", name
        assert mounts["/etc/saxgw/tls"]["name"] == "tls", name
    envoy_mounts = {m["mountPath"]: m["name"] for m in containers["envoy"]["volumeMounts"]}
    assert envoy_mounts["/etc/saxgw/tls"] == "tls"  # Envoy reads the certificates itself


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configmaps_config_loads_with_keys_from_the_secret(
    overlay: str, tmp_path: Path
) -> None:
    # /etc/saxgw as the pod sees it: config.yaml from the ConfigMap, keys/ from the Secret (in
    # the shape docs/deploy.md creates it).
    (tmp_path / "config.yaml").write_text(_one(overlay, "ConfigMap")["data"]["config.yaml"])
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "api-keys.yaml").write_text(
        "- {key: sk-ops-0123456789abcdef, client: ops, roles: [admin, data]}\n"
    )
    config = load_config(tmp_path / "config.yaml")
    assert config.edge.authenticated
    # Pods the autoscaler adds get a share of gRPC clients' calls: each client's connection
    # through the Service is replaced now and then (docs/config.md, max_connection_duration).
    if _one(overlay, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] > 1:
        assert config.edge.limits.max_connection_duration == 300
    assert [(k.client, sorted(k.roles)) for k in config.edge.api_keys] == [
        ("ops", ["admin", "data"])
    ]
    assert config.models == {}


def test_embedded_cell_runs_in_the_pod_on_loopback_beside_the_gateway() -> None:
    cell = _init("embedded-cell", "cell")
    args = cell["args"]
    assert args[args.index("--host") + 1] == "127.0.0.1"
    sax_root = args[args.index("--sax-root") + 1]
    assert _one("embedded-cell", "ConfigMap")["data"]["SAX_ROOT"] == sax_root
    hpa = _one("embedded-cell", "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 1)  # one cell per pod
    # A sidecar: it starts before the gateway and stops after it, so that the gateway's calls
    # in flight when the pod is deleted end as they should (tests/container/test_k8s_pod.py).
    assert cell["restartPolicy"] == "Always"
    # Liveness: the admin and every model server it runs answer at all (the cell restarts one
    # that exits, not one that hangs: tests/faults/test_liveness.py runs the command).
    alive = cell["livenessProbe"]
    servers = args[args.index("--model-server-ports") + 1].split(",")
    assert len(servers) == int(args[args.index("--model-servers") + 1])
    addresses = [f"127.0.0.1:{p}" for p in [args[args.index("--admin-port") + 1], *servers]]
    assert alive["exec"]["command"] == [
        "python", "-m", "gateway.launch.probes", "grpc", *addresses, "--timeout", "2",
    ]  # fmt: skip
    assert alive["timeoutSeconds"] > 2  # the probe's own timeout decides, and says why
    # The image the gateway runs, whatever the kustomizations make it (the base set the
    # images before the overlay added the cell).
    assert cell["image"] == _containers("embedded-cell")["gateway"]["image"]


def test_gcs_cell_reads_sax_root_from_gcs_and_keeps_the_cell_private() -> None:
    assert _one("gcs-cell", "ConfigMap")["data"]["SAX_ROOT"].startswith("gs://")
    account = _one("gcs-cell", "ServiceAccount")["metadata"]["annotations"]
    assert "iam.gke.io/gcp-service-account" in account
    hpa = _one("gcs-cell", "HorizontalPodAutoscaler")["spec"]
    assert hpa["minReplicas"] >= 2
    assert _one("gcs-cell", "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    cell = _one("gcs-cell", "NetworkPolicy", "sax-cell")["spec"]
    sources = [peer["podSelector"]["matchLabels"] for peer in cell["ingress"][0]["from"]]
    assert sources == [pod_labels("gcs-cell"), cell["podSelector"]["matchLabels"]]
    assert cell["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 10000, "endPort": 10099}]


def _shell_block(heading: str) -> str:
    """The first ```sh block under ``heading`` in docs/deploy.md."""
    docs = (ROOT / "docs/deploy.md").read_text()
    section = docs[docs.index(f"\n{heading}\n") :]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0]


@pytest.mark.parametrize(
    ("step", "overlay"),
    [
        ("### 1. Try it with the embedded cell", "embedded-cell"),
        ("### 2. In front of a real cell", "gcs-cell"),
    ],
)
def test_the_docs_pin_every_image_of_the_pod(tmp_path: Path, step: str, overlay: str) -> None:
    # Each step's `kustomize edit set image` lines, as the images they add to the overlay: every
    # container then runs a pinned image, none a tag that moves (latest, v1.40-latest), which
    # left nodes on different Envoy releases and a restarted container on a newer gateway.
    # The base renames `envoy` to envoyproxy/envoy: an overlay must name it so.
    block = _shell_block(step)
    pins = re.findall(r"^kustomize edit set image (\S+)=(\S+):(\S+?)\s", block, re.MULTILINE)
    assert len(pins) == 2, block
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    kustomization = tmp_path / "deploy/k8s/overlays" / overlay / "kustomization.yaml"
    images = [{"name": name, "newName": repo, "newTag": tag} for name, repo, tag in pins]
    kustomization.write_text(kustomization.read_text() + yaml.safe_dump({"images": images}))
    [deployment] = [d for d in render(overlay, tmp_path) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    used = {c["image"] for c in [*pod["initContainers"], *pod["containers"]]}
    assert used == {f"{repo}:{tag}" for _, repo, tag in pins}


def test_the_docs_steps_for_a_real_cell_stand_on_their_own() -> None:
    # Step 2 used step 1's namespace and $KEY: run by itself, it failed at its first
    # `kubectl -n sax` (no namespace) and its curl sent an empty key.
    block = _shell_block("### 2. In front of a real cell")
    commands = [line for line in block.splitlines() if not line.startswith("#")]
    assigned = {m[1] for line in commands if (m := re.match(r"([A-Z_]+)=", line))}
    used = set(re.findall(r"\$\{?([A-Z_]+)", "\n".join(commands)))
    assert used - assigned == {"GSBUCKET", "PROJECT"}  # the reader's own: the cell's
    created = re.findall(r"^kubectl create namespace (\S+)$", block, re.MULTILINE)
    assert set(re.findall(r" -n (\S+)", block)) == set(created) == {"sax"}
    assert block.index("kubectl create namespace") < block.index(" -n ")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_is_reached_on_an_ipv4_ipv6_or_dual_stack_cluster(
    overlay: str, tmp_path: Path
) -> None:
    # Envoy and the ops server listened on 0.0.0.0: on an IPv6 cluster the Service's traffic
    # and kubelet's probes, sent to the pod's IPv6 address, were refused, and no pod was ever
    # Ready. Both listen on ::, every address of both families (tests/e2e/test_up.py: both
    # families answered there).
    ops = parser().parse_args(_containers(overlay)["ops"]["args"])
    init = _init(overlay, "envoy-config")["args"]
    assert (ops.host, parser().parse_args(init).listen) == ("::", "::")
    out = tmp_path / "envoy"
    # Its own flags up to --out, which is here, and --config, which names the pod's files.
    assert main([*init[: init.index("--out")], "--out", str(out)]) == 0
    config = envoy_yaml((out / "envoy.yaml").read_text())
    [listener] = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {
        "address": "::",
        "port_value": 8888,
        "ipv4_compat": True,
    }
