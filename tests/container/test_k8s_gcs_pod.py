"""deploy/k8s's gcs-cell overlay as a pod, in front of a cell whose SAX_ROOT is on Cloud Storage.

The overlay is set up as docs/deploy.md tells an operator to (its own sed command, on a copy of
deploy/k8s: the bucket and the project), rendered by a real kustomize and run by the
kubelet-lite (tests/container/_pod.py) with its containers as written, but for one variable
(_pointed_at_the_emulator). It stands in front of tests/container/_outside.py's stand-ins: a
GCS emulator holding SAX_ROOT and the embedded cell in the gateway's image on that SAX_ROOT, in
a network namespace of their own that the pod reaches over a veth link, as it would reach Cloud
Storage and a cell's VMs. A model published through the gateway answers through the Service's
port, as JSON and over gRPC; then the pod is deleted. The tests run in file order; the last one
deletes the pod."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._deployment import ROOT, render, schema_errors
from tests._storage import BUCKET
from tests.container._kube import Cluster, Spec
from tests.container._outside import OUTSIDE_IP, Outside
from tests.container._overlays import (
    AUTH,
    IMAGES,
    assert_exited_cleanly,
    deployment,
    grpc_generate,
    named,
    publish,
    running,
    service_url,
    with_keys,
)
from tests.container._pod import Pod
from tests.e2e._published import request_info

PROJECT = "sax-ct"  # the operator's Google Cloud project, for docs/deploy.md's sed


def _set_up_as_documented(checkout: Path) -> Path:
    """A copy of deploy/k8s in ``checkout`` whose gcs-cell overlay has had docs/deploy.md's
    sed command (SAX_ROOT's bucket, the Workload Identity service account's project) run on it,
    as an operator runs it in their checkout."""
    shutil.copytree(ROOT / "deploy/k8s", checkout / "deploy/k8s")
    docs = (ROOT / "docs/deploy.md").read_text()
    [sed] = re.findall(r"^sed -i .*YOUR-BUCKET.*\\\n.*$", docs, re.MULTILINE)
    env = {**os.environ, "GSBUCKET": BUCKET, "PROJECT": PROJECT}
    subprocess.run(["bash", "-c", sed], cwd=checkout, env=env, check=True, timeout=30)
    return checkout


def _pointed_at_the_emulator(deployment: Spec, outside: Outside) -> Spec:
    """The one change to the pod as rendered, for this test only: STORAGE_EMULATOR_HOST,
    google-cloud-storage's own switch to an emulator, in the gateway's environment. The
    gateway's args stay as the overlay writes them (no --gcs-endpoint), so it opens SAX_ROOT as
    it does in a cluster (a storage client given no endpoint), and the library sends its calls
    to the emulator, anonymously: no GKE metadata server acts for Workload Identity here. They
    go through a front that refuses uploads (403), as GCS refuses them with the role
    docs/deploy.md grants (Outside.viewer_endpoint)."""
    gateway = named(deployment["spec"]["template"]["spec"], "gateway")
    variable = {"name": "STORAGE_EMULATOR_HOST", "value": outside.viewer_endpoint}
    gateway["env"] = [*gateway.get("env", []), variable]
    return deployment


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, ...]:
    return with_keys(render("gcs-cell", _set_up_as_documented(tmp_path_factory.mktemp("repo"))))


@pytest.fixture(scope="module")
def outside() -> Iterator[Outside]:
    outside = Outside(IMAGES["sax-gateway:latest"])
    try:
        outside.start()
        yield outside
    finally:
        print(outside.logs())
        outside.stop()


@pytest.fixture(scope="module")
def pod(
    objects: tuple[Spec, ...], outside: Outside, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pod]:
    spec = _pointed_at_the_emulator(deployment(objects), outside)
    cluster = Cluster(objects, IMAGES)
    with running(spec, cluster, tmp_path_factory.mktemp("pod"), outside.attach) as pod:
        yield pod


@pytest.fixture(scope="module")
def url(pod: Pod) -> Iterator[str]:
    with service_url(pod) as url:
        yield url


def _one(objects: tuple[Spec, ...], kind: str, name: str | None = None) -> Spec:
    [found] = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def test_the_documented_setup_leaves_no_placeholder(objects: tuple[Spec, ...]) -> None:
    assert "YOUR-" not in repr(objects)
    config = _one(objects, "ConfigMap")["data"]
    assert config["SAX_ROOT"] == f"gs://{BUCKET}/sax-root"
    account = _one(objects, "ServiceAccount")["metadata"]["annotations"]
    assert account == {
        "iam.gke.io/gcp-service-account": f"sax-gateway@{PROJECT}.iam.gserviceaccount.com"
    }


def test_the_pod_gets_ready_on_the_cell_it_finds_in_the_bucket(
    pod: Pod, outside: Outside, url: str
) -> None:
    print(f"Ready {pod.wait_ready(60):.1f} s after its containers started")
    # The cells under SAX_ROOT, which only the bucket lists.
    cells = httpx.get(f"{url}/listcells", headers=AUTH, timeout=30)
    assert cells.status_code == 200, cells.text
    assert cells.json() == {"cells": [outside.cell]}


def test_publish_and_generate_as_json_and_over_grpc(pod: Pod, outside: Outside, url: str) -> None:
    model = f"{outside.cell}/gcs"
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
        publish(http, model, {"text": "over the link"})
        # Served by the cell's model server, at the address it wrote where the gateway reads.
        info = http.get(f"/v1{model}")
        assert info.status_code == 200, info.text
        assert info.json()["model"]["addresses"] == [
            f"{OUTSIDE_IP}:{outside.ports['model server']}"
        ]
        generate = http.post("/generate", json={"model": model, "query": "q"})
    assert generate.status_code == 200, generate.text
    assert generate.json() == {"texts": [{"text": "over the link", "score": pytest.approx(-0.3)}]}
    assert grpc_generate(url, model) == [("over the link", -0.3)]


def test_a_cells_acl_is_the_one_write_to_sax_root_the_documented_role_refuses(
    pod: Pod, outside: Outside, url: str
) -> None:
    # A cell's admin ACL lives in its config.proto under SAX_ROOT, which the gateway rewrites
    # (as saxutil setacl does); objectViewer, all docs/deploy.md granted before, cannot.
    cell = outside.cell
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
        refused = http.post("/setacl", json={"name": cell, "acl": "acl/ops"})
        assert refused.status_code == 500, refused.text
        assert refused.json() == {
            "code": 13,
            "message": f"could not save the config of cell {cell}: this gateway's SAX_ROOT "
            "failed; its operator finds why in the gateway's log",
            "details": [request_info(refused)],
        }
        acl = http.get("/getacl", params={"name": cell})
        assert acl.json() == {"name": cell, "acl": "", "method_acls": {}}
    assert "does not have storage.objects.create access" in pod.logs(100)


def test_the_network_policies_admit_what_the_pod_just_used(
    pod: Pod, outside: Outside, objects: tuple[Spec, ...]
) -> None:
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    assert set(policies) == {"sax-gateway", "sax-cell"}
    assert [e for policy in policies.values() for e in schema_errors(policy)] == []
    labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    # The gateway's pods: only Envoy's port and the scrape port come in; nothing limits what
    # goes out, which is how the gateway reached Cloud Storage and the cell.
    gateway = policies["sax-gateway"]["spec"]
    assert gateway["podSelector"]["matchLabels"].items() <= labels.items()
    assert gateway["policyTypes"] == ["Ingress"]
    service = [
        pod.target_port("sax-gateway", "http"),
        pod.target_port("sax-gateway-metrics", "metrics"),
    ]
    assert [p["port"] for rule in gateway["ingress"] for p in rule["ports"]] == service
    # A cell's pods: the gateway's pods are let in, on a range that holds the cell's ports the
    # gateway just called (the admin for the model's address, the model server for generate).
    [cell] = policies["sax-cell"]["spec"]["ingress"]
    assert any(
        peer["podSelector"]["matchLabels"].items() <= labels.items() for peer in cell["from"]
    )
    # Pods of the policy's own namespace only, as docs/deploy.md tells whoever runs a cell.
    assert all(set(peer) == {"podSelector"} for peer in cell["from"])
    [ports] = cell["ports"]
    for port in outside.ports.values():
        assert ports["port"] <= port <= ports["endPort"], port


def test_deleting_the_pod_ends_every_container_cleanly_and_leaves_the_cell(
    pod: Pod, outside: Outside
) -> None:
    assert_exited_cleanly(pod, pod.terminate())
    assert outside.running()
