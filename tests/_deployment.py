"""deploy/k8s for the tests: each overlay as a real kustomize renders it (tests/unit/test_k8s.py,
and tests/container runs its pod), what Kubernetes' schemas say of an object, and the pod's
liveness and readiness probes as the base writes them, for the tests that run them against
real processes (tests/faults/test_liveness.py, test_readiness.py) and in the real images
(tests/container)."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no stubs, no py.typed
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENT = ROOT / "deploy/k8s/base/deployment.yaml"


def _kustomize(directory: Path) -> list[str]:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(directory)]
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(directory)]
    pytest.fail("no kustomize: install kubectl (Debian: google-cloud-cli's kubectl) or kustomize")


@cache
def render(overlay: str, root: Path = ROOT) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize deploy/k8s/overlays/OVERLAY`` prints in ``root`` (this
    checkout, or a copy of its deploy/ that a test edited as docs/deploy.md says)."""
    result = subprocess.run(
        _kustomize(root / "deploy/k8s/overlays" / overlay),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def schema_errors(document: dict[str, Any]) -> list[str]:
    """What a cluster of the latest Kubernetes release kubernetes-validate knows would refuse in
    ``document`` (strict: unknown fields too): empty if it is well-formed."""
    try:
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{document['kind']}/{document['metadata']['name']}: {exc.message}"]
    return []


def _container(name: str) -> dict[str, Any]:
    pod = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]
    [found] = [c for c in pod["containers"] if c["name"] == name]
    return found  # type: ignore[no-any-return]


def liveness(container: str, where: dict[str, str]) -> tuple[list[str], float]:
    """The container's liveness command (the base's, or the embedded-cell overlay's cell), each
    word that ``where`` names replaced (ports, paths), and kubelet's timeout for it."""
    if container == "cell":
        [pod] = [o for o in render("embedded-cell") if o["kind"] == "Deployment"]
        sidecars = pod["spec"]["template"]["spec"]["initContainers"]
        [found] = [c for c in sidecars if c["name"] == "cell"]
        probe: dict[str, Any] = found["livenessProbe"]
    else:
        probe = _container(container)["livenessProbe"]
    command = [where.get(word, word) for word in probe["exec"]["command"]]
    return command, float(probe["timeoutSeconds"])


def http_liveness(container: str) -> tuple[str, list[str], float]:
    """The container's HTTP liveness probe: its path, the container's own args (whose port
    kubelet asks), and kubelet's timeout."""
    return _http_probe(container, "livenessProbe")


def http_readiness(container: str) -> tuple[str, list[str], float]:
    """The container's HTTP readiness probe, as `http_liveness`."""
    return _http_probe(container, "readinessProbe")


def _http_probe(container: str, kind: str) -> tuple[str, list[str], float]:
    found = _container(container)
    probe: dict[str, Any] = found[kind]["httpGet"]
    assert probe.get("scheme", "HTTP") == "HTTP"
    ports = {p["name"]: p["containerPort"] for p in found["ports"]}
    args: list[str] = found["args"]
    # The probe's port is the one the process is told to listen on.
    assert str(ports[probe["port"]]) == args[args.index("--port") + 1]
    return probe["path"], args, float(found[kind]["timeoutSeconds"])
