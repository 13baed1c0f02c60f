"""The pod's liveness probes as deploy/k8s/base/deployment.yaml writes them, for the tests that
run them against real processes (tests/faults/test_liveness.py) and in the real images
(tests/container)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOYMENT = Path(__file__).resolve().parents[1] / "deploy/k8s/base/deployment.yaml"


def _container(name: str) -> dict[str, Any]:
    pod = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]
    [found] = [c for c in pod["containers"] if c["name"] == name]
    return found  # type: ignore[no-any-return]


def liveness(container: str, where: dict[str, str]) -> tuple[list[str], float]:
    """The container's liveness command, each word that ``where`` names replaced (ports,
    paths), and kubelet's timeout for it."""
    probe: dict[str, Any] = _container(container)["livenessProbe"]
    command = [where.get(word, word) for word in probe["exec"]["command"]]
    return command, float(probe["timeoutSeconds"])


def http_liveness(container: str) -> tuple[str, list[str], float]:
    """The container's HTTP liveness probe: its path, the container's own args (whose port
    kubelet asks), and kubelet's timeout."""
    found = _container(container)
    probe: dict[str, Any] = found["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in found["ports"]}
    args: list[str] = found["args"]
    # The probe's port is the one the process is told to listen on.
    assert str(ports[probe["port"]]) == args[args.index("--port") + 1]
    return probe["path"], args, float(found["livenessProbe"]["timeoutSeconds"])
