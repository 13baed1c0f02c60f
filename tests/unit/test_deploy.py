"""Container and Kubernetes files, validated statically (no container engine runs here):
they parse, their commands are ones our CLIs accept, and the Envoy config they render is one
the real Envoy binary accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli.main import main, parser
from gateway.launch.envoy import envoy_binary

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _k8s() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/sax-gateway.yaml").read_text()) if d]


def test_compose_services_use_our_image_or_official_ones() -> None:
    services = _compose()["services"]
    assert {"cell", "gateway", "envoy-config", "envoy", "gateway-tpu", "envoy-tpu"} <= set(services)
    for name, service in services.items():
        image = service["image"]
        assert image == "sax-gateway:latest" or image.startswith(
            ("envoyproxy/envoy:v1.40", "us-docker.pkg.dev/cloud-tpu-images/inference/sax-")
        ), name
    assert services["envoy"]["ports"] == ["8888:8888"]


def test_compose_gateway_commands_parse() -> None:
    services = _compose()["services"]
    for name in ("gateway", "envoy-config", "gateway-tpu"):
        argv = [
            a.replace("${SAX_ROOT:?set SAX_ROOT to gs://BUCKET/sax-root}", "gs://b/r")
            for a in services[name]["command"]
        ]
        args = parser().parse_args(argv)
        assert args.command == argv[0]


def test_k8s_gateway_args_parse_and_probes_are_set() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _k8s()}
    gateway = docs[("Deployment", "sax-gateway")]["spec"]["template"]["spec"]["containers"][0]
    args = parser().parse_args([a.replace("$(SAX_ROOT)", "gs://b/r") for a in gateway["args"]])
    assert (args.command, args.port) == ("gateway", 50051)
    assert gateway["readinessProbe"]["grpc"] == {"port": 50051}
    envoy_pod = docs[("Deployment", "sax-gateway-envoy")]["spec"]["template"]["spec"]
    init_args = parser().parse_args(envoy_pod["initContainers"][0]["args"])
    assert init_args.gateway == ["sax-gateway-grpc:50051"]
    assert docs[("Service", "sax-gateway-grpc")]["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("gateway", ["gateway:50051", "sax-gateway-grpc:50051"])
def test_rendered_container_envoy_config_is_valid(tmp_path: Path, gateway: str) -> None:
    assert main(["envoy-config", "--gateway", gateway, "--out", str(tmp_path)]) == 0
    config = (tmp_path / "envoy.yaml").read_text()
    for name in ("descriptor.binpb", "openapi.json"):  # Envoy reads both at start
        assert (tmp_path / name).stat().st_size > 0
        assert str(tmp_path / name) in config
    for name in ("docs/index.html", "docs/docs.js", "swagger-ui/swagger-ui-bundle.js"):
        assert (tmp_path / name).stat().st_size > 0  # the /docs page, read at start too
        assert str(tmp_path / name) in config
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(tmp_path / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_dockerfile_copies_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
